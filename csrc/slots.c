/*
 * slots.c - the per-signal seqlock: single and batch reads and writes, repair.
 * Protocol: layout.h, "Slot". Every barrier below names its partner.
 *
 * Batch writes lock their slots in chunks of up to CHUNK, in the caller's order, and
 * claim one run of journal positions per chunk (one fetch_add instead of one per
 * slot). A chunk never waits while it holds locks: a slot that does not come free at
 * once ends the chunk, the chunk is written and released, and only then does the
 * writer wait for that slot. So two batch writers cannot deadlock, whatever order
 * their indices come in, and a duplicate index simply starts a new chunk.
 */
#include "core.h"

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

enum { CHUNK = 32, FAST_SPINS = 64 };

/* Copy one slot out. Returns 0, or PETRA_EBUSY after retry_limit attempts. */
static inline int slot_copy(uint32_t retry_limit, petra_slot_t *s, uint64_t *value,
                            uint8_t *quality, uint8_t *substatus, int64_t *src_ts,
                            int64_t *wr_ts, uint32_t *writer) {
    for (uint32_t attempt = 0; attempt < retry_limit; attempt++) {
        /* Acquire: pairs with the release store of the even seq that ends a write
         * section, so the data loads below see at least that writer's stores. */
        uint64_t s1 = atomic_load_explicit(&s->seq, memory_order_acquire);
        if (s1 & 1) {
            petra__cpu_relax();
            continue;
        }
        /* Relaxed: racy by design; validity is decided by the seq re-check. */
        uint64_t v = atomic_load_explicit(&s->value, memory_order_relaxed);
        uint16_t qs = atomic_load_explicit(&s->qs, memory_order_relaxed);
        int64_t st = atomic_load_explicit(&s->source_ts_ns, memory_order_relaxed);
        int64_t wt = wr_ts ? atomic_load_explicit(&s->write_ts_ns, memory_order_relaxed) : 0;
        uint32_t w = writer ? atomic_load_explicit(&s->writer, memory_order_relaxed) : 0;
        /* Acquire fence: pairs with the writer's release fence after its odd store. If
         * any load above saw a store of a newer writer, the seq load below sees that
         * writer's odd value (or later), and the copy is thrown away. */
        atomic_thread_fence(memory_order_acquire);
        /* Relaxed: ordered after the data loads by the fence above. */
        uint64_t s2 = atomic_load_explicit(&s->seq, memory_order_relaxed);
        if (s1 != s2) continue;
        *value = v;
        if (quality) *quality = (uint8_t)qs;
        if (substatus) *substatus = (uint8_t)(qs >> 8);
        if (src_ts) *src_ts = st;
        if (wr_ts) *wr_ts = wt;
        if (writer) *writer = w;
        return PETRA_OK;
    }
    return PETRA_EBUSY;
}

/* Copy one slot out as a float64 (bool and int converted). */
static inline int slot_copy_f64(uint32_t retry_limit, petra_slot_t *s, double *value,
                                uint8_t *quality) {
    uint64_t v;
    int rc = slot_copy(retry_limit, s, &v, quality, NULL, NULL, NULL, NULL);
    if (rc) return rc;
    if (s->type == PETRA_T_FLOAT)
        memcpy(value, &v, sizeof(double));
    else
        *value = (double)(int64_t)v;
    return PETRA_OK;
}

/* With the lock held: make seq odd and return the odd value. Every holder and every
 * repair leaves seq even, so s is even; were it not (a segment written outside this
 * protocol), s+2 keeps it odd and different. */
static inline uint64_t slot_odd(petra_slot_t *s) {
    /* Relaxed: only the lock holder stores seq, and our acquire CAS of the lock
     * synchronised with the previous holder's release of it. */
    uint64_t cur = atomic_load_explicit(&s->seq, memory_order_relaxed);
    uint64_t odd = cur + 1 + (cur & 1);
    /* Relaxed: ordered before the data stores by the caller's release fence. */
    atomic_store_explicit(&s->seq, odd, memory_order_relaxed);
    return odd;
}

/* Leave a write section: even seq, then the lock word (the reverse of entering). */
static inline void slot_leave(petra_slot_t *s, uint64_t odd) {
    /* Release: pairs with the acquire load of seq in slot_copy; publishes the data. */
    atomic_store_explicit(&s->seq, odd + 1, memory_order_release);
    petra__unlock(&s->lock);
}

/* Always inlined: called once per slot from the batch loop, and an out-of-line call
 * with nine arguments passes some on the stack (stores are what a write costs). */
static inline __attribute__((always_inline)) void slot_store(
    petra_seg_t *seg, uint32_t index, petra_slot_t *s, uint64_t pos, uint64_t bits,
    uint8_t quality, uint8_t substatus, int64_t source_ts, int64_t now) {
    /* Relaxed: inside the write section; published by slot_leave's release. */
    atomic_store_explicit(&s->value, bits, memory_order_relaxed);
    atomic_store_explicit(&s->qs, PETRA_QS(quality, substatus), memory_order_relaxed);
    atomic_store_explicit(&s->source_ts_ns, source_ts, memory_order_relaxed);
    atomic_store_explicit(&s->write_ts_ns, now, memory_order_relaxed);
    atomic_store_explicit(&s->writer, seg->writer, memory_order_relaxed);
    petra__journal_put(seg, pos, index, s->type, bits, quality, substatus, source_ts, now);
}

static inline int write_one(petra_seg_t *seg, uint32_t index, uint64_t bits,
                            uint8_t quality, uint8_t substatus, int64_t source_ts,
                            int64_t now, int wait) {
    petra_slot_t *s = &seg->slots[index];
    int rc = petra__lock(seg, &s->lock, wait);
    if (rc) return rc;
    uint64_t odd = slot_odd(s);
    /* Release fence: pairs with the readers' acquire fence in slot_copy (the odd seq is
     * ordered before every data store), and orders it before the journal claim (see
     * layout.h: a reader's acquire load of head then sees the slot odd or newer). */
    atomic_thread_fence(memory_order_release);
    uint64_t pos = petra__journal_claim(seg, 1);
    slot_store(seg, index, s, pos, bits, quality, substatus, source_ts ? source_ts : now, now);
    slot_leave(s, odd);
    return PETRA_OK;
}

static inline int check_write(const petra_seg_t *seg, uint32_t index, uint8_t quality) {
    if (seg->readonly) return PETRA_EINVAL;
    if (index >= seg->n_signals) return PETRA_ERANGE;
    if (quality > PETRA_Q_GOOD) return PETRA_EINVAL;
    return PETRA_OK;
}

/* first..first+n inside the table, computed so that no sum can wrap. */
static inline int range_ok(const petra_seg_t *seg, uint32_t first, size_t n) {
    return first <= seg->n_signals && n <= (size_t)(seg->n_signals - first);
}

static inline int indices_ok(const petra_seg_t *seg, const uint32_t *idx, uint32_t first,
                             size_t n) {
    if (!idx) return range_ok(seg, first, n);
    for (size_t i = 0; i < n; i++)
        if (idx[i] >= seg->n_signals) return 0;
    return 1;
}

int petra_read(petra_seg_t *seg, uint32_t index, petra_sample_t *out) {
    if (index >= seg->n_signals) return PETRA_ERANGE;
    petra_slot_t *s = &seg->slots[index];
    out->type = s->type;
    return slot_copy(seg->retry_limit, s, &out->u, &out->quality, &out->substatus,
                     &out->source_ts_ns, &out->write_ts_ns, &out->writer);
}

/* Value-only reads for the Python hot path. On failure they return a sentinel (NaN,
 * INT64_MIN) as well as setting *rc, so the caller reads *rc only when it sees the
 * sentinel: a legitimately stored NaN or INT64_MIN just costs that extra look. */
double petra_get_f64(petra_seg_t *seg, uint32_t index, int *rc) {
    if (index >= seg->n_signals) {
        *rc = PETRA_ERANGE;
        return NAN;
    }
    petra_slot_t *s = &seg->slots[index];
    uint64_t v = 0;
    *rc = slot_copy(seg->retry_limit, s, &v, NULL, NULL, NULL, NULL, NULL);
    if (*rc) return NAN; /* the sentinel: see the comment above */
    if (s->type == PETRA_T_FLOAT) {
        double d;
        memcpy(&d, &v, sizeof d);
        return d;
    }
    return (double)(int64_t)v;
}

int64_t petra_get_i64(petra_seg_t *seg, uint32_t index, int *rc) {
    if (index >= seg->n_signals) {
        *rc = PETRA_ERANGE;
        return INT64_MIN;
    }
    uint64_t v = 0;
    *rc = slot_copy(seg->retry_limit, &seg->slots[index], &v, NULL, NULL, NULL, NULL, NULL);
    return *rc ? INT64_MIN : (int64_t)v;
}

int petra_write(petra_seg_t *seg, uint32_t index, uint8_t type, uint64_t bits,
                uint8_t quality, uint8_t substatus, int64_t source_ts_ns) {
    int rc = check_write(seg, index, quality);
    if (rc) return rc;
    if (seg->slots[index].type != type) return PETRA_ETYPE;
    if (type == PETRA_T_BOOL && bits > 1) return PETRA_EINVAL;
    return write_one(seg, index, bits, quality, substatus, source_ts_ns,
                     petra__clock(CLOCK_REALTIME), 1);
}

int petra_write_f64(petra_seg_t *seg, uint32_t index, double value, uint8_t quality,
                    int64_t source_ts_ns) {
    int rc = check_write(seg, index, quality);
    if (rc) return rc;
    if (seg->slots[index].type != PETRA_T_FLOAT) return PETRA_ETYPE;
    uint64_t bits;
    memcpy(&bits, &value, sizeof bits);
    return write_one(seg, index, bits, quality, PETRA_SUB_NONE, source_ts_ns,
                     petra__clock(CLOCK_REALTIME), 1);
}

int petra_write_i64(petra_seg_t *seg, uint32_t index, int64_t value, uint8_t quality,
                    int64_t source_ts_ns) {
    int rc = check_write(seg, index, quality);
    if (rc) return rc;
    uint8_t t = seg->slots[index].type;
    if (t == PETRA_T_FLOAT) return PETRA_ETYPE;
    if (t == PETRA_T_BOOL && (value < 0 || value > 1)) return PETRA_EINVAL;
    return write_one(seg, index, (uint64_t)value, quality, PETRA_SUB_NONE, source_ts_ns,
                     petra__clock(CLOCK_REALTIME), 1);
}

/* Batch reads leave a busy slot's outputs untouched: the caller keeps its last good
 * value (the process-image contract) and learns how many, and which, were busy. */
/* One slot of a batch read into position i of the outputs; 1 when it was busy. */
static inline int read_one_into(uint32_t limit, petra_slot_t *s, size_t i, uint64_t *values,
                                uint8_t *quality, int64_t *source_ts) {
    uint64_t v;
    uint8_t q;
    int64_t st;
    if (__builtin_expect(slot_copy(limit, s, &v, &q, NULL, &st, NULL, NULL) != 0, 0))
        return 1;
    values[i] = v;
    if (quality) quality[i] = q;
    if (source_ts) source_ts[i] = st;
    return 0;
}

int64_t petra_read_batch(petra_seg_t *seg, const uint32_t *idx, uint32_t first, size_t n,
                         uint64_t *values, uint8_t *quality, int64_t *source_ts,
                         uint32_t *busy_out, uint32_t *busy_idx) {
    if (!values || !indices_ok(seg, idx, first, n)) return PETRA_ERANGE;
    /* Locals, and one loop per addressing mode: the loop is load- and store-bound, and
     * fewer live values keep it from spilling to the stack on every slot. */
    const uint32_t limit = seg->retry_limit;
    uint32_t busy = 0;
    if (!idx) {
        petra_slot_t *base = seg->slots + first;
        for (size_t i = 0; i < n; i++) {
            if (read_one_into(limit, &base[i], i, values, quality, source_ts)) {
                if (busy_idx) busy_idx[busy] = first + (uint32_t)i;
                busy++;
            }
        }
    } else {
        petra_slot_t *slots = seg->slots;
        for (size_t i = 0; i < n; i++) {
            if (read_one_into(limit, &slots[idx[i]], i, values, quality, source_ts)) {
                if (busy_idx) busy_idx[busy] = idx[i];
                busy++;
            }
        }
    }
    if (busy_out) *busy_out = busy;
    return (int64_t)n;
}

int64_t petra_read_batch_f64(petra_seg_t *seg, const uint32_t *idx, uint32_t first,
                             size_t n, double *values, uint8_t *quality,
                             uint32_t *busy_out, uint32_t *busy_idx) {
    if (!values || !indices_ok(seg, idx, first, n)) return PETRA_ERANGE;
    const uint32_t limit = seg->retry_limit; /* as in petra_read_batch */
    petra_slot_t *slots = seg->slots;
    uint32_t busy = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t k = idx ? idx[i] : first + (uint32_t)i;
        double v;
        uint8_t q;
        if (__builtin_expect(slot_copy_f64(limit, &slots[k], &v, &q) != 0, 0)) {
            if (busy_idx) busy_idx[busy] = k;
            busy++;
            continue;
        }
        values[i] = v;
        if (quality) quality[i] = q;
    }
    if (busy_out) *busy_out = busy;
    return (int64_t)n;
}

/* float64 -> a slot's bits; the value was validated for the type beforehand. */
static inline uint64_t f64_bits(uint8_t type, double v) {
    uint64_t bits;
    if (type == PETRA_T_FLOAT)
        memcpy(&bits, &v, sizeof bits);
    else if (type == PETRA_T_BOOL)
        bits = v != 0.0;
    else
        bits = (uint64_t)(int64_t)v;
    return bits;
}

static inline int f64_fits(uint8_t type, double v) {
    if (type == PETRA_T_INT) return v >= -9223372036854775808.0 && v < 9223372036854775808.0;
    if (type == PETRA_T_BOOL) return !isnan(v);
    return 1;
}

/* Spin briefly for a lock without waiting; 1 when taken. */
static inline int lock_fast(petra_seg_t *seg, _Atomic uint32_t *lock) {
    for (int spin = 0; spin < FAST_SPINS; spin++) {
        /* Relaxed: a hint; petra__try_lock decides. */
        uint32_t holder = atomic_load_explicit(lock, memory_order_relaxed);
        if (holder == 0) {
            if (petra__try_lock(seg, lock)) return 1;
        } else if (holder == seg->writer) {
            return 0; /* ours (a duplicate index in this chunk): flush the chunk */
        }
        petra__cpu_relax();
    }
    return 0;
}

/* The chunked batch writer behind both batch APIs (raw bits, or float64 converted
 * per slot type when f64 is given). See the file comment for the locking rule. */
static int64_t batch_write(petra_seg_t *seg, const uint32_t *idx, uint32_t first, size_t n,
                           const uint64_t *raw, const double *f64, const uint8_t *quality,
                           const int64_t *source_ts, uint32_t *failed) {
    int64_t now = petra__clock(CLOCK_REALTIME);
    int64_t written = 0;
    size_t nfailed = 0, i = 0;
    uint32_t held[CHUNK];
    size_t at[CHUNK];
    uint64_t odd[CHUNK];
    while (i < n) {
        size_t m = 0;
        /* A locked CAS is a full barrier: a prefetch issued after one waits for it, so
         * fetch the chunk's slot lines all at once before the locking loop. */
        for (size_t p = i; p < n && p < i + CHUNK; p++)
            __builtin_prefetch(&seg->slots[idx ? idx[p] : first + (uint32_t)p], 1);
        while (i < n && m < CHUNK) {
            uint32_t k = idx ? idx[i] : first + (uint32_t)i;
            petra_slot_t *s = &seg->slots[k];
            if (!lock_fast(seg, &s->lock)) {
                if (m) break; /* never wait while holding locks: write the chunk first */
                if (petra__lock(seg, &s->lock, 1)) {
                    if (failed) failed[nfailed] = k;
                    nfailed++;
                    i++;
                    continue;
                }
            }
            held[m] = k;
            at[m] = i;
            m++;
            i++;
        }
        if (!m) continue;
        for (size_t j = 0; j < m; j++) odd[j] = slot_odd(&seg->slots[held[j]]);
        /* Release fence: pairs with the readers' acquire fence in slot_copy and orders
         * every odd seq of the chunk before its journal claim and its data stores. */
        atomic_thread_fence(memory_order_release);
        uint64_t pos = petra__journal_claim(seg, m);
        /* No prefetch of the chunk's ring entries: measured, it cost more than it saved
         * (a prefetch into a page this process has not touched yet is not free). */
        for (size_t j = 0; j < m; j++) {
            uint32_t k = held[j];
            petra_slot_t *s = &seg->slots[k];
            size_t src = at[j];
            uint64_t bits = f64 ? f64_bits(s->type, f64[src]) : raw[src];
            uint8_t q = quality ? quality[src] : PETRA_Q_GOOD;
            int64_t st = source_ts && source_ts[src] ? source_ts[src] : now;
            slot_store(seg, k, s, pos + j, bits, q, PETRA_SUB_NONE, st, now);
        }
        for (size_t j = 0; j < m; j++) slot_leave(&seg->slots[held[j]], odd[j]);
        written += (int64_t)m;
    }
    return written;
}

/* Batch writes are checked whole before anything is written; then they return the
 * number of slots written and list the ones that were not in `failed`. */
int64_t petra_write_batch(petra_seg_t *seg, const uint32_t *idx, uint32_t first, size_t n,
                          const uint64_t *values, const uint8_t *quality,
                          const int64_t *source_ts, uint32_t *failed) {
    if (seg->readonly) return PETRA_EINVAL;
    if (!values || !indices_ok(seg, idx, first, n)) return PETRA_ERANGE;
    for (size_t i = 0; i < n; i++) {
        uint32_t k = idx ? idx[i] : first + (uint32_t)i;
        if (quality && quality[i] > PETRA_Q_GOOD) return PETRA_EINVAL;
        if (seg->slots[k].type == PETRA_T_BOOL && values[i] > 1) return PETRA_EINVAL;
    }
    return batch_write(seg, idx, first, n, values, NULL, quality, source_ts, failed);
}

int64_t petra_write_batch_f64(petra_seg_t *seg, const uint32_t *idx, uint32_t first,
                              size_t n, const double *values, const uint8_t *quality,
                              uint32_t *failed) {
    if (seg->readonly) return PETRA_EINVAL;
    if (!values || !indices_ok(seg, idx, first, n)) return PETRA_ERANGE;
    for (size_t i = 0; i < n; i++) {
        uint32_t k = idx ? idx[i] : first + (uint32_t)i;
        if (quality && quality[i] > PETRA_Q_GOOD) return PETRA_EINVAL;
        if (!f64_fits(seg->slots[k].type, values[i]))
            return PETRA_EINVAL; /* NaN, inf or out of int64 range; NaN for a bool */
    }
    return batch_write(seg, idx, first, n, NULL, values, quality, NULL, failed);
}

int petra__write_f64_at(petra_seg_t *seg, uint32_t index, double value, uint8_t quality,
                        int64_t now, int wait) {
    uint8_t t = seg->slots[index].type;
    if (!f64_fits(t, value)) return PETRA_EINVAL;
    return write_one(seg, index, f64_bits(t, value), quality, PETRA_SUB_NONE, 0, now, wait);
}

/* Read slots straight into the scan's process image: img[k] and quality[k] for each
 * k in idx. A busy slot keeps the image's last good value and is counted. */
int64_t petra__read_scatter_f64(petra_seg_t *seg, const uint32_t *idx, size_t n,
                                double *img, uint8_t *quality) {
    petra_slot_t *slots = seg->slots; /* locals: see petra_read_batch */
    const uint32_t limit = seg->retry_limit, n_signals = seg->n_signals;
    int64_t busy = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t k = idx[i];
        if (k >= n_signals) return PETRA_ERANGE;
        if (slot_copy_f64(limit, &slots[k], &img[k], &quality[k])) busy++;
    }
    return busy;
}

int64_t petra_bench_read_range(petra_seg_t *seg, uint32_t first, size_t n,
                               uint32_t iterations, uint64_t *values, uint8_t *quality) {
    int64_t t0 = petra__clock(CLOCK_MONOTONIC);
    for (uint32_t it = 0; it < iterations; it++) {
        int64_t rc = petra_read_batch(seg, NULL, first, n, values, quality, NULL, NULL, NULL);
        if (rc < 0) return rc;
    }
    return petra__clock(CLOCK_MONOTONIC) - t0;
}

int64_t petra_bench_write_range(petra_seg_t *seg, uint32_t first, size_t n,
                                uint32_t iterations, const uint64_t *values,
                                const uint8_t *quality) {
    int64_t t0 = petra__clock(CLOCK_MONOTONIC);
    for (uint32_t it = 0; it < iterations; it++) {
        int64_t rc = petra_write_batch(seg, NULL, first, n, values, quality, NULL, NULL);
        if (rc < 0) return rc;
    }
    return petra__clock(CLOCK_MONOTONIC) - t0;
}

uint32_t petra_slot_holder(const petra_seg_t *seg, uint32_t index) {
    if (index >= seg->n_signals) return 0;
    /* Relaxed: a diagnostic snapshot of who holds the slot. */
    return atomic_load_explicit(&seg->slots[index].lock, memory_order_relaxed);
}

/* Free every slot a dead writer holds (see layout.h for the three cases). */
uint64_t petra__repair_slots(petra_seg_t *seg, uint32_t dead, uint64_t *torn) {
    uint64_t freed = 0;
    int64_t now = petra__clock(CLOCK_REALTIME);
    *torn = 0;
    for (uint32_t i = 0; i < seg->n_signals; i++) {
        petra_slot_t *s = &seg->slots[i];
        /* Relaxed: a filter; the take-over CAS decides. */
        if (atomic_load_explicit(&s->lock, memory_order_relaxed) != dead) continue;
        if (!petra__take_over(seg, &s->lock, dead)) continue;
        /* Relaxed: we hold the lock; only holders store seq. */
        uint64_t seq = atomic_load_explicit(&s->seq, memory_order_relaxed);
        if (seq & 1) {
            /* Killed inside: we stand in for it. The value is either the old or the new
             * one (a single 64-bit store), but the fields may not belong together, so
             * the slot goes BAD/WRITER_DIED until its owner writes again. */
            /* Release fence: as in write_one; our load of the odd seq is ordered before
             * the stores below, so a reader that sees one of them sees seq odd. */
            atomic_thread_fence(memory_order_release);
            uint64_t pos = petra__journal_claim(seg, 1);
            uint64_t v = atomic_load_explicit(&s->value, memory_order_relaxed);
            int64_t st = atomic_load_explicit(&s->source_ts_ns, memory_order_relaxed);
            slot_store(seg, i, s, pos, v, PETRA_Q_BAD, PETRA_SUB_WRITER_DIED, st, now);
            /* Release: same partners as slot_leave. */
            atomic_store_explicit(&s->seq, seq + 1, memory_order_release);
            (*torn)++;
        }
        /* Even: killed before its odd store (nothing written) or after its even store
         * (its write is complete and journalled): the slot is consistent as it is. */
        petra__unlock(&s->lock);
        freed++;
    }
    return freed;
}

/* Test hook: enter a slot's write section and return without leaving it, so a test
 * can kill the process there and watch readers and the repair routine. */
int petra_debug_begin_write(petra_seg_t *seg, uint32_t index) {
    return petra_debug_stage(seg, PETRA_DBG_SLOT, index, PETRA_STAGE_ODD);
}

int petra__debug_slot(petra_seg_t *seg, uint32_t index, int stage) {
    int rc = check_write(seg, index, PETRA_Q_GOOD);
    if (rc) return rc;
    petra_slot_t *s = &seg->slots[index];
    if (stage == PETRA_STAGE_LEAVE) {
        if (atomic_load_explicit(&s->lock, memory_order_relaxed) != seg->writer)
            return PETRA_EINVAL;
        uint64_t seq = atomic_load_explicit(&s->seq, memory_order_relaxed);
        if (seq & 1) slot_leave(s, seq);
        else petra__unlock(&s->lock);
        return PETRA_OK;
    }
    rc = petra__lock(seg, &s->lock, 0);
    if (rc) return rc;
    if (stage == PETRA_STAGE_LOCKED) return PETRA_OK;
    uint64_t odd = slot_odd(s);
    atomic_thread_fence(memory_order_release); /* as in write_one */
    if (stage == PETRA_STAGE_EVEN) {
        /* A write that completed (same data) but never freed its lock word.
         * Release: as in slot_leave. */
        atomic_store_explicit(&s->seq, odd + 1, memory_order_release);
        return PETRA_OK;
    }
    atomic_store_explicit(&s->value, 0xDEADDEADDEADDEADULL, memory_order_relaxed);
    return PETRA_OK;
}
