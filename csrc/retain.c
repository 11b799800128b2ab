/*
 * retain.c - the retain area (protocol and layout in retain.h).
 */
#define _GNU_SOURCE
#include "retain.h"

#include "core.h"

#include <stdatomic.h>
#include <string.h>
#include <time.h>

#define PETRA_RETAIN_MAGIC 0x314e544552525450ULL /* "PTRRETN1" little endian */
#define PETRA_RETAIN_ABI 1u
#define PETRA_RETAIN_HDR 4096u
#define PETRA_RETAIN_RETRIES 64

typedef struct {
    _Atomic uint64_t magic;      /* stored last by petra_retain_init (release) */
    uint32_t abi_version;
    uint32_t header_size;
    char instance[64];
    _Atomic uint64_t commit;     /* (n << 1) | b; 0 = nothing committed */
    uint64_t buf_off[2];         /* written only while that buffer is not named by commit */
    uint64_t buf_cap[2];
    int64_t created_ns;
} retain_hdr_t;

typedef struct {
    _Atomic uint64_t seq;        /* odd while being written */
    uint64_t gen;
    uint64_t meta_len;
    uint64_t n_state;
    uint64_t cycles;
    int64_t wall_ns;
    uint64_t pad[2];
} retain_buf_t;

_Static_assert(sizeof(retain_hdr_t) <= PETRA_RETAIN_HDR, "retain header fits its page");
_Static_assert(sizeof(retain_buf_t) == 64, "retain buffer header is one cache line");
_Static_assert(offsetof(retain_hdr_t, commit) == 80, "retain header layout");
_Static_assert(offsetof(retain_hdr_t, buf_off) == 88, "retain header layout");
_Static_assert(offsetof(retain_buf_t, n_state) == 24, "retain buffer layout");

static size_t align8(size_t v) { return (v + 7u) & ~(size_t)7u; }
static size_t align64(size_t v) { return (v + 63u) & ~(size_t)63u; }

size_t petra_retain_header_size(void) { return PETRA_RETAIN_HDR; }

size_t petra_retain_buffer_size(size_t meta_len, size_t n_state) {
    return align64(sizeof(retain_buf_t) + align8(meta_len) + n_state * sizeof(double));
}

int petra_retain_init(void *base, size_t size, const char *instance) {
    if (!base || size < PETRA_RETAIN_HDR || !instance) return PETRA_EINVAL;
    retain_hdr_t *h = (retain_hdr_t *)base;
    h->abi_version = PETRA_RETAIN_ABI;
    h->header_size = PETRA_RETAIN_HDR;
    strncpy(h->instance, instance, sizeof h->instance - 1);
    h->instance[sizeof h->instance - 1] = '\0';
    atomic_store_explicit(&h->commit, 0, memory_order_relaxed); /* published by magic */
    h->buf_off[0] = h->buf_off[1] = 0;
    h->buf_cap[0] = h->buf_cap[1] = 0;
    h->created_ns = petra__clock(CLOCK_REALTIME);
    /* Release: pairs with petra_retain_check's acquire load of magic; a reader that
     * sees the magic sees every field above. */
    atomic_store_explicit(&h->magic, PETRA_RETAIN_MAGIC, memory_order_release);
    return PETRA_OK;
}

int petra_retain_check(const void *base, size_t size, const char *instance) {
    if (!base || size < PETRA_RETAIN_HDR) return PETRA_ESIZE;
    const retain_hdr_t *h = (const retain_hdr_t *)base;
    /* Acquire: pairs with the release store of magic in petra_retain_init. */
    if (atomic_load_explicit(&h->magic, memory_order_acquire) != PETRA_RETAIN_MAGIC)
        return PETRA_EMAGIC;
    if (h->abi_version != PETRA_RETAIN_ABI || h->header_size != PETRA_RETAIN_HDR)
        return PETRA_EABI;
    if (instance && strncmp(h->instance, instance, sizeof h->instance) != 0)
        return PETRA_ELAYOUT;
    return PETRA_OK;
}

/* The buffer at (off, cap) lies within the mapping and after the header. */
static int buf_ok(uint64_t off, uint64_t cap, size_t size) {
    return off >= PETRA_RETAIN_HDR && cap >= sizeof(retain_buf_t) && off % 64 == 0 &&
           off <= size && cap <= size - off;
}

int64_t petra_retain_place(void *base, size_t size, size_t meta_len, size_t n_state) {
    int rc = petra_retain_check(base, size, NULL);
    if (rc) return rc;
    retain_hdr_t *h = (retain_hdr_t *)base;
    /* Relaxed: only this writer stores commit, so it reads its own last store. */
    uint64_t c = atomic_load_explicit(&h->commit, memory_order_relaxed);
    unsigned b = c ? (unsigned)((c & 1u) ^ 1u) : 0u;
    size_t need = petra_retain_buffer_size(meta_len, n_state);
    if (buf_ok(h->buf_off[b], h->buf_cap[b], size) && h->buf_cap[b] >= need) return 0;
    /* Move it past everything in use (the named buffer keeps its place). */
    size_t end = PETRA_RETAIN_HDR;
    for (unsigned i = 0; i < 2; i++)
        if (h->buf_cap[i] && h->buf_off[i] + h->buf_cap[i] > end)
            end = (size_t)(h->buf_off[i] + h->buf_cap[i]);
    end = align64(end);
    if (end + need > size) return (int64_t)(end + need);
    h->buf_off[b] = end; /* plain: this buffer is not named by commit (retain.h) */
    h->buf_cap[b] = need;
    retain_buf_t *buf = (retain_buf_t *)((char *)base + end);
    atomic_store_explicit(&buf->seq, 0, memory_order_relaxed); /* published by commit */
    buf->gen = 0;
    return 0;
}

static int commit_into(void *base, size_t size, const void *meta, size_t meta_len,
                       uint64_t gen, const double *state, size_t n_state, uint64_t cycles,
                       size_t stop_after) {
    retain_hdr_t *h = (retain_hdr_t *)base;
    /* Relaxed: the scan is the one writer of commit; it reads its own store. */
    uint64_t c = atomic_load_explicit(&h->commit, memory_order_relaxed);
    unsigned b = c ? (unsigned)((c & 1u) ^ 1u) : 0u;
    size_t need = petra_retain_buffer_size(meta_len, n_state);
    if (!buf_ok(h->buf_off[b], h->buf_cap[b], size) || h->buf_cap[b] < need)
        return PETRA_ESIZE;
    retain_buf_t *buf = (retain_buf_t *)((char *)base + h->buf_off[b]);
    char *data = (char *)buf + sizeof(retain_buf_t);
    /* Relaxed: only this writer stores seq. */
    uint64_t s = atomic_load_explicit(&buf->seq, memory_order_relaxed);
    s &= ~(uint64_t)1; /* a writer killed inside left it odd: go on from there */
    atomic_store_explicit(&buf->seq, s + 1, memory_order_relaxed);
    /* Release fence: pairs with the reader's acquire fence before its re-load of seq;
     * a reader whose copy saw any store below then sees seq odd (or later). */
    atomic_thread_fence(memory_order_release);
    if (buf->gen != gen || buf->meta_len != meta_len) {
        if (meta_len) memcpy(data, meta, meta_len);
        buf->meta_len = meta_len;
        buf->gen = gen;
    }
    buf->n_state = n_state;
    buf->cycles = cycles;
    buf->wall_ns = petra__clock(CLOCK_REALTIME);
    size_t bytes = n_state * sizeof(double);
    if (stop_after < bytes) {
        if (stop_after) memcpy(data + align8(meta_len), state, stop_after);
        return PETRA_OK; /* the debug "killed here": seq stays odd, commit unchanged */
    }
    if (bytes) memcpy(data + align8(meta_len), state, bytes);
    /* Release: pairs with the reader's acquire load of seq. */
    atomic_store_explicit(&buf->seq, s + 2, memory_order_release);
    /* Release: pairs with the reader's acquire load of commit; whoever sees this
     * commit sees buffer b complete (and its offset and capacity). */
    uint64_t n = (c >> 1) + 1;
    atomic_store_explicit(&h->commit, (n << 1) | b, memory_order_release);
    return PETRA_OK;
}

int petra_retain_commit(void *base, size_t size, const void *meta, size_t meta_len,
                        uint64_t gen, const double *state, size_t n_state,
                        uint64_t cycles) {
    if (!base || size < PETRA_RETAIN_HDR || (meta_len && !meta) || (n_state && !state))
        return PETRA_EINVAL;
    return commit_into(base, size, meta, meta_len, gen, state, n_state, cycles, SIZE_MAX);
}

int petra_retain_debug_torn(void *base, size_t size, const double *state, size_t n_state,
                            size_t nbytes) {
    if (!base || size < PETRA_RETAIN_HDR || (n_state && !state)) return PETRA_EINVAL;
    if (nbytes >= n_state * sizeof(double)) return PETRA_EINVAL;
    return commit_into(base, size, NULL, 0, 0, state, n_state, 0, nbytes);
}

int petra_retain_read(const void *base, size_t size, void *meta, size_t meta_cap,
                      double *state, size_t n_cap, petra_retain_info_t *info) {
    int rc = petra_retain_check(base, size, NULL);
    if (rc) return rc;
    if (!info) return PETRA_EINVAL;
    const retain_hdr_t *h = (const retain_hdr_t *)base;
    for (int tries = 0; tries < PETRA_RETAIN_RETRIES; tries++) {
        /* Acquire: pairs with the writer's release store of commit; the buffer it
         * names, with its offset and capacity, is complete for us. */
        uint64_t c = atomic_load_explicit(&h->commit, memory_order_acquire);
        if (c == 0) return 1;
        unsigned b = (unsigned)(c & 1u);
        uint64_t off = h->buf_off[b], cap = h->buf_cap[b];
        if (!buf_ok(off, cap, size)) return PETRA_ESIZE;
        const retain_buf_t *buf = (const retain_buf_t *)((const char *)base + off);
        /* Acquire: pairs with the writer's release store of the even seq. */
        uint64_t s1 = atomic_load_explicit(&buf->seq, memory_order_acquire);
        if (s1 & 1u) {
            petra__cpu_relax();
            continue;
        }
        petra_retain_info_t got = {c, buf->gen, buf->meta_len, buf->n_state, buf->cycles,
                                   buf->wall_ns};
        size_t bytes = (size_t)got.n_state * sizeof(double);
        int fits = got.meta_len <= cap && got.n_state <= cap / sizeof(double) &&
                   petra_retain_buffer_size((size_t)got.meta_len, (size_t)got.n_state) <= cap;
        int room = fits && got.meta_len <= meta_cap && got.n_state <= n_cap;
        const char *data = (const char *)buf + sizeof(retain_buf_t);
        if (room) {
            if (got.meta_len) memcpy(meta, data, (size_t)got.meta_len);
            if (bytes) memcpy(state, data + align8((size_t)got.meta_len), bytes);
        }
        /* Acquire fence: pairs with the writer's release fence after its odd store;
         * if our copy saw any byte of a newer commit, the re-load sees seq moved. */
        atomic_thread_fence(memory_order_acquire);
        uint64_t s2 = atomic_load_explicit(&buf->seq, memory_order_relaxed);
        uint64_t c2 = atomic_load_explicit(&h->commit, memory_order_relaxed);
        if (s1 != s2 || c != c2) continue;
        if (!fits) return PETRA_ESIZE;
        *info = got;
        return room ? PETRA_OK : PETRA_ERANGE;
    }
    return PETRA_EBUSY;
}
