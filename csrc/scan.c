/*
 * scan.c - real-time setup, the deadline wait, and process-image copy-in/copy-out.
 *
 * Waking on time (measured on the target VMs, see BRIEF section 4):
 *  - clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME) to an absolute deadline: no
 *    drift, and a late wake-up does not push later cycles.
 *  - A SCHED_OTHER task's default 50 us timer slack dominates idle wake-up latency;
 *    prctl(PR_SET_TIMERSLACK, 1) removes it.
 *  - Holding /dev/cpu_dma_latency at 0 keeps the core out of deep idle states.
 *  - Hybrid wait: sleep until spin_ns before the deadline, then spin on the clock. It
 *    buys sub-microsecond wake-ups and costs that share of a CPU (spin_ns / period):
 *    only for a scan that owns an isolated CPU. A SCHED_FIFO task that spins starves
 *    a small machine, so keep spin_ns short.
 */
#define _GNU_SOURCE
#include "scan.h"

#include "core.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

int petra_rt_mlockall(void) {
    if (mlockall(MCL_CURRENT | MCL_FUTURE) != 0) return -errno;
    return 0;
}

int petra_rt_set_timerslack(unsigned long ns) {
    if (prctl(PR_SET_TIMERSLACK, ns ? ns : 1UL, 0, 0, 0) != 0) return -errno;
    return 0;
}

int petra_rt_dma_latency_hold(void) {
    int fd = open("/dev/cpu_dma_latency", O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    int32_t zero = 0;
    if (write(fd, &zero, sizeof zero) != (ssize_t)sizeof zero) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd; /* the request holds while the fd stays open */
}

void petra_rt_dma_latency_release(int fd) {
    if (fd >= 0) close(fd);
}

/* Touch a stack region so page faults happen now, not in the first cycles. */
int petra_rt_prefault_stack(size_t bytes) {
    if (bytes > (8u << 20)) return PETRA_EINVAL;
    volatile unsigned char buf[bytes]; /* volatile: keep the stores */
    for (size_t i = 0; i < bytes; i += 4096) buf[i] = 0;
    return 0;
}

static inline int64_t mono_now(void) { return petra__clock(CLOCK_MONOTONIC); }

static void sleep_until(int64_t t) {
    struct timespec ts = {.tv_sec = t / 1000000000LL, .tv_nsec = t % 1000000000LL};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

/* Wait for an absolute CLOCK_MONOTONIC deadline; return the wake-up latency in ns
 * (negative never: a deadline already past returns how late we are). */
int64_t petra_wait_until(int64_t deadline_ns, int64_t spin_ns) {
    if (spin_ns > 0) {
        int64_t sleep_to = deadline_ns - spin_ns;
        if (mono_now() < sleep_to) sleep_until(sleep_to);
        int64_t now;
        while ((now = mono_now()) < deadline_ns) petra__cpu_relax();
        return now - deadline_ns;
    }
    if (mono_now() < deadline_ns) sleep_until(deadline_ns);
    return mono_now() - deadline_ns;
}

int64_t petra_scan_copy_in(petra_seg_t *seg, const uint32_t *idx, size_t n, double *img,
                           uint8_t *quality) {
    return petra__read_scatter_f64(seg, idx, n, img, quality);
}

/* Why the journal and not the slots: a plant of 10k inputs where 1% change per cycle
 * costs 100 entries instead of 10k slot reads, so copy-in scales with activity, not
 * plant size. Each entry was appended inside its slot's write section, so entries of
 * one slot arrive in write order and the last one applied is the slot's latest
 * value. The consumer stops at an entry still being written (it is applied next
 * cycle); a lapped cursor means entries were lost, and the slots are read instead.
 *
 * No gap at priming or after a loss: a slot that reads busy during a full copy-in
 * keeps a stale value whose newer entry may lie below the cursor. So the cursor
 * carries PETRA_CUR_NEED_FULL (set by petra_cursor_init and by every loss) and keeps
 * it until a full copy-in finds no slot busy; until then each cycle tries again. */
int64_t petra_scan_copy_in_journal(petra_seg_t *seg, petra_cursor_t *cur,
                                   const uint8_t *is_input, const uint32_t *in_idx,
                                   size_t n_in, double *img, uint8_t *quality,
                                   int64_t *applied_out, int *full_out) {
    return petra_scan_copy_in_journal_ev(seg, cur, is_input, in_idx, n_in, img, quality,
                                         applied_out, full_out, NULL);
}

/* With an event plan (event.h), every input an entry is applied to is touched, and a
 * full read marks everything (it may have brought any input's newer value). */
int64_t petra_scan_copy_in_journal_ev(petra_seg_t *seg, petra_cursor_t *cur,
                                      const uint8_t *is_input, const uint32_t *in_idx,
                                      size_t n_in, double *img, uint8_t *quality,
                                      int64_t *applied_out, int *full_out,
                                      petra_event_t *ev) {
    enum { CHUNK = 256 };
    uint32_t slot[CHUNK];
    uint64_t value[CHUNK];
    uint8_t type[CHUNK], q[CHUNK];
    uint64_t lost_before = cur->lost;
    /* Acquire (petra_journal_head): every position below head was claimed by a writer
     * whose slot then reads odd or newer, which the skip below relies on. */
    uint64_t head = petra_journal_head(seg);
    uint64_t budget = head > cur->next ? head - cur->next : 0; /* this cycle's share */
    int64_t applied = 0;
    int64_t busy_full = 0;
    *full_out = 0;
    *applied_out = 0;
    if ((cur->flags & PETRA_CUR_NEED_FULL) || budget > n_in) {
        /* More entries than inputs: reading the slots is cheaper. Jumping the cursor
         * to head is safe when no slot is busy: a position below head whose entry is
         * not yet published belongs to a writer still inside that slot's write
         * section (the entry is appended before the slot is released), and such a
         * slot reads as busy. So with busy == 0 every skipped entry's value is
         * already in the slot we just read; otherwise apply the entries as usual. */
        uint64_t saved = cur->next;
        if (head > cur->next) cur->next = head;
        cur->stall_since_ns = 0;
        int64_t busy = petra__read_scatter_f64(seg, in_idx, n_in, img, quality);
        if (busy < 0) return busy;
        if (ev) petra_event_mark_all(ev);
        if (busy == 0) {
            cur->flags &= ~(uint32_t)PETRA_CUR_NEED_FULL;
            *full_out = 1;
            return 0;
        }
        /* Some slot was busy: its newest entry may be below head. Apply the entries
         * from where we were (the flag, if set, stays: try again next cycle). */
        cur->next = saved;
        busy_full = busy;
    }
    while (budget > 0) {
        size_t want = budget < CHUNK ? (size_t)budget : CHUNK;
        int64_t n = petra_journal_read(seg, cur, want, slot, value, type, q, NULL, NULL, NULL);
        if (n < 0) return n;
        /* First pass: start loading the image entries (and their fan-out records)
         * the second pass writes, so their cache misses overlap instead of coming
         * one after the other: at 100k signals they are spread over megabytes. */
        for (int64_t i = 0; i < n; i++) {
            uint32_t k = slot[i];
            if (k >= seg->n_signals || !((is_input[k >> 3] >> (k & 7)) & 1)) {
                slot[i] = UINT32_MAX; /* not an input: skipped below */
                continue;
            }
            __builtin_prefetch(&img[k], 1);
            __builtin_prefetch(&quality[k], 1);
            if (ev) petra__event_prefetch(ev, k);
        }
        for (int64_t i = 0; i < n; i++) {
            uint32_t k = slot[i];
            if (k == UINT32_MAX) continue;
            if (type[i] == PETRA_T_FLOAT)
                memcpy(&img[k], &value[i], sizeof(double));
            else
                img[k] = (double)(int64_t)value[i];
            quality[k] = q[i];
            if (ev) petra__event_touch(ev, k);
            applied++;
        }
        if ((size_t)n < want) break; /* caught up, or waiting on an unpublished entry */
        budget -= (uint64_t)n;
    }
    *applied_out = applied;
    if (cur->lost != lost_before) {
        /* Entries were lost: the slots hold the truth. A slot busy now keeps a stale
         * value, so stay in NEED_FULL until a full read is clean. */
        cur->flags |= PETRA_CUR_NEED_FULL;
        *full_out = 1;
        int64_t busy = petra__read_scatter_f64(seg, in_idx, n_in, img, quality);
        if (ev) petra_event_mark_all(ev);
        if (busy == 0) cur->flags &= ~(uint32_t)PETRA_CUR_NEED_FULL;
        return busy;
    }
    return busy_full;
}

static inline int same_bits(double a, double b) { return memcmp(&a, &b, sizeof a) == 0; }

/* Write output i (slot k) if its value bits or quality differ from the last write
 * (or always, with force). Returns 1 written, 0 not, or a negative error; *now is the
 * cycle's one timestamp, read at the first write. A busy slot stays "changed" and is
 * retried next cycle. */
static inline int out_one(petra_seg_t *seg, uint32_t k, size_t i, const double *img,
                          const uint8_t *quality, double *last, uint8_t *last_quality,
                          int force, int64_t *now) {
    if (k >= seg->n_signals) return PETRA_ERANGE;
    double v = img[k];
    uint8_t q = quality[k] > PETRA_Q_GOOD ? PETRA_Q_BAD : quality[k];
    if (!force && q == last_quality[i] && same_bits(v, last[i])) return 0;
    if (!*now) *now = petra__clock(CLOCK_REALTIME); /* one timestamp per cycle */
    /* No waiting (wait = 0): the scan never waits on a lock a lower-priority
     * process holds; a busy output is retried next cycle. */
    int rc = petra__write_f64_at(seg, k, v, q, *now, 0);
    if (rc == PETRA_EINVAL) {
        /* NaN/inf/out of range for an int or bool slot: keep the last value, BAD. */
        q = PETRA_Q_BAD;
        rc = petra__write_f64_at(seg, k, last[i] == last[i] ? last[i] : 0.0, q, *now, 0);
        v = last[i];
    }
    if (rc == PETRA_OK) {
        last[i] = v;
        last_quality[i] = q;
        return 1;
    }
    /* PETRA_EBUSY: a stuck writer holds the slot; it stays "changed" and is
     * retried next cycle. */
    return 0;
}

/* Write outputs whose value bits or quality changed since the last write (or all,
 * with force). Returns how many were written; a busy slot stays "changed" and is
 * retried next cycle. */
int64_t petra_scan_copy_out(petra_seg_t *seg, const uint32_t *idx, size_t n,
                            const double *img, const uint8_t *quality, double *last,
                            uint8_t *last_quality, int force) {
    if (seg->readonly) return PETRA_EINVAL;
    int64_t written = 0;
    int64_t now = 0;
    for (size_t i = 0; i < n; i++) {
        int rc = out_one(seg, idx[i], i, img, quality, last, last_quality, force, &now);
        if (rc < 0) return rc;
        written += rc;
    }
    return written;
}

/* Event mode: only the outputs in ev->cmp, in position order (the order of the full
 * copy-out). An output that still differs from its last write afterwards (busy slot,
 * a value its slot refused) keeps its bit, as the full cycle would compare it again. */
int64_t petra_scan_copy_out_ev(petra_seg_t *seg, const uint32_t *idx, size_t n,
                               const double *img, const uint8_t *quality, double *last,
                               uint8_t *last_quality, petra_event_t *ev) {
    if (seg->readonly) return PETRA_EINVAL;
    if (n != ev->n_out) return PETRA_EINVAL;
    int64_t written = 0, compared = 0;
    int64_t now = 0;
    const size_t words = (n + 63) / 64;
    for (size_t w = 0; w < words; w++) {
        uint64_t bits = ev->cmp[w];
        while (bits) {
            const unsigned b = (unsigned)__builtin_ctzll(bits);
            bits &= bits - 1;
            const size_t i = (w << 6) | b;
            const uint32_t k = idx[i];
            int rc = out_one(seg, k, i, img, quality, last, last_quality, 0, &now);
            if (rc < 0) return rc;
            written += rc;
            compared++;
            uint8_t q = quality[k] > PETRA_Q_GOOD ? PETRA_Q_BAD : quality[k];
            if (q == last_quality[i] && same_bits(img[k], last[i]))
                ev->cmp[w] &= ~((uint64_t)1 << b);
        }
    }
    ev->compared = compared;
    return written;
}

int64_t petra_scan_cycle(petra_cycle_t *c) {
    int64_t deadline = c->base_ns + (int64_t)c->k * c->period_ns;
    int64_t latency = petra_wait_until(deadline, c->spin_ns);
    int64_t woke = deadline + latency;
    int64_t busy;
    petra_event_t *ev = c->event;
    if (ev) petra_event_begin(ev);
    if (c->cursor) {
        busy = petra_scan_copy_in_journal_ev(c->seg, c->cursor, c->is_input, c->in_idx,
                                             c->n_in, c->img, c->quality, &c->applied,
                                             &c->full, ev);
    } else {
        busy = petra__read_scatter_f64(c->seg, c->in_idx, c->n_in, c->img, c->quality);
        if (ev) petra_event_mark_all(ev);
        c->applied = 0;
        c->full = 1;
    }
    if (busy < 0) return busy;
    int64_t dt = c->prev_wake_ns ? woke - c->prev_wake_ns : c->period_ns;
    if (c->n_prog) {
        int64_t rc = ev ? petra_event_run(ev, c->prog, 0, c->n_prog, c->img, c->quality,
                                          c->state, c->params, woke, dt, 0)
                        : petra_blocks_run(c->prog, c->n_prog, c->img, c->quality, c->state,
                                           c->params, woke, dt, 0);
        if (rc < 0) return rc;
    }
    int64_t written =
        ev ? petra_scan_copy_out_ev(c->seg, c->out_idx, c->n_out, c->img, c->quality, c->last,
                                    c->last_quality, ev)
           : petra_scan_copy_out(c->seg, c->out_idx, c->n_out, c->img, c->quality, c->last,
                                 c->last_quality, 0);
    if (written < 0) return written;
    int64_t end = mono_now();
    c->k++;
    uint64_t overrun = 0, skipped = 0;
    int64_t next = c->base_ns + (int64_t)c->k * c->period_ns;
    if (end > next) {
        /* Overrun: count it and skip every period we ran into; never burst. */
        overrun = 1;
        skipped = (uint64_t)((end - next) / c->period_ns) + 1;
        c->k += skipped;
    }
    if (c->record_stats) petra_stats_record(c->seg, latency, end - woke, overrun, skipped);
    c->prev_wake_ns = woke;
    c->wake_ns = woke;
    c->latency_ns = latency;
    c->exec_ns = end - woke;
    c->overrun = overrun;
    c->skipped = skipped;
    c->busy = busy;
    c->written = written;
    return 0;
}
