/*
 * scan.h - what the scan process needs from C: real-time setup, the absolute-deadline
 * wait, and moving values between the segment and the process image.
 *
 * The process image is two arrays owned by the scan: double img[] and uint8_t q[],
 * indexed by signal index (then constants, see petra/blocks). Copy-in scatters slot
 * values into it; copy-out writes back only the outputs that changed since the last
 * write, so an unchanged output makes no journal entry.
 */
#ifndef PETRA_SCAN_H
#define PETRA_SCAN_H

#include <stddef.h>
#include <stdint.h>

#include "blocks.h"
#include "event.h"
#include "petra.h"

/* CFFI-BEGIN */
typedef struct petra_seg petra_seg_t;

int petra_rt_mlockall(void);
int petra_rt_set_timerslack(unsigned long ns);
int petra_rt_dma_latency_hold(void);
void petra_rt_dma_latency_release(int fd);
int petra_rt_prefault_stack(size_t bytes);

int64_t petra_wait_until(int64_t deadline_ns, int64_t spin_ns);

int64_t petra_scan_copy_in(petra_seg_t *seg, const uint32_t *idx, size_t n, double *img,
                           uint8_t *quality);
int64_t petra_scan_copy_out(petra_seg_t *seg, const uint32_t *idx, size_t n,
                            const double *img, const uint8_t *quality, double *last,
                            uint8_t *last_quality, int force);

/* Copy-in from the change journal: apply every entry since the cursor whose slot is
 * an input (bit slot of the bitmap is_input: byte slot / 8, bit slot % 8; a bitmap, not
 * a byte per slot, so that at 100k signals it is 12.5 kB that stays in cache) to the
 * image. A cursor fresh from petra_cursor_init,
 * or one that lost entries, copies in every input instead (PETRA_CUR_NEED_FULL) until
 * one such full copy-in finds no slot busy. *full_out says a full copy-in happened.
 * Returns the busy count of the full copy-in tried this cycle (0 when none) or a
 * negative error. */
int64_t petra_scan_copy_in_journal(petra_seg_t *seg, petra_cursor_t *cur,
                                   const uint8_t *is_input, const uint32_t *in_idx,
                                   size_t n_in, double *img, uint8_t *quality,
                                   int64_t *applied_out, int *full_out);
/* The same, touching what it changes in an event plan (ev may be NULL; event.h). */
int64_t petra_scan_copy_in_journal_ev(petra_seg_t *seg, petra_cursor_t *cur,
                                      const uint8_t *is_input, const uint32_t *in_idx,
                                      size_t n_in, double *img, uint8_t *quality,
                                      int64_t *applied_out, int *full_out,
                                      petra_event_t *ev);
/* Event-mode copy-out: compare and write only the outputs in ev->cmp (event.h). */
int64_t petra_scan_copy_out_ev(petra_seg_t *seg, const uint32_t *idx, size_t n,
                               const double *img, const uint8_t *quality, double *last,
                               uint8_t *last_quality, petra_event_t *ev);

/* One whole cycle in C for a program made only of built-in blocks: the engine
 * fills the pointers once per program and calls petra_scan_cycle once per cycle. */
typedef struct {
    petra_seg_t *seg;
    const uint32_t *in_idx;
    size_t n_in;
    const uint32_t *out_idx;
    size_t n_out;
    double *img;
    uint8_t *quality;
    double *last;
    uint8_t *last_quality;
    const petra_instr_t *prog;
    size_t n_prog;
    double *state;
    const double *params;
    petra_cursor_t *cursor;  /* journal copy-in when set, else full copy-in */
    const uint8_t *is_input;
    int64_t period_ns;
    int64_t spin_ns;
    int64_t base_ns;         /* deadline of cycle k is base_ns + k * period_ns */
    uint64_t k;
    int64_t prev_wake_ns;    /* 0 before the first cycle */
    int record_stats;
    /* results of the last cycle */
    int64_t wake_ns;         /* CLOCK_MONOTONIC instant of waking */
    int64_t latency_ns;
    int64_t exec_ns;
    uint64_t overrun;
    uint64_t skipped;
    int64_t busy;
    int64_t written;
    int64_t applied;         /* journal entries applied to the image */
    int full;                /* 1 when the cycle did a full copy-in */
    petra_event_t *event;    /* event mode when set (event.h); NULL runs every block */
} petra_cycle_t;

int64_t petra_scan_cycle(petra_cycle_t *c);
/* CFFI-END */

#endif
