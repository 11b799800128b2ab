/*
 * segment.c - creating, validating and describing a segment.
 * Mapping and naming (shm_open, mode 0660) are done in Python with posix-ipc;
 * this file lays out and checks the bytes of a mapping it is given.
 */
#include "core.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static size_t align_up(size_t v, size_t a) { return (v + a - 1) & ~(a - 1); }

typedef struct {
    size_t dir_off, dir_size, idx_off, idx_size, idx_buckets, slots_off, slots_size, j_off, j_size, stats_off,
        stats_size, hb_off, hb_size, total;
} plan_t;

static plan_t plan(uint32_t n, uint64_t cap, uint32_t n_hb) {
    plan_t p;
    p.dir_off = sizeof(petra_header_t);
    p.dir_size = align_up((size_t)n * sizeof(petra_dir_entry_t), PETRA_CACHE_LINE);
    p.idx_off = p.dir_off + p.dir_size;
    p.idx_buckets = petra__index_buckets(n);
    p.idx_size = align_up(p.idx_buckets * sizeof(uint32_t), PETRA_CACHE_LINE);
    p.slots_off = p.idx_off + p.idx_size;
    p.slots_size = (size_t)n * sizeof(petra_slot_t);
    p.j_off = p.slots_off + p.slots_size;
    p.j_size = sizeof(petra_journal_hdr_t) + (size_t)cap * sizeof(petra_jentry_t);
    p.j_size = align_up(p.j_size, PETRA_CACHE_LINE);
    p.stats_off = p.j_off + p.j_size;
    p.stats_size = align_up(sizeof(petra_stats_t), PETRA_CACHE_LINE);
    p.hb_off = p.stats_off + p.stats_size;
    p.hb_size = (size_t)n_hb * sizeof(petra_hb_t);
    p.total = align_up(p.hb_off + p.hb_size, 4096);
    return p;
}

size_t petra_segment_size(uint32_t n_signals, uint64_t journal_capacity,
                          uint32_t n_heartbeats) {
    return plan(n_signals, journal_capacity, n_heartbeats).total;
}

uint64_t petra_layout_hash(void) {
    const uint64_t words[] = PETRA_LAYOUT_WORDS;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        for (int b = 0; b < 8; b++) {
            h ^= (words[i] >> (8 * b)) & 0xff;
            h *= 1099511628211ULL;
        }
    }
    return h;
}

uint32_t petra_abi_version(void) { return PETRA_ABI_VERSION; }

static uint64_t fnv_bytes(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 1099511628211ULL;
    }
    return h;
}

/* The next NUL-terminated string of a blob, or NULL when the blob ends first. */
static const char *next_str(const char **cur, const char *end, size_t *len) {
    const char *s = *cur;
    if (s >= end) return NULL;
    const char *z = memchr(s, 0, (size_t)(end - s));
    if (!z) return NULL;
    *len = (size_t)(z - s);
    *cur = z + 1;
    return s;
}

int petra_init_table(void *base, size_t size, const char *instance,
                     const petra_sigtable_t *t, uint64_t journal_capacity,
                     uint32_t n_heartbeats, uint32_t creator_pid, uint32_t *bad) {
    if (!base || !instance || !t || !bad) return PETRA_EINVAL;
    uint32_t n_signals = t->n;
    *bad = UINT32_MAX;
    if (n_signals && (!t->names || !t->units || !t->owners || !t->types || !t->flags ||
                      !t->initial || !t->initial_quality || !t->min || !t->max))
        return PETRA_EINVAL;
    if (journal_capacity < 2 || (journal_capacity & (journal_capacity - 1)))
        return PETRA_EINVAL;
    if (strlen(instance) >= sizeof(((petra_header_t *)0)->instance)) return PETRA_EINVAL;
    if (n_signals > PETRA_MAX_SIGNALS) return PETRA_EINVAL; /* the name index's limit */
    plan_t p = plan(n_signals, journal_capacity, n_heartbeats);
    if (size < p.total) return PETRA_ESIZE;

    uint8_t *b = base;
    petra_header_t *h = base;
#ifdef MADV_POPULATE_WRITE
    /* Every page before the journal (header, directory, index, slots) is written
     * below. Faulting them in with one call saves a kernel entry per page (~50k at 1M
     * signals; about 0.04 s of the 0.2 s the C part took). The journal is left to
     * fault in as it fills: at 1M signals it is 192 MB that may stay untouched for
     * minutes. A kernel without MADV_POPULATE_WRITE (< 5.14) refuses the call, and
     * the stores fault as before. */
    (void)madvise(base, align_up(p.j_off, 4096) < size ? align_up(p.j_off, 4096) : size,
                  MADV_POPULATE_WRITE);
#endif
    /* The caller just created this object with O_EXCL and ftruncate, so it reads as
     * zeros already (no memset: that would fault every page twice); no one else can
     * attach while magic is 0 (attach refuses), so plain stores are fine until the
     * release store of magic below. */
    h->abi_version = PETRA_ABI_VERSION;
    h->header_size = sizeof(petra_header_t);
    h->layout_hash = petra_layout_hash();
    strncpy(h->instance, instance, sizeof(h->instance) - 1);
    h->created_ns = petra__clock(CLOCK_REALTIME);
    h->total_size = p.total;
    h->n_signals = n_signals;
    h->n_heartbeats = n_heartbeats;
    h->dir_offset = p.dir_off;
    h->dir_size = p.dir_size;
    h->index_offset = p.idx_off;
    h->index_size = p.idx_size;
    h->index_buckets = p.idx_buckets;
    h->slots_offset = p.slots_off;
    h->slots_size = p.slots_size;
    h->journal_offset = p.j_off;
    h->journal_size = p.j_size;
    h->journal_capacity = journal_capacity;
    h->stats_offset = p.stats_off;
    h->stats_size = p.stats_size;
    h->hb_offset = p.hb_off;
    h->hb_size = p.hb_size;
    h->creator_pid = creator_pid;

    petra_dir_entry_t *dir = (petra_dir_entry_t *)(b + p.dir_off);
    uint32_t *index = (uint32_t *)(b + p.idx_off);
    petra_slot_t *slots = (petra_slot_t *)(b + p.slots_off);
    uint64_t dh = 1469598103934665603ULL;
    int64_t now = h->created_ns;
    const char *nc = t->names, *uc = t->units, *oc = t->owners;
    const char *ne = t->names + t->names_len, *ue = t->units + t->units_len,
               *oe = t->owners + t->owners_len;
    /* Each name's index hash is taken here, while its bytes are in cache; without
     * the memory the index build hashes the directory itself. */
    uint64_t *hashes = malloc((size_t)n_signals * sizeof(uint64_t) + 1);
    int rc = PETRA_OK;
    for (uint32_t i = 0; i < n_signals; i++) {
        size_t nl = 0, ul = 0, ol = 0;
        const char *name = next_str(&nc, ne, &nl), *unit = next_str(&uc, ue, &ul),
                   *owner = next_str(&oc, oe, &ol);
        *bad = i;
        if (!name || !unit || !owner || nl == 0 || nl >= sizeof(dir[i].name) ||
            ul >= sizeof(dir[i].unit) || ol >= sizeof(dir[i].owner)) {
            rc = PETRA_EINVAL;
            break;
        }
        if (t->types[i] < PETRA_T_BOOL || t->types[i] > PETRA_T_FLOAT) {
            rc = PETRA_ETYPE;
            break;
        }
        /* A limit is a number or NaN (none); an inverted range is a caller bug. */
        double lo = t->min[i], hi = t->max[i];
        if (!isnan(lo) && !isnan(hi) && lo > hi) {
            rc = PETRA_EINVAL;
            break;
        }
        if (hashes) hashes[i] = petra__name_hash(name, nl);
        petra_dir_entry_t *d = &dir[i];
        memcpy(d->name, name, nl);
        memcpy(d->unit, unit, ul);
        memcpy(d->owner, owner, ol);
        d->type = t->types[i];
        d->flags = t->flags[i];
        d->min = lo;
        d->max = hi;
        dh = fnv_bytes(dh, name, nl + 1);
        dh = fnv_bytes(dh, &t->types[i], 1);
        /* relaxed: published by the release store of magic. */
        atomic_store_explicit(&slots[i].value, t->initial[i], memory_order_relaxed);
        atomic_store_explicit(&slots[i].qs,
                              PETRA_QS(t->initial_quality[i], PETRA_SUB_INITIAL),
                              memory_order_relaxed);
        atomic_store_explicit(&slots[i].write_ts_ns, now, memory_order_relaxed);
        atomic_store_explicit(&slots[i].source_ts_ns, now, memory_order_relaxed);
        slots[i].type = t->types[i];
    }
    if (rc == PETRA_OK) {
        *bad = UINT32_MAX;
        if (petra__index_build(dir, n_signals, index, p.idx_buckets, hashes, bad) != PETRA_OK)
            rc = PETRA_EINVAL; /* a second entry of one name; *bad is the second */
    }
    free(hashes);
    if (rc != PETRA_OK) return rc;
    h->directory_hash = dh;
    /* Release: pairs with the acquire load of magic in petra_open, so a process
     * that sees the magic sees every byte written above. */
    atomic_store_explicit(&h->magic, PETRA_MAGIC, memory_order_release);
    return PETRA_OK;
}

/* Append one field to a blob, NUL terminated (the field is a fixed char array). */
static char *put_str(char *out, const char *field, size_t size) {
    const char *z = memchr(field, 0, size);
    size_t len = z ? (size_t)(z - field) : size - 1; /* truncated as the old layout did */
    memcpy(out, field, len);
    out[len] = 0;
    return out + len + 1;
}

int petra_init(void *base, size_t size, const char *instance,
               const petra_sigdef_t *defs, uint32_t n_signals,
               uint64_t journal_capacity, uint32_t n_heartbeats, uint32_t creator_pid) {
    if (n_signals && !defs) return PETRA_EINVAL;
    for (uint32_t i = 0; i < n_signals; i++)
        if (memchr(defs[i].name, 0, sizeof(defs[i].name)) == NULL) return PETRA_EINVAL;
    /* The array-of-structs form, kept for C callers: repacked into a table. */
    size_t per = sizeof(defs->name) + sizeof(defs->unit) + sizeof(defs->owner);
    size_t cnt = n_signals ? n_signals : 1;
    char *blob = malloc(cnt * per);
    uint8_t *types = malloc(cnt * 2);
    uint32_t *flags = malloc(cnt * sizeof(uint32_t));
    uint64_t *init = malloc(cnt * sizeof(uint64_t));
    double *lim = malloc(cnt * 2 * sizeof(double));
    int rc = PETRA_ENOMEM;
    if (blob && types && flags && init && lim) {
        char *nb = blob, *ub = blob + cnt * sizeof(defs->name),
             *ob = ub + cnt * sizeof(defs->unit);
        char *n0 = nb, *u0 = ub, *o0 = ob;
        for (uint32_t i = 0; i < n_signals; i++) {
            nb = put_str(nb, defs[i].name, sizeof(defs[i].name));
            ub = put_str(ub, defs[i].unit, sizeof(defs[i].unit));
            ob = put_str(ob, defs[i].owner, sizeof(defs[i].owner));
            types[i] = defs[i].type;
            types[cnt + i] = defs[i].initial_quality;
            flags[i] = defs[i].flags;
            init[i] = defs[i].initial;
            lim[i] = defs[i].min;
            lim[cnt + i] = defs[i].max;
        }
        petra_sigtable_t t = {
            .n = n_signals, .names = n0, .names_len = (size_t)(nb - n0), .units = u0,
            .units_len = (size_t)(ub - u0), .owners = o0, .owners_len = (size_t)(ob - o0),
            .types = types, .flags = flags, .initial = init,
            .initial_quality = types + cnt, .min = lim, .max = lim + cnt};
        uint32_t bad;
        size_t total = plan(n_signals, journal_capacity, n_heartbeats).total;
        if (base && size >= total) memset(base, 0, total); /* the table form wants zeros */
        rc = petra_init_table(base, size, instance, &t, journal_capacity, n_heartbeats,
                              creator_pid, &bad);
    }
    free(blob);
    free(types);
    free(flags);
    free(init);
    free(lim);
    return rc;
}

int petra_open(void *base, size_t size, int readonly, uint32_t writer,
               petra_seg_t **out) {
    if (!base || !out) return PETRA_EINVAL;
    if (size < sizeof(petra_header_t)) return PETRA_ESIZE;
    const petra_header_t *shared = base;
    /* Acquire: pairs with the creator's release store of magic (petra_init). */
    if (atomic_load_explicit(&shared->magic, memory_order_acquire) != PETRA_MAGIC)
        return PETRA_EMAGIC;
    /* Validate a private copy and build the handle from that same copy: a header
     * changed in the shared mapping after the checks (a bug, or a hostile process with
     * write access) cannot make us use an offset we did not check. */
    petra_header_t h;
    memcpy(&h, base, sizeof h);
    if (h.abi_version != PETRA_ABI_VERSION) return PETRA_EABI;
    if (h.layout_hash != petra_layout_hash()) return PETRA_ELAYOUT;
    if (h.total_size > size) return PETRA_ESIZE;
    /* The region table must be exactly what plan() makes of the header's counts: a
     * corrupt or hostile header must not send a pointer outside the mapping. */
    uint64_t cap = h.journal_capacity;
    if (h.header_size != sizeof(petra_header_t) || cap < 2 || (cap & (cap - 1)) ||
        cap > ((uint64_t)1 << 40) || h.n_heartbeats > (1u << 20) ||
        h.n_signals > PETRA_MAX_SIGNALS)
        return PETRA_ELAYOUT;
    plan_t p = plan(h.n_signals, cap, h.n_heartbeats);
    if (p.total != h.total_size || p.dir_off != h.dir_offset ||
        p.idx_off != h.index_offset || p.idx_buckets != h.index_buckets ||
        p.slots_off != h.slots_offset || p.j_off != h.journal_offset ||
        p.stats_off != h.stats_offset || p.hb_off != h.hb_offset)
        return PETRA_ELAYOUT;
    petra_seg_t *s = calloc(1, sizeof(*s));
    if (!s) return PETRA_ENOMEM;
    uint8_t *b = base;
    s->base = b;
    s->size = size;
    s->readonly = readonly;
    s->writer = writer;
    s->retry_limit = PETRA_DEFAULT_RETRIES;
    s->wait_ns = PETRA_DEFAULT_WAIT_NS;
    s->hdr = h;
    s->dir = (petra_dir_entry_t *)(b + p.dir_off);
    s->index = (const uint32_t *)(b + p.idx_off);
    s->index_mask = p.idx_buckets - 1;
    s->slots = (petra_slot_t *)(b + p.slots_off);
    s->jhdr = (petra_journal_hdr_t *)(b + p.j_off);
    s->ring = (petra_jentry_t *)(b + p.j_off + sizeof(petra_journal_hdr_t));
    s->jmask = cap - 1;
    s->stats = (petra_stats_t *)(b + p.stats_off);
    s->hb = (petra_hb_t *)(b + p.hb_off);
    s->n_signals = h.n_signals;
    s->n_hb = h.n_heartbeats;
    *out = s;
    return PETRA_OK;
}

void petra_close(petra_seg_t *seg) { free(seg); }

void petra_set_writer(petra_seg_t *seg, uint32_t writer) { seg->writer = writer; }

void petra_set_retry_limit(petra_seg_t *seg, uint32_t retries) {
    seg->retry_limit = retries ? retries : 1;
}

uint32_t petra_n_signals(const petra_seg_t *seg) { return seg->n_signals; }

int petra_info(const petra_seg_t *seg, petra_info_t *out) {
    const petra_header_t *h = &seg->hdr; /* the private copy petra_open validated */
    memset(out, 0, sizeof(*out));
    out->abi_version = h->abi_version;
    out->layout_hash = h->layout_hash;
    out->directory_hash = h->directory_hash;
    memcpy(out->instance, h->instance, sizeof(out->instance));
    out->created_ns = h->created_ns;
    out->total_size = h->total_size;
    out->n_signals = h->n_signals;
    out->n_heartbeats = h->n_heartbeats;
    out->journal_capacity = h->journal_capacity;
    /* relaxed: a monitoring snapshot; orders nothing. */
    out->journal_head = atomic_load_explicit(&seg->jhdr->head, memory_order_relaxed);
    out->producer_drops =
        atomic_load_explicit(&seg->jhdr->producer_drops, memory_order_relaxed);
    out->creator_pid = h->creator_pid;
    out->dir_offset = h->dir_offset;
    out->slots_offset = h->slots_offset;
    out->journal_offset = h->journal_offset;
    out->stats_offset = h->stats_offset;
    out->hb_offset = h->hb_offset;
    return PETRA_OK;
}

int petra_dir_get(const petra_seg_t *seg, uint32_t index, petra_sigdef_t *out) {
    if (index >= seg->n_signals) return PETRA_ERANGE;
    const petra_dir_entry_t *d = &seg->dir[index];
    memset(out, 0, sizeof(*out));
    memcpy(out->name, d->name, sizeof(out->name));
    memcpy(out->unit, d->unit, sizeof(out->unit));
    memcpy(out->owner, d->owner, sizeof(out->owner));
    out->type = d->type;
    out->flags = d->flags;
    out->min = d->min;
    out->max = d->max;
    return PETRA_OK;
}

int64_t petra_now_mono_ns(void) { return petra__clock(CLOCK_MONOTONIC); }
int64_t petra_now_real_ns(void) { return petra__clock(CLOCK_REALTIME); }
