/*
 * layout.h - the shared segment's binary layout and the rules for touching it.
 *
 * This header is private to csrc/. Python never sees these structs: it calls the
 * functions declared in petra.h. Every process maps the segment at a different
 * address, so the segment holds offsets and indices, never pointers.
 *
 * ## The rule that makes a kill -9 harmless: the lock word names its holder
 *
 * Every object a writer can be inside of - a slot, a journal entry, the stats block,
 * a heartbeat record being claimed - has a 32-bit lock word. A writer enters with ONE
 * compare-and-swap of that word from 0 to its writer id (its pid), and only then
 * touches the object; it leaves in the reverse order, the lock word last. So there is
 * no instant at which the object is held by nobody known: a process killed at any
 * instruction leaves either a free object or one whose lock word carries its pid, and
 * `petra_repair_dead(pid)` (the supervisor calls it for every reaped child) finds and
 * finishes every such object. Readers never take locks; a writer that finds a lock
 * held reads the holder's pid from the same word and decides (lock.c):
 *  - holder alive and running: wait for it (spin, then yield/sleep), bounded by the
 *    handle's wait budget (default 1 s);
 *  - holder dead or stopped (SIGSTOP, a debugger): give up at once with PETRA_EBUSY,
 *    counted per cause; the slot is repaired once the supervisor reaps the holder.
 *
 * ### Slot (one per signal)
 *  - `lock`: 0 or the holder's pid. `seq`: 64-bit seqlock counter, even = stable,
 *    odd = being written. Only the lock holder stores to `seq` or the data fields.
 *  - Writer: CAS lock 0 -> id (acquire: pairs with the previous holder's release
 *    store of 0, so its seq and data stores are visible); s = seq (even); store s+1
 *    (relaxed); release fence (pairs with the readers' acquire fence); claim the
 *    journal position(s) and store the data and the journal entry; store s+2
 *    (release: pairs with the readers' acquire load of seq); store lock 0 (release).
 *    The journal claim comes after the odd seq and its release fence, so a reader
 *    whose acquire load of `head` counts the claim also sees the slot odd (or
 *    later): what lets the scan skip entries when no slot read busy (scan.c).
 *  - Readers load `seq` (acquire), copy every data field out (relaxed atomic loads,
 *    so the racy reads are not undefined behaviour), issue an acquire fence and load
 *    `seq` again. Equal and even: the copy is consistent. Otherwise retry, at most
 *    `retry_limit` times, then report PETRA_EBUSY. A reader never waits on a writer:
 *    the writer may be a lower-priority process, or dead.
 *  - A holder killed (a) after its CAS but before the odd store, or (b) after the even
 *    store, leaves a consistent slot: repair just frees the lock. Killed while odd
 *    (c), the fields may not belong together: repair stands in for it, marks the slot
 *    BAD/WRITER_DIED, journals that, stores the even seq and frees the lock.
 *  - Wrap: 2^63 writes to one slot at 1 GHz take 292 years; the counter does not
 *    wrap in practice, and even if it did, even/odd parity and equality still hold
 *    because both are computed modulo 2^64.
 *
 * ### Change journal (one multi-producer broadcast ring)
 *  - `head` is the next position to claim. A producer claims one position (a single
 *    write) or a run of them (a chunk of a batch write) with fetch_add. Relaxed is
 *    enough for the claim: the release fence the slot writer issued after its odd
 *    seq store precedes it, so a reader's acquire load of head that reads this claim
 *    (or a later one of its release sequence) synchronises with that fence.
 *  - Entry for position pos: `lock` (0 or the producer's pid) and `seq`: 2*pos+1
 *    while being written, 2*pos+2 when published. The producer CASes the entry's lock
 *    0 -> id (acquire: pairs with the previous occupant's release store of 0); if the
 *    lock is taken (a producer a full lap behind is inside, or one died there) it
 *    drops its entry and counts it in `producer_drops`: nothing ever waits on the
 *    ring. It checks that seq belongs to an older lap (else it is itself a full lap
 *    late: unlock, drop), stores 2*pos+1, release fence, the fields, 2*pos+2
 *    (release), lock 0 (release).
 *  - A producer killed inside an entry leaves its pid in the lock: repair publishes
 *    the entry as VOID (type 0) for the position in its odd seq, so consumers count
 *    it lost at once instead of waiting, and the next lap can use the entry.
 *  - Consumers keep a private cursor. At position pos they load the entry's seq
 *    (acquire): 2*pos+2 means published, copy it, acquire fence, load seq again; a
 *    change means it was overwritten during the copy. A seq beyond 2*pos+2 means the
 *    ring lapped the consumer: it jumps ahead to the oldest position still in the
 *    ring and counts every skipped position as lost. A VOID entry is counted lost. A
 *    seq below means not yet published: the batch ends there, unless the position is
 *    already a full ring behind head or has stayed unpublished longer than the stall
 *    timeout: then it, and every unpublished position claimed before the wait began
 *    (they had as long to publish), is skipped and counted lost.
 *  - So for every consumer: received + lost == positions passed. Loss is measured,
 *    never silent.
 *
 * ### Stats block and heartbeat records
 *  - The stats block is a seqlock like a slot, with its own lock word: the writer (the
 *    scan) CASes lock 0 -> id, stores seq+1, fences, updates, stores seq+2 (release),
 *    frees the lock. A writer killed inside leaves seq odd and its pid in the lock;
 *    repair makes seq even again (the block may then hold one half-applied cycle).
 *  - A heartbeat record's `pid` is its lock word: claimed by CAS 0 -> pid|CLAIMING
 *    (acquire: pairs with the release store of 0 that freed it), filled, then `pid`
 *    stored with release so a reader that sees the pid (acquire) sees the role. A
 *    process killed while claiming leaves pid|CLAIMING; repair frees that, and any
 *    record the dead pid owned.
 *
 * ### Name index (directory.c)
 *  - An open-addressing hash table of uint32 buckets after the directory: 0 = empty,
 *    else entry index + 1, at the bucket FNV-1a(name) picks, probing linearly. It is
 *    written once by the creator before `magic` and never changed, so it needs no
 *    synchronisation beyond that release store. A process resolves names through it
 *    on demand instead of copying the directory into its own memory.
 *  - Shared memory may hold anything: petra_open() has every entry checked against
 *    the index (each entry found from its own name, no second entry of that name on
 *    its probe chain, exactly n_signals buckets used), and a lookup bounds its probe
 *    and compares the name in the directory, so a damaged index can make a lookup
 *    miss but never return an index out of range.
 *
 * ### Creation
 *  - The creator fills every region, then stores `magic` with release. attach()
 *    loads `magic` with acquire (pairs with that store): a segment whose magic is
 *    not yet there is "not ready", never half-read. attach() then validates and
 *    uses a private copy of the header, never the shared bytes a second time.
 *
 * ### Memory orderings reasoned for weakly ordered CPUs (ARM64)
 *  Every acquire/release above is a real pairing, not an x86 habit: the slot and stats
 *  seqlocks use the fence-based read side (acquire load, relaxed copies, acquire
 *  fence, relaxed re-load) that is correct on ARM64; the journal's "skip entries below
 *  head" needs head loaded with acquire (petra_journal_head); lock words are taken
 *  with acquire CAS and freed with release stores. docs/design/shared-segment.md has
 *  the argument for each.
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
    uint64_t index_offset, index_size; /* the name index (directory.c), after the dir */
    uint64_t index_buckets;          /* a power of two >= 1.5 * n_signals */
    uint8_t reserved[4096 - 240];
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
    _Atomic uint32_t lock;           /* lock word: pid of the writer inside, 0 = free */
    _Atomic uint16_t qs;             /* quality | substatus << 8: one store, one load */
    uint8_t type;                    /* fixed at creation */
    uint8_t reserved1[5];
    uint8_t reserved2[16];
} petra_slot_t;

/* Journal entry. The lock word and seq come first and share a cache line (entries are
 * 48 bytes, 16-aligned), so taking the entry touches one line before the stores. */
typedef struct {
    _Atomic uint32_t lock;           /* lock word: pid of the producer inside, 0 = free */
    _Atomic uint32_t tqs;            /* type | quality << 8 | substatus << 16; type 0:
                                        VOID (a dead producer's entry, counted lost) */
    _Atomic uint64_t seq;            /* 2*pos+1 writing, 2*pos+2 published */
    _Atomic uint64_t value;
    _Atomic int64_t source_ts_ns;
    _Atomic int64_t write_ts_ns;
    _Atomic uint64_t slot_writer;    /* slot | writer << 32 */
} petra_jentry_t;

/* Packing of the combined fields: each is written with one store and read with one
 * load, which matters because a write's cost is mostly the stores it commits. */
#define PETRA_QS(q, sub) ((uint16_t)((q) | ((uint16_t)(sub) << 8)))
#define PETRA_TQS(t, q, sub) ((uint32_t)(t) | ((uint32_t)(q) << 8) | ((uint32_t)(sub) << 16))

typedef struct {
    _Atomic uint64_t head;           /* next position to claim */
    _Atomic uint64_t producer_drops; /* positions a producer could not fill */
    uint8_t pad[PETRA_CACHE_LINE - 16];
    /* entries follow, cache-line aligned */
} petra_journal_hdr_t;

/* Log-scale histogram (HDR style): bucket 0 holds [0, 64 ns); then every power of two
 * from 2^6 ns to 2^34 ns (17.2 s) is split into 16 linear sub-buckets (resolution
 * <= 6.25 % of the value); bucket PETRA_HIST_BUCKETS is the overflow (>= 2^34 ns). */
#define PETRA_HIST_SUB_BITS 4
#define PETRA_HIST_SUB (1 << PETRA_HIST_SUB_BITS)
#define PETRA_HIST_MIN_SHIFT 6
#define PETRA_HIST_MAX_SHIFT 34
#define PETRA_HIST_BUCKETS (1 + (PETRA_HIST_MAX_SHIFT - PETRA_HIST_MIN_SHIFT) * PETRA_HIST_SUB)
#define PETRA_WORST 8

typedef struct {
    uint64_t cycle;
    int64_t latency_ns;
} petra_outlier_t;

typedef struct {
    _Atomic uint64_t seq;            /* seqlock, written only by the lock holder */
    _Atomic uint32_t lock;           /* lock word: pid of the writer inside, 0 = free */
    uint32_t pad;
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

#define PETRA_HB_CLAIMING 0x80000000u /* pid|CLAIMING while a process fills its record */

typedef struct {
    _Atomic uint32_t pid;            /* lock word: 0 free, pid|CLAIMING, then pid */
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
_Static_assert(offsetof(petra_header_t, index_offset) == 216, "index offset");
_Static_assert(sizeof(petra_dir_entry_t) == 128, "directory entry size");
_Static_assert(offsetof(petra_dir_entry_t, type) == 104, "dir type offset");
_Static_assert(offsetof(petra_dir_entry_t, min) == 112, "dir min offset");
_Static_assert(sizeof(petra_slot_t) == PETRA_CACHE_LINE, "slot is one cache line");
_Static_assert(offsetof(petra_slot_t, value) == 8, "slot value offset");
_Static_assert(offsetof(petra_slot_t, writer) == 32, "slot writer offset");
_Static_assert(offsetof(petra_slot_t, lock) == 36, "slot lock offset");
_Static_assert(offsetof(petra_slot_t, qs) == 40, "slot quality offset");
_Static_assert(offsetof(petra_slot_t, type) == 42, "slot type offset");
_Static_assert(sizeof(petra_jentry_t) == 48, "journal entry size");
_Static_assert(offsetof(petra_jentry_t, slot_writer) == 40, "journal slot offset");
_Static_assert(offsetof(petra_jentry_t, tqs) == 4, "journal type offset");
_Static_assert(offsetof(petra_jentry_t, seq) == 8, "journal seq offset");
_Static_assert(offsetof(petra_jentry_t, lock) == 0, "journal lock offset");
_Static_assert(offsetof(petra_stats_t, lock) == 8, "stats lock offset");
_Static_assert(PETRA_HIST_BUCKETS == 449, "histogram buckets (petra.h mirrors 450)");
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
      sizeof(petra_hb_t), offsetof(petra_slot_t, qs),                         \
      offsetof(petra_jentry_t, slot_writer), offsetof(petra_hb_t, counters),              \
      offsetof(petra_dir_entry_t, min), offsetof(petra_slot_t, lock),             \
      offsetof(petra_jentry_t, lock), offsetof(petra_stats_t, lock),              \
      PETRA_HIST_SUB_BITS, PETRA_HIST_MIN_SHIFT, PETRA_HIST_MAX_SHIFT,             \
      offsetof(petra_stats_t, wake_hist), PETRA_HIST_BUCKETS, PETRA_WORST,         \
      PETRA_HB_COUNTERS, PETRA_MAGIC, offsetof(petra_header_t, index_buckets) }

#endif
