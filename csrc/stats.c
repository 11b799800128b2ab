/*
 * stats.c - the scan's timing statistics and per-process heartbeats.
 * Protocol: layout.h, "Stats block and heartbeat records". Fields are plain words in
 * the struct, accessed with __atomic builtins so that a reader racing the writer is
 * not undefined behaviour; consistency of a whole snapshot comes from the seqlock,
 * and the lock word names the writer inside so a kill there is repaired.
 */
#include "core.h"

#include <string.h>
#include <time.h>

#define LD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define ST(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)

_Static_assert(sizeof(((petra_stats_out_t *)0)->wake_hist) ==
                   (PETRA_HIST_BUCKETS + 1) * sizeof(uint64_t),
               "petra_stats_out_t histogram size matches PETRA_HIST_BUCKETS");

/* Enter the stats block: lock word, then the odd seq. Returns the odd seq, or 0 when
 * the lock could not be taken (the caller skips this update). */
static uint64_t stats_begin(petra_seg_t *seg, int wait) {
    petra_stats_t *st = seg->stats;
    if (petra__lock(seg, &st->lock, wait)) return 0;
    /* Relaxed: only the lock holder stores seq (our acquire CAS synchronised with the
     * previous holder's release). Even, as every holder and repair leaves it. */
    uint64_t s = atomic_load_explicit(&st->seq, memory_order_relaxed);
    uint64_t odd = s + 1 + (s & 1);
    atomic_store_explicit(&st->seq, odd, memory_order_relaxed);
    /* Release fence: pairs with the reader's acquire fence in petra_stats_read. */
    atomic_thread_fence(memory_order_release);
    return odd;
}

static void stats_end(petra_seg_t *seg, uint64_t odd) {
    /* Release: pairs with the reader's acquire load of seq. */
    atomic_store_explicit(&seg->stats->seq, odd + 1, memory_order_release);
    petra__unlock(&seg->stats->lock);
}

int petra_stats_reset(petra_seg_t *seg, int64_t period_ns) {
    if (seg->readonly) return PETRA_EINVAL;
    petra_stats_t *st = seg->stats;
    uint64_t odd = stats_begin(seg, 1);
    if (!odd) return PETRA_EBUSY;
    ST(&st->period_ns, period_ns);
    ST(&st->started_ns, petra__clock(CLOCK_REALTIME));
    ST(&st->cycles, 0);
    ST(&st->overruns, 0);
    ST(&st->skipped, 0);
    ST(&st->wake_min_ns, INT64_MAX);
    ST(&st->wake_max_ns, 0);
    ST(&st->wake_sum_ns, 0);
    ST(&st->wake_last_ns, 0);
    ST(&st->exec_min_ns, INT64_MAX);
    ST(&st->exec_max_ns, 0);
    ST(&st->exec_sum_ns, 0);
    ST(&st->exec_last_ns, 0);
    for (int i = 0; i <= PETRA_HIST_BUCKETS; i++) {
        ST(&st->wake_hist[i], 0);
        ST(&st->exec_hist[i], 0);
    }
    for (int i = 0; i < PETRA_WORST; i++) {
        ST(&st->worst[i].cycle, 0);
        ST(&st->worst[i].latency_ns, -1);
    }
    stats_end(seg, odd);
    return PETRA_OK;
}

/* The log-scale bucket of a duration (layout.h, "Log-scale histogram"). */
static inline uint32_t bucket(int64_t ns) {
    if (ns < ((int64_t)1 << PETRA_HIST_MIN_SHIFT)) return 0;
    if (ns >= ((int64_t)1 << PETRA_HIST_MAX_SHIFT)) return PETRA_HIST_BUCKETS;
    int msb = 63 - __builtin_clzll((uint64_t)ns); /* MIN_SHIFT <= msb < MAX_SHIFT */
    uint32_t sub = (uint32_t)(ns >> (msb - PETRA_HIST_SUB_BITS)) & (PETRA_HIST_SUB - 1);
    return 1 + (uint32_t)(msb - PETRA_HIST_MIN_SHIFT) * PETRA_HIST_SUB + sub;
}

uint32_t petra_hist_buckets(void) { return PETRA_HIST_BUCKETS + 1; }

uint32_t petra_hist_bucket(int64_t ns) { return bucket(ns); }

/* Exclusive upper edge of a bucket in ns; -1 for the overflow bucket (no edge). */
int64_t petra_hist_upper_ns(uint32_t b) {
    if (b == 0) return (int64_t)1 << PETRA_HIST_MIN_SHIFT;
    if (b >= PETRA_HIST_BUCKETS) return -1;
    uint32_t octave = (b - 1) / PETRA_HIST_SUB, sub = (b - 1) % PETRA_HIST_SUB;
    int shift = PETRA_HIST_MIN_SHIFT + (int)octave;
    int64_t width = (int64_t)1 << (shift - PETRA_HIST_SUB_BITS);
    return ((int64_t)1 << shift) + (int64_t)(sub + 1) * width;
}

int petra_stats_record(petra_seg_t *seg, int64_t wake_ns, int64_t exec_ns,
                       uint64_t overruns, uint64_t skipped) {
    if (seg->readonly) return PETRA_EINVAL;
    petra_stats_t *st = seg->stats;
    /* No waiting: the caller is the scan's cycle. A cycle whose update finds the
     * block held (a second writer, or a dead one before repair) is not recorded. */
    uint64_t odd = stats_begin(seg, 0);
    if (!odd) return PETRA_EBUSY;
    uint64_t cycle = LD(&st->cycles) + 1;
    ST(&st->cycles, cycle);
    ST(&st->overruns, LD(&st->overruns) + overruns);
    ST(&st->skipped, LD(&st->skipped) + skipped);
    if (wake_ns < LD(&st->wake_min_ns)) ST(&st->wake_min_ns, wake_ns);
    if (wake_ns > LD(&st->wake_max_ns)) ST(&st->wake_max_ns, wake_ns);
    ST(&st->wake_sum_ns, LD(&st->wake_sum_ns) + wake_ns);
    ST(&st->wake_last_ns, wake_ns);
    if (exec_ns < LD(&st->exec_min_ns)) ST(&st->exec_min_ns, exec_ns);
    if (exec_ns > LD(&st->exec_max_ns)) ST(&st->exec_max_ns, exec_ns);
    ST(&st->exec_sum_ns, LD(&st->exec_sum_ns) + exec_ns);
    ST(&st->exec_last_ns, exec_ns);
    uint32_t wb = bucket(wake_ns), eb = bucket(exec_ns);
    ST(&st->wake_hist[wb], LD(&st->wake_hist[wb]) + 1);
    ST(&st->exec_hist[eb], LD(&st->exec_hist[eb]) + 1);
    int lo = 0;
    for (int i = 1; i < PETRA_WORST; i++)
        if (LD(&st->worst[i].latency_ns) < LD(&st->worst[lo].latency_ns)) lo = i;
    if (wake_ns > LD(&st->worst[lo].latency_ns)) {
        ST(&st->worst[lo].cycle, cycle);
        ST(&st->worst[lo].latency_ns, wake_ns);
    }
    stats_end(seg, odd);
    return PETRA_OK;
}

/* A writer killed inside the stats block leaves seq odd and its pid in the lock: make
 * seq even again and free the lock. The block may hold one half-applied update (a
 * counter a cycle ahead of a histogram): monitoring values, so it stays in use. */
uint64_t petra__repair_stats(petra_seg_t *seg, uint32_t dead) {
    petra_stats_t *st = seg->stats;
    /* Relaxed: a filter; the take-over CAS decides. */
    if (atomic_load_explicit(&st->lock, memory_order_relaxed) != dead) return 0;
    if (!petra__take_over(seg, &st->lock, dead)) return 0;
    uint64_t s = atomic_load_explicit(&st->seq, memory_order_relaxed);
    /* Release: pairs with the reader's acquire load of seq. */
    if (s & 1) atomic_store_explicit(&st->seq, s + 1, memory_order_release);
    petra__unlock(&st->lock);
    return 1;
}

int petra__debug_stats(petra_seg_t *seg, int stage) {
    petra_stats_t *st = seg->stats;
    if (petra__lock(seg, &st->lock, 0)) return PETRA_EBUSY;
    if (stage == PETRA_STAGE_LOCKED) return PETRA_OK;
    uint64_t s = atomic_load_explicit(&st->seq, memory_order_relaxed);
    atomic_store_explicit(&st->seq, s + 1 + (s & 1), memory_order_relaxed);
    atomic_thread_fence(memory_order_release); /* as in stats_begin */
    ST(&st->cycles, LD(&st->cycles) + 1);      /* half an update */
    if (stage == PETRA_STAGE_EVEN)
        atomic_store_explicit(&st->seq, s + 2 + (s & 1), memory_order_release);
    return PETRA_OK;
}

int petra_stats_read(const petra_seg_t *seg, petra_stats_out_t *out) {
    petra_stats_t *st = seg->stats;
    for (uint32_t attempt = 0; attempt < seg->retry_limit; attempt++) {
        /* Acquire: pairs with the release store in stats_end. */
        uint64_t s1 = atomic_load_explicit(&st->seq, memory_order_acquire);
        if (s1 & 1) {
            petra__cpu_relax();
            continue;
        }
        out->period_ns = LD(&st->period_ns);
        out->started_ns = LD(&st->started_ns);
        out->cycles = LD(&st->cycles);
        out->overruns = LD(&st->overruns);
        out->skipped = LD(&st->skipped);
        out->wake_min_ns = LD(&st->wake_min_ns);
        out->wake_max_ns = LD(&st->wake_max_ns);
        out->wake_sum_ns = LD(&st->wake_sum_ns);
        out->wake_last_ns = LD(&st->wake_last_ns);
        out->exec_min_ns = LD(&st->exec_min_ns);
        out->exec_max_ns = LD(&st->exec_max_ns);
        out->exec_sum_ns = LD(&st->exec_sum_ns);
        out->exec_last_ns = LD(&st->exec_last_ns);
        for (int i = 0; i <= PETRA_HIST_BUCKETS; i++) {
            out->wake_hist[i] = LD(&st->wake_hist[i]);
            out->exec_hist[i] = LD(&st->exec_hist[i]);
        }
        for (int i = 0; i < PETRA_WORST; i++) {
            out->worst_cycle[i] = LD(&st->worst[i].cycle);
            out->worst_latency_ns[i] = LD(&st->worst[i].latency_ns);
        }
        /* Acquire fence: pairs with the release fence in stats_begin. */
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&st->seq, memory_order_relaxed) == s1) return PETRA_OK;
    }
    return PETRA_EBUSY;
}

int petra_hb_register(petra_seg_t *seg, uint32_t pid, const char *role, uint32_t cpu) {
    if (seg->readonly) return PETRA_EINVAL;
    if (pid == 0 || (pid & PETRA_HB_CLAIMING) || !role) return PETRA_EINVAL;
    for (uint32_t i = 0; i < seg->n_hb; i++) {
        petra_hb_t *h = &seg->hb[i];
        uint32_t expect = 0;
        /* The pid word is the record's lock word: one CAS names the claimer (marked
         * CLAIMING until the record is filled), so a claimer killed here is found by
         * repair. Acquire on success: pairs with the release store of 0 in
         * petra_hb_release / repair, so the previous owner's stores are behind us. */
        if (!atomic_compare_exchange_strong_explicit(&h->pid, &expect,
                                                     pid | PETRA_HB_CLAIMING,
                                                     memory_order_acquire,
                                                     memory_order_relaxed))
            continue;
        memset(h->role, 0, sizeof(h->role));
        strncpy(h->role, role, sizeof(h->role) - 1);
        atomic_store_explicit(&h->cpu, cpu, memory_order_relaxed);
        atomic_store_explicit(&h->state, 0, memory_order_relaxed);
        atomic_store_explicit(&h->restarts, 0, memory_order_relaxed);
        for (int c = 0; c < PETRA_HB_COUNTERS; c++)
            atomic_store_explicit(&h->counters[c], 0, memory_order_relaxed);
        atomic_store_explicit(&h->last_beat_ns, petra__clock(CLOCK_MONOTONIC),
                              memory_order_relaxed);
        /* Release: pairs with the acquire load of pid in petra_hb_read; a reader that
         * sees the pid sees the role and counters reset above. */
        atomic_store_explicit(&h->pid, pid, memory_order_release);
        return (int)i;
    }
    return PETRA_EFULL;
}

int petra_hb_release(petra_seg_t *seg, uint32_t record) {
    if (seg->readonly) return PETRA_EINVAL;
    if (record >= seg->n_hb) return PETRA_ERANGE;
    /* Release: pairs with the acquire CAS of the next petra_hb_register. */
    atomic_store_explicit(&seg->hb[record].pid, 0, memory_order_release);
    return PETRA_OK;
}

int petra_hb_beat(petra_seg_t *seg, uint32_t record, uint32_t state) {
    if (seg->readonly) return PETRA_EINVAL;
    if (record >= seg->n_hb) return PETRA_ERANGE;
    petra_hb_t *h = &seg->hb[record];
    /* Relaxed: each field is a self-contained monitoring value. */
    atomic_store_explicit(&h->state, state, memory_order_relaxed);
    atomic_store_explicit(&h->last_beat_ns, petra__clock(CLOCK_MONOTONIC),
                          memory_order_relaxed);
    return PETRA_OK;
}

int petra_hb_set_counter(petra_seg_t *seg, uint32_t record, uint32_t counter,
                         uint64_t value) {
    if (seg->readonly) return PETRA_EINVAL;
    if (record >= seg->n_hb || counter >= PETRA_HB_COUNTERS) return PETRA_ERANGE;
    /* Relaxed: a monitoring value. */
    atomic_store_explicit(&seg->hb[record].counters[counter], value, memory_order_relaxed);
    return PETRA_OK;
}

int petra_hb_add_restart(petra_seg_t *seg, uint32_t record) {
    if (seg->readonly) return PETRA_EINVAL;
    if (record >= seg->n_hb) return PETRA_ERANGE;
    /* Relaxed: a counter. */
    atomic_fetch_add_explicit(&seg->hb[record].restarts, 1, memory_order_relaxed);
    return PETRA_OK;
}

int petra_hb_read(const petra_seg_t *seg, uint32_t record, petra_hb_out_t *out) {
    if (record >= seg->n_hb) return PETRA_ERANGE;
    petra_hb_t *h = &seg->hb[record];
    memset(out, 0, sizeof(*out));
    /* Acquire: pairs with the release store of pid in petra_hb_register. */
    uint32_t pid = atomic_load_explicit(&h->pid, memory_order_acquire);
    if (pid == 0 || (pid & PETRA_HB_CLAIMING)) return PETRA_OK;
    out->pid = pid;
    memcpy(out->role, h->role, sizeof(out->role));
    out->role[sizeof(out->role) - 1] = 0;
    out->state = atomic_load_explicit(&h->state, memory_order_relaxed);
    out->last_beat_ns = atomic_load_explicit(&h->last_beat_ns, memory_order_relaxed);
    out->restarts = atomic_load_explicit(&h->restarts, memory_order_relaxed);
    out->cpu = atomic_load_explicit(&h->cpu, memory_order_relaxed);
    for (int c = 0; c < PETRA_HB_COUNTERS; c++)
        out->counters[c] = atomic_load_explicit(&h->counters[c], memory_order_relaxed);
    return PETRA_OK;
}

/* Free every heartbeat record of a dead process, one it was still claiming included. */
uint64_t petra__repair_heartbeats(petra_seg_t *seg, uint32_t dead) {
    uint64_t freed = 0;
    for (uint32_t i = 0; i < seg->n_hb; i++) {
        petra_hb_t *h = &seg->hb[i];
        /* Relaxed: a filter; the CAS below decides. */
        uint32_t p = atomic_load_explicit(&h->pid, memory_order_relaxed);
        if (p == 0 || (p & ~PETRA_HB_CLAIMING) != dead) continue;
        /* Release on success: pairs with the acquire CAS of the next claimer. */
        if (atomic_compare_exchange_strong_explicit(&h->pid, &p, 0, memory_order_release,
                                                    memory_order_relaxed))
            freed++;
    }
    return freed;
}

int petra__debug_hb(petra_seg_t *seg) {
    for (uint32_t i = 0; i < seg->n_hb; i++) {
        uint32_t expect = 0;
        if (atomic_compare_exchange_strong_explicit(&seg->hb[i].pid, &expect,
                                                    seg->writer | PETRA_HB_CLAIMING,
                                                    memory_order_acquire,
                                                    memory_order_relaxed))
            return (int)i;
    }
    return PETRA_EFULL;
}
