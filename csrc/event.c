/*
 * event.c - the event-driven cycle's node scheduling (rules in event.h).
 *
 * Pending nodes are a bitmap walked word by word with count-trailing-zeros, so an
 * idle cycle over 10k blocks costs about 160 word loads plus the always-run nodes.
 * Within a word, bits at or below the node just run are masked off for the rest of
 * this pass: a node that an output change makes pending behind the current one (a
 * feedback edge, or a block reading its own output) keeps its bit for the next
 * cycle, which is when the full cycle would see the change too.
 *
 * All of this is private to the scan thread: no other process or thread reads the
 * plan, so plain loads and stores suffice (no atomics, no barriers).
 */
#include "event.h"

#include <stddef.h>
#include <string.h>

/* petra/blocks/_event.py builds the fan array with a numpy dtype of this layout. */
_Static_assert(sizeof(petra_fan_t) == 8, "petra_fan_t is (uint32 off, int32 out_pos)");
_Static_assert(offsetof(petra_fan_t, out_pos) == 4, "petra_fan_t.out_pos offset");

int petra_op_pure(uint16_t op) {
    switch (op) {
    case PETRA_OP_NOP:
    case PETRA_OP_AND:
    case PETRA_OP_OR:
    case PETRA_OP_XOR:
    case PETRA_OP_NOT:
    case PETRA_OP_GT:
    case PETRA_OP_GE:
    case PETRA_OP_LT:
    case PETRA_OP_LE:
    case PETRA_OP_EQ:
    case PETRA_OP_NE:
    case PETRA_OP_ADD:
    case PETRA_OP_SUB:
    case PETRA_OP_MUL:
    case PETRA_OP_DIV:
    case PETRA_OP_MIN:
    case PETRA_OP_MAX:
    case PETRA_OP_ABS:
    case PETRA_OP_LIMIT:
    case PETRA_OP_SCALE:
    case PETRA_OP_SEL:
    case PETRA_OP_MUX:
    case PETRA_OP_MOVE:
        return 1;
    default:
        /* Edges, latches, timers, counters, PID, RAMP, HYSTERESIS, AVERAGE, LAG,
         * generators, TANK, DELAY keep state or integrate dt: run every cycle. An op
         * added later is impure until it is listed here. */
        return 0;
    }
}

int petra_op_settles(uint16_t op) {
    switch (op) {
    case PETRA_OP_R_TRIG:
    case PETRA_OP_F_TRIG:
    case PETRA_OP_SR:
    case PETRA_OP_RS:
    case PETRA_OP_CTU:
    case PETRA_OP_CTD:
    case PETRA_OP_CTUD:
    case PETRA_OP_HYSTERESIS:
    case PETRA_OP_DELAY:
    case PETRA_OP_TON:
    case PETRA_OP_TOF:
    case PETRA_OP_TP:
        return 1;
    default:
        /* AVERAGE advances its ring index every run (it never settles); PID, RAMP,
         * LAG, generators and TANK integrate dt. */
        return 0;
    }
}

/* After a run of a settling node: 1 while its next run may differ by time alone.
 * Only the timers (TON, TOF, TP) read dt, and only while timing (blocks.c):
 *  - TON with IN false resets (ET = 0, Q = 0 from the inputs alone); with IN true
 *    and PREV true, ET = min(ET + dt, PT), which stays PT once ET == PT for every
 *    dt >= 0 (PT >= 0 and not NaN, as blocks.c makes it; ET is never +inf, so a
 *    PT of +inf is never reached). With PREV false the run set PREV, so the state
 *    changed and the node stays pending anyway.
 *  - TOF and TP add dt only while RUNNING (state[2]); stopped, a run on the same
 *    inputs keeps ET and the outputs (TP starts only on an edge of IN against
 *    PREV, which the run just made equal).
 * A run that changed an output changed the image this check reads: such a run
 * leaves the node pending by the other rule, so reading the inputs here is safe. */
static inline int still_timing(const petra_instr_t *ins, const double *img,
                               const double *s) {
    switch (ins->op) {
    case PETRA_OP_TON: {
        if (img[ins->in[0]] == 0.0) return 0;
        double pt = img[ins->in[1]] * 1e9;
        if (!(pt > 0.0)) pt = 0.0; /* as blocks.c */
        return !(s[0] != 0.0 && s[1] == pt);
    }
    case PETRA_OP_TOF:
    case PETRA_OP_TP:
        return s[2] != 0.0;
    default:
        return 0;
    }
}

void petra_event_mark_all(petra_event_t *ev) {
    if (ev->n_words) {
        memset(ev->pending, 0xff, ev->n_words * sizeof(uint64_t));
        if (ev->n_nodes & 63)
            ev->pending[ev->n_words - 1] = ((uint64_t)1 << (ev->n_nodes & 63)) - 1;
    }
    size_t ow = (ev->n_out + 63) / 64;
    if (ow) {
        memset(ev->cmp, 0xff, ow * sizeof(uint64_t));
        if (ev->n_out & 63) ev->cmp[ow - 1] = ((uint64_t)1 << (ev->n_out & 63)) - 1;
    }
}

void petra_event_touch(petra_event_t *ev, uint32_t idx) { petra__event_touch(ev, idx); }

void petra_event_begin(petra_event_t *ev) {
    for (size_t w = 0; w < ev->n_words; w++) ev->pending[w] |= ev->always[w];
    ev->ran = 0;
}

int petra_event_take(petra_event_t *ev, size_t node) {
    if (node >= ev->n_nodes) return 0;
    uint64_t bit = (uint64_t)1 << (node & 63);
    if (!(ev->pending[node >> 6] & bit)) return 0;
    ev->pending[node >> 6] &= ~bit;
    return 1;
}

static inline int same_bits(double a, double b) { return memcmp(&a, &b, sizeof a) == 0; }

int64_t petra_event_run(petra_event_t *ev, const petra_instr_t *prog, size_t lo, size_t hi,
                        double *img, uint8_t *quality, double *state, const double *params,
                        int64_t now_ns, int64_t dt_ns, int first_scan) {
    if (hi > ev->n_instr) hi = ev->n_instr;
    if (lo >= hi) return 0;
    int64_t ran = 0;
    const size_t w_lo = lo >> 6, w_hi = (hi - 1) >> 6;
    /* Start loading the instruction of every block already pending (a hint, no fault):
     * at 1 % of 100k inputs changing the blocks to run are scattered over the program,
     * and each one's record was a cache miss taken one at a time. */
    for (size_t w = w_lo; w <= w_hi; w++) {
        uint64_t bits = ev->pending[w];
        while (bits) {
            const unsigned b = (unsigned)__builtin_ctzll(bits);
            bits &= bits - 1;
            __builtin_prefetch(&prog[(w << 6) | b]);
        }
    }
    for (size_t w = w_lo; w <= w_hi; w++) {
        uint64_t limit = ~(uint64_t)0;
        if (w == w_hi && (hi & 63)) limit = ((uint64_t)1 << (hi & 63)) - 1;
        if (w == w_lo) limit &= ~(((uint64_t)1 << (lo & 63)) - 1);
        uint64_t bits;
        while ((bits = ev->pending[w] & limit) != 0) {
            const unsigned b = (unsigned)__builtin_ctzll(bits);
            /* From here on this pass only looks above b (see the file comment). */
            limit &= b == 63 ? 0 : ~(((uint64_t)2 << b) - 1);
            ev->pending[w] &= ~((uint64_t)1 << b);
            const size_t node = (w << 6) | b;
            const petra_instr_t *ins = &prog[node];
            const int settles = (ev->settle[w] >> b) & 1;
            double old_v[4], old_s[4];
            uint8_t old_q[4];
            size_t n_s = settles ? ev->state_len[node] : 0;
            if (n_s > 4) n_s = 4; /* the plan never says more (_event.py checks) */
            for (unsigned k = 0; k < ins->n_out; k++) {
                old_v[k] = img[ins->out[k]];
                old_q[k] = quality[ins->out[k]];
            }
            if (n_s) memcpy(old_s, state + ins->state, n_s * sizeof(double));
            int64_t rc = petra_blocks_run(ins, 1, img, quality, state, params, now_ns,
                                          dt_ns, first_scan);
            if (rc < 0) return rc;
            ran++;
            int changed = 0;
            for (unsigned k = 0; k < ins->n_out; k++) {
                const uint32_t o = ins->out[k];
                if (quality[o] != old_q[k] || !same_bits(img[o], old_v[k])) {
                    petra__event_touch(ev, o);
                    changed = 1;
                }
            }
            if (settles &&
                (changed || first_scan || (ins->flags & PETRA_BF_FRESH) ||
                 (n_s && memcmp(old_s, state + ins->state, n_s * sizeof(double)) != 0) ||
                 still_timing(ins, img, state + ins->state)))
                ev->pending[w] |= (uint64_t)1 << b; /* not settled: run again next cycle */
        }
    }
    ev->ran += ran;
    return ran;
}
