/*
 * layout.h - the shared segment's binary layout and the rules for touching it.
 *
 * This header is private to csrc/. Python never sees these structs: it calls the
 * functions declared in petra.h. Every process maps the segment at a different
 * address, so the segment holds offsets and indices, never pointers.
 *
 * ## The protocols (read before changing any line below)
 *
 * ### Slot seqlock (one per signal)
 *  - `seq` is a 64-bit counter. Even: the slot is stable. Odd: a writer is inside.
 *  - Writers are serialised per slot: a writer enters by compare-and-swap of `seq`
 *    from an even value s to s+1. Only the CAS winner writes; any process may try.
 *  - The writer records its id in `lock_writer` right after the CAS, stores the data
 *    fields, appends the change to the journal (still inside the section, so the
 *    journal's order for a slot is the slot's own write order), clears
 *    `lock_writer` and stores s+2 with release.
 *  - Readers load `seq` (acquire), copy every data field out (relaxed atomic loads,
 *    so the racy reads are not undefined behaviour), issue an acquire fence and load
 *    `seq` again. Equal and even: the copy is consistent. Otherwise retry, at most
 *    `retry_limit` times, then report PETRA_EBUSY. A reader never spins unbounded on
 *    a writer: the writer may be a lower-priority process, or dead.
 *  - A writer that dies inside the section leaves `seq` odd. `petra_repair_writer`
 *    (called by the supervisor for a pid it knows is dead) finds odd slots whose
 *    `lock_writer` is that id, marks them BAD/WRITER_DIED and makes `seq` even.
 *  - Wrap: 2^63 writes to one slot at 1 GHz take 292 years; the counter does not
 *    wrap in practice, and even if it did, even/odd parity and equality still hold
 *    because both are computed modulo 2^64.
 *
 * ### Change journal (one multi-producer broadcast ring)
 *  - `head` is the next position to claim. A producer claims pos with fetch_add
 *    (relaxed: the claim orders nothing; the entry's own sequence does).
 *  - Entry sequence for position pos: 2*pos+1 while being written, 2*pos+2 when
 *    published. A producer CASes the entry's seq from the older *even* value it
 *    finds to 2*pos+1. If the entry is odd (a producer one lap behind is still
 *    inside it, or died there) or the CAS fails, the producer does not wait: it
 *    counts a drop in `producer_drops` and returns. Nothing blocks a producer.
 *  - Consumers keep a private cursor. At position pos they load the entry's seq
 *    (acquire): 2*pos+2 means publishable, copy it, acquire fence, load seq again;
 *    a change means it was overwritten during the copy. A seq beyond 2*pos+2 means
 *    the ring lapped the consumer: it jumps ahead to the oldest position still
 *    in the ring and counts every skipped position as lost. A seq below means not
 *    yet published: the batch ends there, unless the position is already a full
 *    ring behind head or has stayed unpublished longer than the stall timeout
 *    (its producer dropped it or died), in which case it is skipped and counted lost.
 *  - So for every consumer: received + lost == positions passed. Loss is measured,
 *    never silent.
 *
 * ### Stats block (single writer: the scan) and heartbeat records
 *  - The stats block has its own seqlock with one writer, so the writer increments
 *    seq without a CAS. Heartbeat records are written field by field with relaxed
 *    atomics by their owner; `pid` is published last with release so a reader that
 *    sees a pid (acquire) also sees the role written before it.
 *
 * ### Creation
 *  - The creator fills every region, then stores `magic` with release. attach()
 *    loads `magic` with acquire (pairs with that store): a segment whose magic is
 *    not yet there is "not ready", never half-read.
 */
#ifndef PETRA_LAYOUT_H
#define PETRA_LAYOUT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define PETRA_MAGIC 0x3147455341525450ULL /* "PTRASEG1" little endian */
#define PETRA_CACHE_LINE 64

/* Header: fixed 4 KiB page at offset 0. */
typedef struct {
    _Atomic uint64_t magic;          /* stored last by the creator (release) */
    uint32_t abi_version;
    uint32_t header_size;
    uint64_t layout_hash;            /* hash of this file's struct layout */
    uint64_t directory_hash;         /* hash of the signal names and types */
    char instance[64];
    int64_t created_ns;              /* CLOCK_REALTIME at creation */
    uint64_t total_size;
    uint32_t n_signals;
    uint32_t n_heartbeats;
    uint64_t dir_offset, dir_size;
    uint64_t slots_offset, slots_size;
    uint64_t journal_offset, journal_size;
    uint64_t journal_capacity;       /* entries, a power of two */
    uint64_t stats_offset, stats_size;
    uint64_t hb_offset, hb_size;
    uint32_t creator_pid;
    uint32_t flags;
    uint8_t reserved[4096 - 216];
} petra_header_t;

/* Directory entry: what a tool needs to find a signal without the config. */
typedef struct {
    char name[64];                   /* UTF-8, NUL terminated, <= 63 bytes */
    char unit[16];
    char owner[24];
    uint8_t type;                    /* petra_type_t */
    uint8_t reserved[3];
    uint32_t flags;                  /* PETRA_FLAG_* */
    double min;                      /* lowest valid value; NaN = no lower limit */
    double max;                      /* highest valid value; NaN = no upper limit */
} petra_dir_entry_t;

/* Slot: one cache line per signal so writers of neighbours do not share lines. */
typedef struct {
    _Atomic uint64_t seq;            /* seqlock; odd while a writer is inside */
    _Atomic uint64_t value;          /* bool/int64/float64 bits */
    _Atomic int64_t source_ts_ns;
    _Atomic int64_t write_ts_ns;
    _Atomic uint32_t writer;         /* id of the last completed writer */
    _Atomic uint32_t lock_writer;    /* id of the writer inside, 0 when none */
    _Atomic uint8_t quality;
    _Atomic uint8_t substatus;
    uint8_t type;                    /* fixed at creation */
    uint8_t reserved1[5];
    uint8_t reserved2[16];
} petra_slot_t;

/* Journal entry. */
typedef struct {
    _Atomic uint64_t seq;            /* 2*pos+1 writing, 2*pos+2 published */
    _Atomic uint64_t value;
    _Atomic int64_t source_ts_ns;
    _Atomic int64_t write_ts_ns;
    _Atomic uint32_t slot;
    _Atomic uint32_t writer;
    _Atomic uint8_t type;
    _Atomic uint8_t quality;
    _Atomic uint8_t substatus;
    uint8_t reserved[5];
} petra_jentry_t;

typedef struct {
    _Atomic uint64_t head;           /* next position to claim */
    _Atomic uint64_t producer_drops; /* positions a producer could not fill */
    uint8_t pad[PETRA_CACHE_LINE - 16];
    /* entries follow, cache-line aligned */
} petra_journal_hdr_t;

#define PETRA_HIST_BUCKETS 1000      /* 1 us wide; one more bucket for overflow */
#define PETRA_WORST 8

typedef struct {
    uint64_t cycle;
    int64_t latency_ns;
} petra_outlier_t;

typedef struct {
    _Atomic uint64_t seq;            /* single-writer seqlock */
    int64_t period_ns;
    int64_t started_ns;
    uint64_t cycles;
    uint64_t overruns;
    uint64_t skipped;
    int64_t wake_min_ns, wake_max_ns, wake_sum_ns, wake_last_ns;
    int64_t exec_min_ns, exec_max_ns, exec_sum_ns, exec_last_ns;
    uint64_t wake_hist[PETRA_HIST_BUCKETS + 1];
    uint64_t exec_hist[PETRA_HIST_BUCKETS + 1];
    petra_outlier_t worst[PETRA_WORST];
    uint64_t reserved[8];
} petra_stats_t;

#define PETRA_HB_COUNTERS 8

typedef struct {
    _Atomic uint32_t pid;            /* 0 = free record; published with release */
    _Atomic uint32_t state;
    _Atomic int64_t last_beat_ns;    /* CLOCK_MONOTONIC */
    _Atomic uint32_t restarts;
    _Atomic uint32_t cpu;
    char role[48];
    _Atomic uint64_t counters[PETRA_HB_COUNTERS];
    uint8_t reserved[56];
} petra_hb_t;

/* The ABI: a change to any of these is a new ABI version and a new layout hash. */
_Static_assert(sizeof(petra_header_t) == 4096, "header is one page");
_Static_assert(offsetof(petra_header_t, magic) == 0, "magic first");
_Static_assert(offsetof(petra_header_t, instance) == 32, "instance offset");
_Static_assert(offsetof(petra_header_t, creator_pid) == 208, "creator_pid offset");
_Static_assert(sizeof(petra_dir_entry_t) == 128, "directory entry size");
_Static_assert(offsetof(petra_dir_entry_t, type) == 104, "dir type offset");
_Static_assert(offsetof(petra_dir_entry_t, min) == 112, "dir min offset");
_Static_assert(sizeof(petra_slot_t) == PETRA_CACHE_LINE, "slot is one cache line");
_Static_assert(offsetof(petra_slot_t, value) == 8, "slot value offset");
_Static_assert(offsetof(petra_slot_t, writer) == 32, "slot writer offset");
_Static_assert(offsetof(petra_slot_t, quality) == 40, "slot quality offset");
_Static_assert(offsetof(petra_slot_t, type) == 42, "slot type offset");
_Static_assert(sizeof(petra_jentry_t) == 48, "journal entry size");
_Static_assert(offsetof(petra_jentry_t, slot) == 32, "journal slot offset");
_Static_assert(offsetof(petra_jentry_t, type) == 40, "journal type offset");
_Static_assert(sizeof(petra_journal_hdr_t) == PETRA_CACHE_LINE, "journal header");
_Static_assert(sizeof(petra_hb_t) == 192, "heartbeat record size");
_Static_assert(offsetof(petra_hb_t, counters) == 72, "heartbeat counters offset");
_Static_assert(sizeof(petra_stats_t) % 8 == 0, "stats size");
_Static_assert(sizeof(_Atomic uint64_t) == 8, "64-bit atomics are plain words");

/* Layout hash: FNV-1a over the sizes and offsets above, computed at run time from
 * constants, so two builds with a different struct layout refuse each other. */
#define PETRA_LAYOUT_WORDS                                                        \
    { sizeof(petra_header_t), sizeof(petra_dir_entry_t), sizeof(petra_slot_t),     \
      sizeof(petra_jentry_t), sizeof(petra_journal_hdr_t), sizeof(petra_stats_t),  \
      sizeof(petra_hb_t), offsetof(petra_slot_t, quality),                         \
      offsetof(petra_jentry_t, slot), offsetof(petra_hb_t, counters),              \
      offsetof(petra_dir_entry_t, min),                                            \
      offsetof(petra_stats_t, wake_hist), PETRA_HIST_BUCKETS, PETRA_WORST,         \
      PETRA_HB_COUNTERS, PETRA_MAGIC }

#endif
