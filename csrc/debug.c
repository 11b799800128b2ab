/*
 * debug.c - a fault-injection load for the stress tests (tests/stress).
 *
 * petra_debug_hammer writes self-checking values in a tight C loop, so a SIGKILL sent
 * at a random moment lands inside a write section most of the time (a Python loop
 * spends most of its time in the interpreter). The values follow tests/stress/
 * shm_checks.py: value = writer id << 40 | counter (as a float for float slots), the
 * source timestamp is a hash of the value's bits and the slot, quality 1 + (ts & 1):
 * a reader that copies fields of two writes sees a checksum that does not match.
 */
#include "core.h"

#include <string.h>

#define M1 0x9E3779B97F4A7C15ULL
#define M2 0xC2B2AE3D27D4EB4FULL
#define TS_MASK ((1ULL << 62) - 1)

static inline int64_t checksum(uint64_t bits, uint32_t slot) {
    uint64_t h = bits * M1;
    h ^= (uint64_t)slot * M2;
    h ^= h >> 29;
    return (int64_t)((h & TS_MASK) | 1);
}

static inline uint64_t value_bits(uint8_t type, uint64_t raw) {
    if (type != PETRA_T_FLOAT) return raw;
    double d = (double)raw;
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    return bits;
}

static inline uint32_t next_rand(uint64_t *state) {
    /* xorshift64*: the slot pattern only has to look random to the other writers. */
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return (uint32_t)((*state * 0x2545F4914F6CDD1DULL) >> 32);
}

/* Test hook (tests/stress, tests/c). mode 0: single writes; 1: batch writes of up to
 * 16 slots (random order, maybe repeated); 2: journal appends only. Returns the writes
 * that succeeded. */
int64_t petra_debug_hammer(petra_seg_t *seg, uint32_t wid, uint64_t counter0,
                           uint64_t iterations, int mode) {
    if (seg->readonly || seg->n_signals == 0 || mode < 0 || mode > 2) return PETRA_EINVAL;
    uint64_t rng = ((uint64_t)wid << 32) ^ counter0 ^ 0x9E3779B97F4A7C15ULL;
    uint64_t counter = counter0;
    int64_t done = 0;
    for (uint64_t it = 0; it < iterations; it++) {
        if (mode == 1) {
            uint32_t idx[16];
            uint64_t bits[16];
            uint8_t q[16];
            int64_t ts[16];
            uint32_t n = 1 + next_rand(&rng) % 16;
            for (uint32_t j = 0; j < n; j++) {
                idx[j] = next_rand(&rng) % seg->n_signals;
                bits[j] = value_bits(seg->slots[idx[j]].type, ((uint64_t)wid << 40) | ++counter);
                ts[j] = checksum(bits[j], idx[j]);
                q[j] = (uint8_t)(1 + (ts[j] & 1));
            }
            int64_t w = petra_write_batch(seg, idx, 0, n, bits, q, ts, NULL);
            if (w > 0) done += w;
            continue;
        }
        uint32_t k = next_rand(&rng) % seg->n_signals;
        uint8_t type = seg->slots[k].type;
        uint64_t bits = value_bits(type, ((uint64_t)wid << 40) | ++counter);
        int64_t ts = checksum(bits, k);
        uint8_t q = (uint8_t)(1 + (ts & 1));
        int rc = mode == 0 ? petra_write(seg, k, type, bits, q, PETRA_SUB_NONE, ts)
                           : (int)petra_journal_append(seg, k, type, bits, q, 0, ts, 0);
        if (rc == PETRA_OK) done++;
    }
    return done;
}
