/*
 * slots.c - the per-signal seqlock: single and batch reads and writes, repair.
 * Protocol: layout.h, "Slot seqlock". Every barrier below names its partner.
 */
#include "core.h"

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

/* Copy one slot out. Returns 0, or PETRA_EBUSY after retry_limit attempts. */
static inline int slot_copy(const petra_seg_t *seg, petra_slot_t *s, uint64_t *value,
                            uint8_t *quality, uint8_t *substatus, int64_t *src_ts,
                            int64_t *wr_ts, uint32_t *writer) {
    for (uint32_t attempt = 0; attempt < seg->retry_limit; attempt++) {
        /* Acquire: pairs with the release store of seq in slot_unlock, so the data
         * loads below see at least that writer's stores. */
        uint64_t s1 = atomic_load_explicit(&s->seq, memory_order_acquire);
        if (s1 & 1) {
            petra__cpu_relax();
            continue;
        }
        /* Relaxed: racy by design; validity is decided by the seq re-check. */
        uint64_t v = atomic_load_explicit(&s->value, memory_order_relaxed);
        uint8_t q = atomic_load_explicit(&s->quality, memory_order_relaxed);
        uint8_t sub = atomic_load_explicit(&s->substatus, memory_order_relaxed);
        int64_t st = atomic_load_explicit(&s->source_ts_ns, memory_order_relaxed);
        int64_t wt = wr_ts ? atomic_load_explicit(&s->write_ts_ns, memory_order_relaxed) : 0;
        uint32_t w = writer ? atomic_load_explicit(&s->writer, memory_order_relaxed) : 0;
        /* Acquire fence: pairs with the release fence in slot_lock. If any load above
         * saw a store of a newer writer, the seq load below sees that writer's odd
         * value (or later), and the copy is thrown away. */
        atomic_thread_fence(memory_order_acquire);
        /* Relaxed: ordered after the data loads by the fence above. */
        uint64_t s2 = atomic_load_explicit(&s->seq, memory_order_relaxed);
        if (s1 != s2) continue;
        *value = v;
        if (quality) *quality = q;
        if (substatus) *substatus = sub;
        if (src_ts) *src_ts = st;
        if (wr_ts) *wr_ts = wt;
        if (writer) *writer = w;
        return PETRA_OK;
    }
    return PETRA_EBUSY;
}

/* Copy one slot out as a float64 (bool and int converted). */
static inline int slot_copy_f64(const petra_seg_t *seg, petra_slot_t *s, double *value,
                                uint8_t *quality) {
    uint64_t v;
    int rc = slot_copy(seg, s, &v, quality, NULL, NULL, NULL, NULL);
    if (rc) return rc;
    if (s->type == PETRA_T_FLOAT)
        memcpy(value, &v, sizeof(double));
    else
        *value = (double)(int64_t)v;
    return PETRA_OK;
}

/* Enter a slot's write section. On success *seq_out holds the odd sequence. */
static inline int slot_lock(const petra_seg_t *seg, petra_slot_t *s, uint64_t *seq_out) {
    for (uint32_t attempt = 0; attempt < seg->retry_limit; attempt++) {
        /* Relaxed: only a hint; the CAS below decides. */
        uint64_t cur = atomic_load_explicit(&s->seq, memory_order_relaxed);
        if (cur & 1) {
            petra__cpu_relax();
            continue;
        }
        /* Acquire on success: pairs with the previous writer's release store of seq in
         * slot_unlock, so our data stores are ordered after theirs (writers are
         * serialised, and the last completed write is the one that stays). */
        if (atomic_compare_exchange_weak_explicit(&s->seq, &cur, cur + 1,
                                                  memory_order_acquire,
                                                  memory_order_relaxed)) {
            /* Relaxed: read only by the repair routine, after the writer is dead. */
            atomic_store_explicit(&s->lock_writer, seg->writer, memory_order_relaxed);
            /* Release fence: pairs with the readers' acquire fence in slot_copy. It
             * orders the odd seq before every data store that follows. */
            atomic_thread_fence(memory_order_release);
            *seq_out = cur + 1;
            return PETRA_OK;
        }
    }
    return PETRA_EBUSY;
}

static inline void slot_unlock(petra_slot_t *s, uint64_t odd) {
    atomic_store_explicit(&s->lock_writer, 0, memory_order_relaxed);
    /* Release: pairs with the acquire load of seq in slot_copy (readers) and with the
     * acquire CAS in slot_lock (the next writer). Publishes every data store above. */
    atomic_store_explicit(&s->seq, odd + 1, memory_order_release);
}

static inline void slot_store(petra_seg_t *seg, uint32_t index, petra_slot_t *s,
                              uint64_t bits, uint8_t quality, uint8_t substatus,
                              int64_t source_ts, int64_t now) {
    /* Relaxed: inside the write section; published by slot_unlock's release. */
    atomic_store_explicit(&s->value, bits, memory_order_relaxed);
    atomic_store_explicit(&s->quality, quality, memory_order_relaxed);
    atomic_store_explicit(&s->substatus, substatus, memory_order_relaxed);
    atomic_store_explicit(&s->source_ts_ns, source_ts, memory_order_relaxed);
    atomic_store_explicit(&s->write_ts_ns, now, memory_order_relaxed);
    atomic_store_explicit(&s->writer, seg->writer, memory_order_relaxed);
    petra__journal_put(seg, index, s->type, bits, quality, substatus, source_ts, now);
}

static inline int write_one(petra_seg_t *seg, uint32_t index, uint64_t bits,
                            uint8_t quality, uint8_t substatus, int64_t source_ts,
                            int64_t now) {
    petra_slot_t *s = &seg->slots[index];
    uint64_t odd;
    int rc = slot_lock(seg, s, &odd);
    if (rc) return rc;
    slot_store(seg, index, s, bits, quality, substatus, source_ts ? source_ts : now, now);
    slot_unlock(s, odd);
    return PETRA_OK;
}

static inline int check_write(const petra_seg_t *seg, uint32_t index, uint8_t quality) {
    if (seg->readonly) return PETRA_EINVAL;
    if (index >= seg->n_signals) return PETRA_ERANGE;
    if (quality > PETRA_Q_GOOD) return PETRA_EINVAL;
    return PETRA_OK;
}

int petra_read(petra_seg_t *seg, uint32_t index, petra_sample_t *out) {
    if (index >= seg->n_signals) return PETRA_ERANGE;
    petra_slot_t *s = &seg->slots[index];
    out->type = s->type;
    return slot_copy(seg, s, &out->u, &out->quality, &out->substatus,
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
    *rc = slot_copy(seg, s, &v, NULL, NULL, NULL, NULL, NULL);
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
    *rc = slot_copy(seg, &seg->slots[index], &v, NULL, NULL, NULL, NULL, NULL);
    return *rc ? INT64_MIN : (int64_t)v;
}

int petra_write(petra_seg_t *seg, uint32_t index, uint8_t type, uint64_t bits,
                uint8_t quality, uint8_t substatus, int64_t source_ts_ns) {
    int rc = check_write(seg, index, quality);
    if (rc) return rc;
    if (seg->slots[index].type != type) return PETRA_ETYPE;
    if (type == PETRA_T_BOOL && bits > 1) return PETRA_EINVAL;
    return write_one(seg, index, bits, quality, substatus, source_ts_ns,
                     petra__clock(CLOCK_REALTIME));
}

int petra_write_f64(petra_seg_t *seg, uint32_t index, double value, uint8_t quality,
                    int64_t source_ts_ns) {
    int rc = check_write(seg, index, quality);
    if (rc) return rc;
    if (seg->slots[index].type != PETRA_T_FLOAT) return PETRA_ETYPE;
    uint64_t bits;
    memcpy(&bits, &value, sizeof bits);
    return write_one(seg, index, bits, quality, PETRA_SUB_NONE, source_ts_ns,
                     petra__clock(CLOCK_REALTIME));
}

int petra_write_i64(petra_seg_t *seg, uint32_t index, int64_t value, uint8_t quality,
                    int64_t source_ts_ns) {
    int rc = check_write(seg, index, quality);
    if (rc) return rc;
    uint8_t t = seg->slots[index].type;
    if (t == PETRA_T_FLOAT) return PETRA_ETYPE;
    if (t == PETRA_T_BOOL && (value < 0 || value > 1)) return PETRA_EINVAL;
    return write_one(seg, index, (uint64_t)value, quality, PETRA_SUB_NONE, source_ts_ns,
                     petra__clock(CLOCK_REALTIME));
}

/* Batch reads leave a busy slot's outputs untouched: the caller keeps its last good
 * value (the process-image contract) and learns how many were busy. */
int64_t petra_read_batch(petra_seg_t *seg, const uint32_t *idx, uint32_t first, size_t n,
                         uint64_t *values, uint8_t *quality, int64_t *source_ts,
                         uint32_t *busy_out) {
    uint32_t busy = 0;
    if (!idx && ((uint64_t)first + n > seg->n_signals)) return PETRA_ERANGE;
    if (idx) {
        for (size_t i = 0; i < n; i++)
            if (idx[i] >= seg->n_signals) return PETRA_ERANGE;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t k = idx ? idx[i] : first + (uint32_t)i;
        uint64_t v;
        uint8_t q;
        int64_t st;
        if (slot_copy(seg, &seg->slots[k], &v, &q, NULL, &st, NULL, NULL)) {
            busy++;
            continue;
        }
        values[i] = v;
        if (quality) quality[i] = q;
        if (source_ts) source_ts[i] = st;
    }
    if (busy_out) *busy_out = busy;
    return (int64_t)n;
}

int64_t petra_read_batch_f64(petra_seg_t *seg, const uint32_t *idx, uint32_t first,
                             size_t n, double *values, uint8_t *quality,
                             uint32_t *busy_out) {
    uint32_t busy = 0;
    if (!idx && ((uint64_t)first + n > seg->n_signals)) return PETRA_ERANGE;
    if (idx) {
        for (size_t i = 0; i < n; i++)
            if (idx[i] >= seg->n_signals) return PETRA_ERANGE;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t k = idx ? idx[i] : first + (uint32_t)i;
        double v;
        uint8_t q;
        if (slot_copy_f64(seg, &seg->slots[k], &v, &q)) {
            busy++;
            continue;
        }
        values[i] = v;
        if (quality) quality[i] = q;
    }
    if (busy_out) *busy_out = busy;
    return (int64_t)n;
}

/* Batch writes return the number of slots written; a busy slot is skipped and the
 * shortfall is the caller's busy count. */
int64_t petra_write_batch(petra_seg_t *seg, const uint32_t *idx, uint32_t first, size_t n,
                          const uint64_t *values, const uint8_t *quality,
                          const int64_t *source_ts) {
    if (seg->readonly) return PETRA_EINVAL;
    if (!idx && ((uint64_t)first + n > seg->n_signals)) return PETRA_ERANGE;
    for (size_t i = 0; i < n; i++) {
        uint32_t k = idx ? idx[i] : first + (uint32_t)i;
        if (k >= seg->n_signals) return PETRA_ERANGE;
        if (quality && quality[i] > PETRA_Q_GOOD) return PETRA_EINVAL;
        if (seg->slots[k].type == PETRA_T_BOOL && values[i] > 1) return PETRA_EINVAL;
    }
    int64_t now = petra__clock(CLOCK_REALTIME);
    int64_t written = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t k = idx ? idx[i] : first + (uint32_t)i;
        uint8_t q = quality ? quality[i] : PETRA_Q_GOOD;
        int64_t st = source_ts ? source_ts[i] : 0;
        if (write_one(seg, k, values[i], q, PETRA_SUB_NONE, st, now) == PETRA_OK) written++;
    }
    return written;
}

int64_t petra_write_batch_f64(petra_seg_t *seg, const uint32_t *idx, uint32_t first,
                              size_t n, const double *values, const uint8_t *quality) {
    if (seg->readonly) return PETRA_EINVAL;
    if (!idx && ((uint64_t)first + n > seg->n_signals)) return PETRA_ERANGE;
    for (size_t i = 0; i < n; i++) {
        uint32_t k = idx ? idx[i] : first + (uint32_t)i;
        if (k >= seg->n_signals) return PETRA_ERANGE;
        if (quality && quality[i] > PETRA_Q_GOOD) return PETRA_EINVAL;
        uint8_t t = seg->slots[k].type;
        double v = values[i];
        if (t == PETRA_T_INT && !(v >= -9223372036854775808.0 && v < 9223372036854775808.0))
            return PETRA_EINVAL; /* NaN, inf or out of int64 range */
        if (t == PETRA_T_BOOL && isnan(v)) return PETRA_EINVAL;
    }
    int64_t now = petra__clock(CLOCK_REALTIME);
    int64_t written = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t k = idx ? idx[i] : first + (uint32_t)i;
        uint8_t q = quality ? quality[i] : PETRA_Q_GOOD;
        if (petra__write_f64_at(seg, k, values[i], q, now) == PETRA_OK) written++;
    }
    return written;
}

int petra__write_f64_at(petra_seg_t *seg, uint32_t index, double value, uint8_t quality,
                        int64_t now) {
    uint8_t t = seg->slots[index].type;
    uint64_t bits;
    if (t == PETRA_T_FLOAT) {
        memcpy(&bits, &value, sizeof bits);
    } else if (t == PETRA_T_BOOL) {
        if (isnan(value)) return PETRA_EINVAL;
        bits = value != 0.0;
    } else {
        if (!(value >= -9223372036854775808.0 && value < 9223372036854775808.0))
            return PETRA_EINVAL;
        bits = (uint64_t)(int64_t)value;
    }
    return write_one(seg, index, bits, quality, PETRA_SUB_NONE, 0, now);
}

/* Read slots straight into the scan's process image: img[k] and quality[k] for each
 * k in idx. A busy slot keeps the image's last good value and is counted. */
int64_t petra__read_scatter_f64(petra_seg_t *seg, const uint32_t *idx, size_t n,
                                double *img, uint8_t *quality) {
    int64_t busy = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t k = idx[i];
        if (k >= seg->n_signals) return PETRA_ERANGE;
        if (slot_copy_f64(seg, &seg->slots[k], &img[k], &quality[k])) busy++;
    }
    return busy;
}

int64_t petra_bench_read_range(petra_seg_t *seg, uint32_t first, size_t n,
                               uint32_t iterations, uint64_t *values, uint8_t *quality) {
    int64_t t0 = petra__clock(CLOCK_MONOTONIC);
    for (uint32_t it = 0; it < iterations; it++) {
        int64_t rc = petra_read_batch(seg, NULL, first, n, values, quality, NULL, NULL);
        if (rc < 0) return rc;
    }
    return petra__clock(CLOCK_MONOTONIC) - t0;
}

int64_t petra_bench_write_range(petra_seg_t *seg, uint32_t first, size_t n,
                                uint32_t iterations, const uint64_t *values,
                                const uint8_t *quality) {
    int64_t t0 = petra__clock(CLOCK_MONOTONIC);
    for (uint32_t it = 0; it < iterations; it++) {
        int64_t rc = petra_write_batch(seg, NULL, first, n, values, quality, NULL);
        if (rc < 0) return rc;
    }
    return petra__clock(CLOCK_MONOTONIC) - t0;
}

/* Restore slots that a dead writer left inside its write section. The caller must
 * know the writer is dead (the supervisor saw its exit): only then is nobody else
 * going to store into the section, and we may finish it ourselves. */
int64_t petra_repair_writer(petra_seg_t *seg, uint32_t dead_writer) {
    if (seg->readonly) return PETRA_EINVAL;
    if (dead_writer == 0) return PETRA_EINVAL;
    int64_t repaired = 0;
    int64_t now = petra__clock(CLOCK_REALTIME);
    for (uint32_t i = 0; i < seg->n_signals; i++) {
        petra_slot_t *s = &seg->slots[i];
        /* Acquire: an odd seq was stored by a writer's CAS, which continues the release
         * sequence headed by the previous writer's release store in slot_unlock. So we
         * synchronise with that unlock and the lock_writer load below cannot return a
         * stale id from an older, finished section (it sees 0, or the id of the writer
         * inside now). Without it a live writer could be "repaired" under its feet. */
        uint64_t seq = atomic_load_explicit(&s->seq, memory_order_acquire);
        if (!(seq & 1)) continue;
        if (atomic_load_explicit(&s->lock_writer, memory_order_relaxed) != dead_writer)
            continue;
        /* We stand in for the dead writer inside its section. The value is either the
         * old or the new one (a single 64-bit store), but the fields may not belong
         * together, so the slot goes BAD/WRITER_DIED until its owner writes again. */
        uint64_t v = atomic_load_explicit(&s->value, memory_order_relaxed);
        int64_t st = atomic_load_explicit(&s->source_ts_ns, memory_order_relaxed);
        slot_store(seg, i, s, v, PETRA_Q_BAD, PETRA_SUB_WRITER_DIED, st, now);
        atomic_store_explicit(&s->lock_writer, 0, memory_order_relaxed);
        /* Release: same partners as slot_unlock. CAS so that a slot which changed
         * under us (it cannot, its writer is dead) is left alone. */
        if (atomic_compare_exchange_strong_explicit(&s->seq, &seq, seq + 1,
                                                    memory_order_release,
                                                    memory_order_relaxed))
            repaired++;
    }
    return repaired;
}

/* Test hook: enter a slot's write section and return without leaving it, so a test
 * can kill the process there and watch readers and the repair routine. */
int petra_debug_begin_write(petra_seg_t *seg, uint32_t index) {
    int rc = check_write(seg, index, PETRA_Q_GOOD);
    if (rc) return rc;
    uint64_t odd;
    petra_slot_t *s = &seg->slots[index];
    rc = slot_lock(seg, s, &odd);
    if (rc) return rc;
    atomic_store_explicit(&s->value, 0xDEADDEADDEADDEADULL, memory_order_relaxed);
    return PETRA_OK;
}
