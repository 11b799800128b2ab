/*
 * event.h - the event-driven cycle: run only the blocks whose inputs changed.
 *
 * A *node* is a block of the program in execution order: built-in instruction i is
 * node i, the custom (Python) blocks follow as nodes n_instr, n_instr + 1, ... A node
 * is *pure* when its outputs are a function of its inputs alone (the combinational
 * built-ins, see petra_op_pure, and custom blocks declared pure). A *settling* node
 * keeps state, and its outputs and next state are a function of its inputs and its
 * state (edges, latches, counters, HYSTERESIS, DELAY), or are so whenever it is not
 * timing (the timers TON, TOF, TP: dt moves them only while they time; see
 * petra_op_settles and still_timing in event.c). Every other node (PID, RAMP, LAG,
 * AVERAGE, generators, TANK, a custom block not declared pure) is *always* run.
 *
 * The rules that make event mode produce the same image, the same writes and the
 * same timestamps as running every block (docs/blocks.md states them for users):
 *   1. pending[node] is set when an image entry the node reads may have changed
 *      since the node last ran: a journal entry applied at copy-in, an output of a
 *      node that changed when that node ran, or "everything" (a full copy-in, the
 *      first cycle of a program). A pure node runs iff pending; it is then cleared.
 *      Running a pure node on the same input bits gives the same output bits, so a
 *      node that is not pending would write what its outputs already hold.
 *      A settling node runs when pending, and stays pending after a run that
 *      changed an output or its state (or was a first scan), or that left a timer
 *      timing: a run on the same inputs and state that changed neither, with no
 *      timer running, is a fixed point, and the next one would give the same bits
 *      again whatever dt is.
 *   2. Nodes run in program order. A change seen by a node later in the order is
 *      picked up in the same cycle; one seen by a node earlier in the order (a
 *      feedback edge) waits for the next cycle, exactly as in the full cycle where
 *      that node already ran on the old value.
 *   3. Copy-out compares an output only if it changed this cycle or its last
 *      compare left it different from what the segment holds (a busy slot, a value
 *      an int slot refused): the full cycle writes exactly those.
 *
 * The plan's arrays are allocated and filled by petra/blocks/_event.py at compile
 * time; C only reads the fan-out and updates pending, cmp and the counters. Nothing
 * here allocates.
 */
#ifndef PETRA_EVENT_H
#define PETRA_EVENT_H

#include <stddef.h>
#include <stdint.h>

#include "blocks.h"

/* CFFI-BEGIN */
/* One image entry's fan-out: its readers are fan_node[off .. next entry's off - 1];
 * out_pos is its position among the outputs, or -1. Side by side so that touching
 * an entry costs one cache line here (and one in fan_node when it has readers). */
typedef struct {
    uint32_t off;
    int32_t out_pos;
} petra_fan_t;

typedef struct {
    size_t n_instr;           /* built-in nodes 0..n_instr-1 */
    size_t n_nodes;           /* built-ins, then custom blocks */
    size_t n_words;           /* words of the node bitmaps: (n_nodes + 63) / 64 */
    uint64_t *pending;        /* node bits: an input may have changed since it ran */
    const uint64_t *always;   /* node bits: run every cycle (timed, custom) */
    const uint64_t *settle;   /* node bits: settling built-ins (rule 1) */
    const uint8_t *state_len; /* n_instr: state doubles of each settling node (<= 4) */
    size_t image_size;
    const petra_fan_t *fan;   /* image_size + 1 entries (the last: off only) */
    const uint32_t *fan_node; /* the nodes that read each image entry */
    size_t n_out;
    uint64_t *cmp;            /* (n_out + 63) / 64 words: output positions to compare;
                               * a bitmap, so copy-out writes in the full cycle's order */
    int64_t ran;              /* nodes run in the last cycle (built-in and custom) */
    int64_t compared;         /* outputs compared at the last copy-out */
} petra_event_t;

/* 1 when the op's outputs depend on its inputs alone (no state, no time). */
int petra_op_pure(uint16_t op);

/* 1 when the op keeps state and reads no time, or reads it only while timing: it may
 * settle (rule 1 above). */
int petra_op_settles(uint16_t op);

/* Every node pending and every output compared: the first cycle of a program, a
 * full copy-in, an image changed from outside. */
void petra_event_mark_all(petra_event_t *ev);

/* Image entry idx may have changed: its readers become pending; if it is an output,
 * it is compared at the next copy-out. */
void petra_event_touch(petra_event_t *ev, uint32_t idx);

/* Start of a cycle: the always-run nodes become pending; the run counter resets. */
void petra_event_begin(petra_event_t *ev);

/* Test and clear a node's pending bit (custom nodes, run by Python). */
int petra_event_take(petra_event_t *ev, size_t node);

/* Run the pending built-ins among prog[lo..hi-1] (node = instruction index) in order,
 * touching the outputs that changed. Returns how many ran, or a negative PETRA_E*. */
int64_t petra_event_run(petra_event_t *ev, const petra_instr_t *prog, size_t lo, size_t hi,
                        double *img, uint8_t *quality, double *state, const double *params,
                        int64_t now_ns, int64_t dt_ns, int first_scan);
/* CFFI-END */

/* For scan.c: the same as petra_event_touch, inlined on the copy-in path. */
static inline void petra__event_touch(petra_event_t *ev, uint32_t idx) {
    if (idx >= ev->image_size) return;
    const petra_fan_t *f = &ev->fan[idx];
    for (uint32_t j = f[0].off; j < f[1].off; j++) {
        uint32_t node = ev->fan_node[j];
        ev->pending[node >> 6] |= (uint64_t)1 << (node & 63);
    }
    int32_t pos = f[0].out_pos;
    if (pos >= 0) ev->cmp[(uint32_t)pos >> 6] |= (uint64_t)1 << ((uint32_t)pos & 63);
}

/* Start loading what petra__event_touch(ev, idx) will read (a hint, no fault). */
static inline void petra__event_prefetch(const petra_event_t *ev, uint32_t idx) {
    if (idx < ev->image_size) __builtin_prefetch(&ev->fan[idx]);
}

#endif
