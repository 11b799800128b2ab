/*
 * segment_sanity.c - the C core under sanitizers (tests/c/test_sanitizers.py).
 *
 * Builds a segment in ordinary memory and runs, in threads for `seconds`: three
 * writers (single writes, batch writes, bare journal appends: petra_debug_hammer),
 * two readers (batch and single reads, every sample's checksum checked), a journal
 * consumer (every entry's checksum, received + lost == positions), and the main thread
 * recording and reading stats and claiming heartbeat records. Then it kills nothing
 * but checks the edges: batch calls at the ends of the table and beyond it (ranges
 * that would wrap), every repair path on stages left by the debug hooks.
 * Exit status 0 when every check holds. Compiled with -fsanitize=address,undefined
 * or -fsanitize=thread, so an out-of-bounds access, undefined behaviour or a data race
 * on a non-atomic field fails the run even when the checks pass.
 */
#define _POSIX_C_SOURCE 200809L
#include "petra.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define N 48
#define CAP 1024
#define M1 0x9E3779B97F4A7C15ULL
#define M2 0xC2B2AE3D27D4EB4FULL
#define TS_MASK ((1ULL << 62) - 1)

static void *base;
static size_t size;
static atomic_int stop;
static atomic_long failures;

#define CHECK(cond, ...)                                                                 \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                          \
            fprintf(stderr, __VA_ARGS__);                                                \
            fputc('\n', stderr);                                                         \
            atomic_fetch_add(&failures, 1);                                              \
        }                                                                                \
    } while (0)

static int64_t checksum(uint64_t bits, uint32_t slot) {
    uint64_t h = bits * M1;
    h ^= (uint64_t)slot * M2;
    h ^= h >> 29;
    return (int64_t)((h & TS_MASK) | 1);
}

static petra_seg_t *open_handle(void) {
    petra_seg_t *seg;
    int rc = petra_open(base, size, 0, (uint32_t)getpid(), &seg);
    if (rc) {
        fprintf(stderr, "petra_open: %d\n", rc);
        exit(2);
    }
    petra_set_wait(seg, 2000000000LL);
    return seg;
}

static void *writer(void *arg) {
    int mode = (int)(intptr_t)arg;
    petra_seg_t *seg = open_handle();
    uint64_t counter = 0;
    while (!atomic_load(&stop)) {
        petra_debug_hammer(seg, (uint32_t)(10 + mode), counter, 500, mode);
        counter += 500 * 16;
    }
    petra_lock_stats_t st;
    petra_lock_stats(seg, &st);
    CHECK(st.busy_dead + st.busy_stopped + st.busy_live + st.busy_nowait == 0,
          "writer %d gave up on a live writer", mode);
    petra_close(seg);
    return NULL;
}

static void check_sample(uint32_t k, uint64_t bits, uint8_t q, int64_t ts) {
    /* Never written yet: the initial value, BAD, stamped with the create time (the
     * writers only write quality 1 or 2). A reader scheduled before every writer sees
     * only these, so the bare quality decides, not the time. */
    if (q == PETRA_Q_BAD) return;
    CHECK(ts == checksum(bits, k) && q == (uint8_t)(1 + (ts & 1)),
          "torn sample in slot %u", k);
}

static void *reader(void *arg) {
    (void)arg;
    petra_seg_t *seg = open_handle();
    uint64_t values[N];
    uint8_t quality[N];
    int64_t ts[N];
    uint32_t busy, busy_idx[N];
    while (!atomic_load(&stop)) {
        memset(ts, 0, sizeof ts);
        memset(quality, 0, sizeof quality);
        int64_t rc = petra_read_batch(seg, NULL, 0, N, values, quality, ts, &busy, busy_idx);
        CHECK(rc == N, "read_batch %lld", (long long)rc);
        for (uint32_t k = 0; k < N; k++) {
            int was_busy = 0;
            for (uint32_t b = 0; b < busy; b++) was_busy |= busy_idx[b] == k;
            if (!was_busy) check_sample(k, values[k], quality[k], ts[k]);
        }
        petra_sample_t s;
        uint32_t k = (uint32_t)(rand() % N);
        if (petra_read(seg, k, &s) == PETRA_OK) check_sample(k, s.u, s.quality, s.source_ts_ns);
    }
    petra_close(seg);
    return NULL;
}

static void *consumer(void *arg) {
    (void)arg;
    petra_seg_t *seg = open_handle();
    petra_cursor_t cur;
    petra_cursor_init(seg, &cur, 0, 50000000LL);
    uint64_t first = cur.next;
    uint32_t slot[256], writer_id[256];
    uint64_t value[256];
    uint8_t type[256], quality[256];
    int64_t sts[256], wts[256];
    for (;;) {
        int done = atomic_load(&stop) == 2;
        int64_t n = petra_journal_read(seg, &cur, 256, slot, value, type, quality, sts, wts,
                                       writer_id);
        CHECK(n >= 0, "journal_read %lld", (long long)n);
        for (int64_t i = 0; i < n; i++)
            CHECK(sts[i] == checksum(value[i], slot[i]) &&
                      quality[i] == (uint8_t)(1 + (sts[i] & 1)),
                  "bad journal entry at slot %u", slot[i]);
        if (done && cur.next >= petra_journal_head(seg)) break;
        if (n == 0 && done) {
            struct timespec t = {0, 1000000};
            nanosleep(&t, NULL);
        }
    }
    CHECK(cur.received + cur.lost == cur.next - first, "journal accounting %llu + %llu != %llu",
          (unsigned long long)cur.received, (unsigned long long)cur.lost,
          (unsigned long long)(cur.next - first));
    petra_close(seg);
    return NULL;
}

static void edges(petra_seg_t *seg) {
    uint64_t v[N + 1] = {0};
    uint8_t q[N + 1] = {0};
    uint32_t busy;
    /* Ranges at the end of the table, past it, and ones whose end would wrap. */
    CHECK(petra_read_batch(seg, NULL, N, 0, v, q, NULL, &busy, NULL) == 0, "empty range");
    CHECK(petra_read_batch(seg, NULL, N - 1, 2, v, q, NULL, &busy, NULL) == PETRA_ERANGE,
          "range past the end");
    CHECK(petra_read_batch(seg, NULL, 1, SIZE_MAX, v, q, NULL, &busy, NULL) == PETRA_ERANGE,
          "wrapping range");
    CHECK(petra_read_batch(seg, NULL, UINT32_MAX, 2, v, q, NULL, &busy, NULL) == PETRA_ERANGE,
          "first beyond the table");
    CHECK(petra_write_batch(seg, NULL, 2, SIZE_MAX - 1, v, q, NULL, NULL) == PETRA_ERANGE,
          "wrapping write range");
    uint32_t idx[2] = {0, N};
    CHECK(petra_read_batch(seg, idx, 0, 2, v, q, NULL, &busy, NULL) == PETRA_ERANGE,
          "index past the end");
    CHECK(petra_read_batch(seg, NULL, 0, 1, NULL, q, NULL, &busy, NULL) == PETRA_ERANGE,
          "NULL values");
    /* Every repair path, on stages this thread leaves behind. */
    uint32_t me = (uint32_t)getpid();
    for (int stage = PETRA_STAGE_LOCKED; stage <= PETRA_STAGE_EVEN; stage++) {
        CHECK(petra_debug_stage(seg, PETRA_DBG_SLOT, 3, stage) == 0, "slot stage %d", stage);
        CHECK(petra_debug_stage(seg, PETRA_DBG_ENTRY, 0, stage) == 0, "entry stage %d", stage);
        CHECK(petra_debug_stage(seg, PETRA_DBG_STATS, 0, stage) == 0, "stats stage %d", stage);
        CHECK(petra_debug_stage(seg, PETRA_DBG_HB, 0, stage) >= 0, "hb stage %d", stage);
        petra_repair_t r;
        CHECK(petra_repair_dead(seg, me, &r) >= 4, "repair stage %d", stage);
        CHECK(r.slots == 1 && r.entries == 1 && r.stats == 1 && r.heartbeats == 1,
              "repair report at stage %d", stage);
        CHECK(petra_slot_holder(seg, 3) == 0, "slot freed at stage %d", stage);
    }
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 1.0;
    petra_sigdef_t defs[N];
    memset(defs, 0, sizeof defs);
    for (uint32_t k = 0; k < N; k++) {
        snprintf(defs[k].name, sizeof defs[k].name, "s%u", k);
        defs[k].type = k % 2 ? PETRA_T_INT : PETRA_T_FLOAT;
        defs[k].initial_quality = PETRA_Q_BAD;
        defs[k].min = defs[k].max = __builtin_nan("");
    }
    size = petra_segment_size(N, CAP, 4);
    base = aligned_alloc(4096, size);
    memset(base, 0, size);
    if (petra_init(base, size, "sanity", defs, N, CAP, 4, (uint32_t)getpid())) return 2;
    petra_seg_t *seg = open_handle();
    {
        /* Before any writer runs: every slot reads back as its initial value. */
        uint64_t v[N];
        uint8_t q[N];
        int64_t ts[N];
        uint32_t busy;
        CHECK(petra_read_batch(seg, NULL, 0, N, v, q, ts, &busy, NULL) == N && busy == 0,
              "initial read");
        for (uint32_t k = 0; k < N; k++) {
            CHECK(q[k] == PETRA_Q_BAD && ts[k] > 0, "initial sample in slot %u", k);
            check_sample(k, v[k], q[k], ts[k]);
        }
    }

    pthread_t w[3], r[2], c;
    for (intptr_t m = 0; m < 3; m++) pthread_create(&w[m], NULL, writer, (void *)m);
    for (int i = 0; i < 2; i++) pthread_create(&r[i], NULL, reader, NULL);
    pthread_create(&c, NULL, consumer, NULL);
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    petra_stats_reset(seg, 1000000);
    petra_stats_out_t st;
    uint64_t recorded = 0;
    do {
        if (petra_stats_record(seg, 5000 + (int64_t)recorded, 1000, 0, 0) == 0) recorded++;
        CHECK(petra_stats_read(seg, &st) == 0 && st.cycles == recorded, "stats snapshot");
        int rec = petra_hb_register(seg, (uint32_t)getpid(), "sanity", 0);
        CHECK(rec >= 0, "heartbeat register %d", rec);
        if (rec >= 0) petra_hb_release(seg, (uint32_t)rec);
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while ((double)(now.tv_sec - t0.tv_sec) + (double)(now.tv_nsec - t0.tv_nsec) * 1e-9 <
             seconds);
    atomic_store(&stop, 1);
    for (int m = 0; m < 3; m++) pthread_join(w[m], NULL);
    for (int i = 0; i < 2; i++) pthread_join(r[i], NULL);
    atomic_store(&stop, 2);
    pthread_join(c, NULL);
    edges(seg);
    petra_close(seg);
    free(base);
    long f = atomic_load(&failures);
    printf("%s: %ld failed checks, %llu stats updates\n", f ? "FAIL" : "ok", f,
           (unsigned long long)recorded);
    return f ? 1 : 0;
}
