/*
 * petra.h - the C core's public API, and the single source of declarations.
 *
 * The block between CFFI-BEGIN and CFFI-END is read verbatim by
 * petra/_native_build.py and given to cffi's cdef, so it holds only plain
 * declarations (no macros, no _Atomic). The shared-memory structs live in
 * layout.h and are never exposed: Python sees a handle and these functions.
 *
 * Return codes: 0 or a positive count on success, a negative PETRA_E* on failure.
 * petra/_core.py is the one module that turns them into exceptions.
 */
#ifndef PETRA_H
#define PETRA_H

#include <stddef.h>
#include <stdint.h>

/* CFFI-BEGIN */
typedef enum {
    PETRA_OK = 0,
    PETRA_EINVAL = -1,      /* bad argument */
    PETRA_ERANGE = -2,      /* index out of range */
    PETRA_EBUSY = -3,       /* held by a dead or stopped writer (or past the wait) */
    PETRA_ETYPE = -4,       /* value type does not match the slot type */
    PETRA_EMAGIC = -5,      /* not a petra segment (or not ready yet) */
    PETRA_EABI = -6,        /* ABI version differs */
    PETRA_ELAYOUT = -7,     /* struct layout hash differs */
    PETRA_ESIZE = -8,       /* mapping smaller than the header says */
    PETRA_ENOMEM = -9,
    PETRA_EFULL = -10       /* no free heartbeat record */
} petra_rc_t;

typedef enum {
    PETRA_T_BOOL = 1,
    PETRA_T_INT = 2,
    PETRA_T_FLOAT = 3
} petra_type_t;

/* The type byte of a journal entry that carries no change: a producer killed inside it,
 * published by repair. Consumers count it lost. Not a signal type. */
typedef enum {
    PETRA_ENTRY_VOID = 0
} petra_entry_kind_t;

typedef enum {
    PETRA_Q_BAD = 0,
    PETRA_Q_UNCERTAIN = 1,
    PETRA_Q_GOOD = 2
} petra_quality_t;

typedef enum {
    PETRA_SUB_NONE = 0,
    PETRA_SUB_WRITER_DIED = 1,
    PETRA_SUB_NOT_CONNECTED = 2,
    PETRA_SUB_DEVICE_FAILURE = 3,
    PETRA_SUB_CONFIG = 4,
    PETRA_SUB_LAST_KNOWN = 5,
    PETRA_SUB_CALC = 6,
    PETRA_SUB_INITIAL = 7,
    PETRA_SUB_OUT_OF_RANGE = 8,
    PETRA_SUB_SCAN_DOWN = 9      /* marked by the supervisor while the scan is down */
} petra_substatus_t;

typedef struct petra_seg petra_seg_t;

typedef struct {
    char name[64];
    char unit[16];
    char owner[24];
    uint8_t type;
    uint32_t flags;
    uint64_t initial;        /* value bits */
    uint8_t initial_quality;
    double min;              /* lowest valid value; NaN = no lower limit */
    double max;              /* highest valid value; NaN = no upper limit */
} petra_sigdef_t;

/* A plant's signals as compact arrays, what petra_init_table lays out. The three
 * text blobs hold n strings, each NUL terminated, back to back; *_len is each blob's
 * size in bytes (bounds, so a short blob is refused, never over-read). */
typedef struct {
    uint32_t n;
    const char *names;
    size_t names_len;
    const char *units;
    size_t units_len;
    const char *owners;
    size_t owners_len;
    const uint8_t *types;
    const uint32_t *flags;
    const uint64_t *initial;          /* value bits */
    const uint8_t *initial_quality;
    const double *min;                /* NaN = no lower limit */
    const double *max;                /* NaN = no upper limit */
} petra_sigtable_t;

/* What petra_dir_check found at the entry it returns. */
typedef enum {
    PETRA_DIRCHK_LOOK = 1,   /* bad, or beyond the C checks (non-ASCII text): decode it */
    PETRA_DIRCHK_INDEX = 2   /* the name index disagrees (a duplicate name, or damage) */
} petra_dirchk_t;

/* Directory flags (petra_dir_entry_t.flags). */
typedef enum {
    PETRA_FLAG_WRITABLE = 1,     /* operators and commands may write it */
    PETRA_FLAG_RETAIN = 2,
    PETRA_FLAG_NONFINITE = 4     /* NaN and +-inf are valid values (float signals) */
} petra_flag_t;

typedef struct {
    union {
        uint64_t u;
        int64_t i;
        double f;
    };                       /* the value: u for raw bits, i for bool/int, f for float */
    int64_t source_ts_ns;
    int64_t write_ts_ns;
    uint32_t writer;
    uint8_t type;
    uint8_t quality;
    uint8_t substatus;
} petra_sample_t;

typedef struct {
    uint32_t abi_version;
    uint64_t layout_hash;
    uint64_t directory_hash;
    char instance[64];
    int64_t created_ns;
    uint64_t total_size;
    uint32_t n_signals;
    uint32_t n_heartbeats;
    uint64_t journal_capacity;
    uint64_t journal_head;
    uint64_t producer_drops;
    uint32_t creator_pid;
    uint64_t dir_offset;
    uint64_t slots_offset;
    uint64_t journal_offset;
    uint64_t stats_offset;
    uint64_t hb_offset;
} petra_info_t;

/* A journal consumer's private cursor; lives in the consumer's own memory. */
typedef struct {
    uint64_t next;           /* next position to read */
    uint64_t received;
    uint64_t lost;           /* positions skipped: lapped, dropped or stalled */
    uint64_t overruns;       /* times the ring lapped this consumer */
    uint64_t stall_pos;      /* position the consumer waits on */
    int64_t stall_since_ns;  /* CLOCK_MONOTONIC when it started waiting */
    int64_t stall_timeout_ns;
    uint64_t stall_head;     /* head when the wait began */
    uint64_t skip_below;     /* unpublished positions below this were waited for */
    uint32_t flags;          /* PETRA_CUR_* */
} petra_cursor_t;

typedef enum {
    PETRA_CUR_NEED_FULL = 1  /* scan copy-in: resynchronise from the slots (primed or
                                after a loss) until a full read finds no slot busy */
} petra_cursor_flag_t;

/* What petra_repair_dead found and finished for one dead writer. */
typedef struct {
    uint64_t slots;          /* slot locks freed (odd ones marked BAD/WRITER_DIED) */
    uint64_t slots_torn;     /* of those, slots the writer died inside (marked BAD) */
    uint64_t entries;        /* journal entries freed (unpublished ones made VOID) */
    uint64_t stats;          /* 1 when it held the stats block */
    uint64_t heartbeats;     /* heartbeat records freed, CLAIMING ones included */
} petra_repair_t;

/* Why lock acquisitions of this handle gave up (PETRA_EBUSY), and how often it had
 * to wait for a live holder. */
typedef struct {
    uint64_t waits;          /* acquisitions that outlasted the spin and waited */
    uint64_t busy_dead;      /* gave up: the holder is dead (awaiting repair) */
    uint64_t busy_stopped;   /* gave up: the holder is stopped (SIGSTOP, ptrace) */
    uint64_t busy_live;      /* gave up: a live holder outlasted the wait budget */
    uint64_t busy_nowait;    /* gave up: a caller that may not wait (scan copy-out) */
} petra_lock_stats_t;

typedef enum {
    PETRA_HOLDER_ALIVE = 0,
    PETRA_HOLDER_STOPPED = 1,
    PETRA_HOLDER_DEAD = 2
} petra_holder_t;

typedef enum {
    PETRA_DBG_SLOT = 1,      /* index: slot */
    PETRA_DBG_ENTRY = 2,     /* a freshly claimed journal position */
    PETRA_DBG_STATS = 3,
    PETRA_DBG_HB = 4         /* claims a free record and stays CLAIMING */
} petra_debug_kind_t;

typedef enum {
    PETRA_STAGE_LOCKED = 1,  /* lock word taken, seq still even */
    PETRA_STAGE_ODD = 2,     /* seq odd, fields half written */
    PETRA_STAGE_EVEN = 3,    /* seq even again, lock word not yet freed */
    PETRA_STAGE_LEAVE = 4    /* slots only: finish a section this handle left open */
} petra_debug_stage_t;

typedef struct {
    int64_t period_ns;
    int64_t started_ns;
    uint64_t cycles;
    uint64_t overruns;
    uint64_t skipped;
    int64_t wake_min_ns;
    int64_t wake_max_ns;
    int64_t wake_sum_ns;
    int64_t wake_last_ns;
    int64_t exec_min_ns;
    int64_t exec_max_ns;
    int64_t exec_sum_ns;
    int64_t exec_last_ns;
    uint64_t wake_hist[450]; /* PETRA_HIST_BUCKETS + 1 (layout.h checks) */
    uint64_t exec_hist[450];
    uint64_t worst_cycle[8];
    int64_t worst_latency_ns[8];
} petra_stats_out_t;

typedef struct {
    uint32_t pid;
    uint32_t state;
    int64_t last_beat_ns;
    uint32_t restarts;
    uint32_t cpu;
    char role[48];
    uint64_t counters[8];
} petra_hb_out_t;

/* Layout planning and creation. */
size_t petra_segment_size(uint32_t n_signals, uint64_t journal_capacity,
                          uint32_t n_heartbeats);
uint64_t petra_layout_hash(void);
uint32_t petra_abi_version(void);
int petra_init(void *base, size_t size, const char *instance,
               const petra_sigdef_t *defs, uint32_t n_signals,
               uint64_t journal_capacity, uint32_t n_heartbeats, uint32_t creator_pid);
/* Lay out a segment from a table into a mapping that reads as zeros (a new shm
 * object); on PETRA_EINVAL/ETYPE *bad is the offending entry (for a duplicate name,
 * the second of the two). petra_init is the older array-of-structs form. */
int petra_init_table(void *base, size_t size, const char *instance,
                     const petra_sigtable_t *table, uint64_t journal_capacity,
                     uint32_t n_heartbeats, uint32_t creator_pid, uint32_t *bad);

/* Handles: a private view of a mapped segment. */
int petra_open(void *base, size_t size, int readonly, uint32_t writer,
               petra_seg_t **out);
void petra_close(petra_seg_t *seg);
void petra_set_writer(petra_seg_t *seg, uint32_t writer);
void petra_set_retry_limit(petra_seg_t *seg, uint32_t retries);
void petra_set_wait(petra_seg_t *seg, int64_t wait_ns);
int petra_lock_stats(const petra_seg_t *seg, petra_lock_stats_t *out);
int petra_info(const petra_seg_t *seg, petra_info_t *out);
int petra_dir_get(const petra_seg_t *seg, uint32_t index, petra_sigdef_t *out);
uint32_t petra_n_signals(const petra_seg_t *seg);
int64_t petra_dir_lookup(const petra_seg_t *seg, const char *name, size_t len);
int64_t petra_dir_check(const petra_seg_t *seg, uint32_t start, int *kind);
int petra_dir_types(const petra_seg_t *seg, uint8_t *out, size_t n);

/* Single-signal access. */
int petra_read(petra_seg_t *seg, uint32_t index, petra_sample_t *out);
int petra_write(petra_seg_t *seg, uint32_t index, uint8_t type, uint64_t bits,
                uint8_t quality, uint8_t substatus, int64_t source_ts_ns);
int petra_write_f64(petra_seg_t *seg, uint32_t index, double value, uint8_t quality,
                    int64_t source_ts_ns);
int petra_write_i64(petra_seg_t *seg, uint32_t index, int64_t value, uint8_t quality,
                    int64_t source_ts_ns);
double petra_get_f64(petra_seg_t *seg, uint32_t index, int *rc);
int64_t petra_get_i64(petra_seg_t *seg, uint32_t index, int *rc);

/* Batch access: indices, or a contiguous range when idx is NULL (start = first).
 * Every array holds n entries. Reads count busy slots in *busy_out and, when busy_idx
 * is given (n entries), list their slot indices there. Writes return how many slots
 * were written and, when failed is given (n entries), list the slot indices that
 * were not (their holder is dead or stopped, or outlasted the wait). */
int64_t petra_read_batch(petra_seg_t *seg, const uint32_t *idx, uint32_t first, size_t n,
                         uint64_t *values, uint8_t *quality, int64_t *source_ts,
                         uint32_t *busy_out, uint32_t *busy_idx);
int64_t petra_read_batch_f64(petra_seg_t *seg, const uint32_t *idx, uint32_t first,
                             size_t n, double *values, uint8_t *quality,
                             uint32_t *busy_out, uint32_t *busy_idx);
int64_t petra_write_batch(petra_seg_t *seg, const uint32_t *idx, uint32_t first, size_t n,
                          const uint64_t *values, const uint8_t *quality,
                          const int64_t *source_ts, uint32_t *failed);
int64_t petra_write_batch_f64(petra_seg_t *seg, const uint32_t *idx, uint32_t first,
                              size_t n, const double *values, const uint8_t *quality,
                              uint32_t *failed);
int64_t petra_bench_read_range(petra_seg_t *seg, uint32_t first, size_t n,
                               uint32_t iterations, uint64_t *values, uint8_t *quality);
int64_t petra_bench_write_range(petra_seg_t *seg, uint32_t first, size_t n,
                                uint32_t iterations, const uint64_t *values,
                                const uint8_t *quality);

/* Dead writers: the lock words name their holders. */
int64_t petra_repair_dead(petra_seg_t *seg, uint32_t dead_pid, petra_repair_t *out);
int64_t petra_repair_writer(petra_seg_t *seg, uint32_t dead_writer);
uint32_t petra_slot_holder(const petra_seg_t *seg, uint32_t index);
int petra_holder_state(uint32_t pid);
int petra_debug_begin_write(petra_seg_t *seg, uint32_t index);
int petra_debug_stage(petra_seg_t *seg, int kind, uint32_t index, int stage);
int64_t petra_debug_hammer(petra_seg_t *seg, uint32_t wid, uint64_t counter0,
                           uint64_t iterations, int mode);

/* Change journal. */
void petra_cursor_init(const petra_seg_t *seg, petra_cursor_t *cur, int from_start,
                       int64_t stall_timeout_ns);
int64_t petra_journal_read(petra_seg_t *seg, petra_cursor_t *cur, size_t max,
                           uint32_t *slot, uint64_t *value, uint8_t *type,
                           uint8_t *quality, int64_t *source_ts, int64_t *write_ts,
                           uint32_t *writer);
/* petra_journal_read, with each entry's substatus (the one written with its value;
 * NULL: not wanted). */
int64_t petra_journal_read_sub(petra_seg_t *seg, petra_cursor_t *cur, size_t max,
                               uint32_t *slot, uint64_t *value, uint8_t *type,
                               uint8_t *quality, uint8_t *substatus, int64_t *source_ts,
                               int64_t *write_ts, uint32_t *writer);
int64_t petra_journal_append(petra_seg_t *seg, uint32_t slot, uint8_t type,
                             uint64_t value, uint8_t quality, uint8_t substatus,
                             int64_t source_ts_ns, int64_t write_ts_ns);
uint64_t petra_journal_head(const petra_seg_t *seg);

/* Scan statistics (single writer) and heartbeats. */
int petra_stats_reset(petra_seg_t *seg, int64_t period_ns);
int petra_stats_record(petra_seg_t *seg, int64_t wake_ns, int64_t exec_ns,
                       uint64_t overruns, uint64_t skipped);
int petra_stats_read(const petra_seg_t *seg, petra_stats_out_t *out);
uint32_t petra_hist_buckets(void);
uint32_t petra_hist_bucket(int64_t ns);
int64_t petra_hist_upper_ns(uint32_t bucket);
int petra_hb_register(petra_seg_t *seg, uint32_t pid, const char *role, uint32_t cpu);
int petra_hb_release(petra_seg_t *seg, uint32_t record);
int petra_hb_beat(petra_seg_t *seg, uint32_t record, uint32_t state);
int petra_hb_set_counter(petra_seg_t *seg, uint32_t record, uint32_t counter,
                         uint64_t value);
int petra_hb_add_restart(petra_seg_t *seg, uint32_t record);
int petra_hb_read(const petra_seg_t *seg, uint32_t record, petra_hb_out_t *out);
int64_t petra_now_mono_ns(void);
int64_t petra_now_real_ns(void);
/* CFFI-END */

#define PETRA_ABI_VERSION 4
#define PETRA_MAX_SIGNALS 16777215u /* 2^24 - 1: the name index keeps 24-bit indices */
#define PETRA_DEFAULT_RETRIES 256
#define PETRA_DEFAULT_WAIT_NS 1000000000LL /* how long a writer waits for a live holder */

#endif
