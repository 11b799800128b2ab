/*
 * core.h - the per-process handle and helpers shared by the C sources.
 * Private to csrc/; see layout.h for the protocols.
 */
#ifndef PETRA_CORE_H
#define PETRA_CORE_H

#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* clock_gettime, CLOCK_MONOTONIC */
#endif

#include "layout.h"
#include "petra.h"

#include <time.h>

struct petra_seg {
    uint8_t *base;                  /* this process's mapping address */
    size_t size;
    int readonly;
    uint32_t writer;                /* id put in lock words, slots and entries: the pid */
    uint32_t retry_limit;           /* bounded seqlock retries before EBUSY */
    int64_t wait_ns;                /* how long a writer waits for a live lock holder */
    petra_lock_stats_t lock_stats;  /* why this handle's acquisitions gave up */
    petra_header_t hdr;             /* private copy, validated once by petra_open */
    petra_dir_entry_t *dir;
    const uint32_t *index;          /* name index buckets (directory.c) */
    uint64_t index_mask;            /* buckets - 1 */
    petra_slot_t *slots;
    petra_journal_hdr_t *jhdr;
    petra_jentry_t *ring;
    uint64_t jmask;
    petra_stats_t *stats;
    petra_hb_t *hb;
    uint32_t n_signals;
    uint32_t n_hb;
};

static inline int64_t petra__clock(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline void petra__cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Lock words (lock.c). Take `lock` for seg->writer: spin retry_limit times; then, if
 * `wait`, keep waiting while the holder is alive and running, up to seg->wait_ns.
 * Returns 0, or PETRA_EBUSY (the cause counted in seg->lock_stats). */
int petra__lock(petra_seg_t *seg, _Atomic uint32_t *lock, int wait);

/* One attempt, no waiting: 1 if taken. */
static inline int petra__try_lock(petra_seg_t *seg, _Atomic uint32_t *lock) {
    uint32_t expect = 0;
    /* Acquire on success: pairs with the release store of 0 by the previous holder
     * (petra__unlock), so everything it stored in the object is visible to us. */
    return atomic_compare_exchange_strong_explicit(lock, &expect, seg->writer,
                                                   memory_order_acquire,
                                                   memory_order_relaxed);
}

static inline void petra__unlock(_Atomic uint32_t *lock) {
    /* Release: pairs with the acquire CAS of the next holder (petra__try_lock). */
    atomic_store_explicit(lock, 0, memory_order_release);
}

/* Take over the lock of a dead holder: CAS dead -> seg->writer. 1 if taken. */
int petra__take_over(petra_seg_t *seg, _Atomic uint32_t *lock, uint32_t dead);

/* The name index (directory.c). */
uint64_t petra__index_buckets(uint32_t n_signals);
uint64_t petra__name_hash(const char *name, size_t len);
/* Insert entry i (its name already in dir[i]); PETRA_EINVAL if an earlier entry has
 * the same name (then *dup is that entry). */
int petra__index_insert(petra_dir_entry_t *dir, uint32_t *index, uint64_t mask, uint32_t i,
                        uint32_t *dup);
/* Index entries 0..n-1 of a filled directory into a zeroed index; PETRA_EINVAL for a
 * name given twice (then *bad is the second entry). `hashes`: each entry's
 * petra__name_hash, or NULL to compute them from the directory. */
int petra__index_build(petra_dir_entry_t *dir, uint32_t n, uint32_t *index, uint64_t buckets,
                       const uint64_t *hashes, uint32_t *bad);
/* 1 when a directory entry passes every check C can make on its own (ASCII text). */
int petra__entry_plain_ok(const petra_dir_entry_t *d);

/* Region repairs for petra_repair_dead (each in its region's file). */
uint64_t petra__repair_slots(petra_seg_t *seg, uint32_t dead, uint64_t *torn);
uint64_t petra__repair_journal(petra_seg_t *seg, uint32_t dead);
uint64_t petra__repair_stats(petra_seg_t *seg, uint32_t dead);
uint64_t petra__repair_heartbeats(petra_seg_t *seg, uint32_t dead);

/* Test hooks behind petra_debug_stage: leave an object half-way, lock word ours. */
int petra__debug_slot(petra_seg_t *seg, uint32_t index, int stage);
int petra__debug_entry(petra_seg_t *seg, int stage);
int petra__debug_stats(petra_seg_t *seg, int stage);
int petra__debug_hb(petra_seg_t *seg);

/* Write one float64 to a slot, converted to its type (internal: no argument checks
 * beyond the conversion; a non-finite value for an int/bool slot is EINVAL). */
int petra__write_f64_at(petra_seg_t *seg, uint32_t index, double value, uint8_t quality,
                        int64_t now, int wait);

/* Scatter-read slots into a process image (see scan.c). */
int64_t petra__read_scatter_f64(petra_seg_t *seg, const uint32_t *idx, size_t n,
                                double *img, uint8_t *quality);

/* Claim n journal positions (the caller's slots are already odd, see layout.h). */
static inline uint64_t petra__journal_claim(petra_seg_t *seg, uint64_t n) {
    /* Relaxed: the claim orders nothing by itself; the slot writer's release fence
     * before it is what a reader's acquire load of head synchronises with. */
    return atomic_fetch_add_explicit(&seg->jhdr->head, n, memory_order_relaxed);
}

/* Fill and publish the entry of a claimed position; called by slot writers from
 * inside their slot section. Protocol: layout.h, "Change journal". Inline: it is half
 * of every write, and an out-of-line call with this many arguments costs stores. */
static inline void petra__journal_put(petra_seg_t *seg, uint64_t pos, uint32_t slot, uint8_t type,
                        uint64_t value, uint8_t quality, uint8_t substatus,
                        int64_t source_ts, int64_t write_ts) {
    petra_journal_hdr_t *j = seg->jhdr;
    petra_jentry_t *e = &seg->ring[pos & seg->jmask];
    uint64_t want = 2 * pos + 1;
    /* The lock word names us before we touch the entry. Taken: a producer a full lap
     * behind is inside (or died there); never wait for it, drop ours. The relaxed load
     * first is a hint that spares a CAS bound to fail. */
    if (atomic_load_explicit(&e->lock, memory_order_relaxed) != 0 ||
        !petra__try_lock(seg, &e->lock)) {
        /* Relaxed: a statistic. */
        atomic_fetch_add_explicit(&j->producer_drops, 1, memory_order_relaxed);
        return;
    }
    /* Relaxed: only lock holders store seq, and our acquire CAS synchronised with the
     * previous holder's release of the lock (so its seq store is visible). */
    uint64_t cur = atomic_load_explicit(&e->seq, memory_order_relaxed);
    if (cur >= want) {
        /* The entry already holds a newer lap: we are the one a full lap late. */
        petra__unlock(&e->lock);
        atomic_fetch_add_explicit(&j->producer_drops, 1, memory_order_relaxed);
        return;
    }
    atomic_store_explicit(&e->seq, want, memory_order_relaxed);
    /* Release fence: pairs with the consumer's acquire fence in petra_journal_read_sub;
     * orders the odd seq before the data stores below. */
    atomic_thread_fence(memory_order_release);
    atomic_store_explicit(&e->value, value, memory_order_relaxed);
    atomic_store_explicit(&e->source_ts_ns, source_ts, memory_order_relaxed);
    atomic_store_explicit(&e->write_ts_ns, write_ts, memory_order_relaxed);
    atomic_store_explicit(&e->slot_writer, slot | (uint64_t)seg->writer << 32,
                          memory_order_relaxed);
    atomic_store_explicit(&e->tqs, PETRA_TQS(type, quality, substatus), memory_order_relaxed);
    /* Release: pairs with the consumer's acquire load of seq; publishes the entry. */
    atomic_store_explicit(&e->seq, want + 1, memory_order_release);
    petra__unlock(&e->lock);
}


#endif
