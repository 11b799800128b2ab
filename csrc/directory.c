/*
 * directory.c - the signal directory's name index and its checks.
 *
 * The directory (one 128-byte entry per signal) is what lets a tool attach by name
 * without the config. Copying it into Python objects on every attach cost ~245 bytes
 * of private memory and ~9 us per signal; instead the creator lays out a hash index
 * next to it (layout.h, "Name index") and every process resolves names through that
 * index, on demand, in C.
 *
 * Nothing here needs an atomic: the index and the directory are written once, by the
 * creator, before its release store of `magic` (segment.c), and only read afterwards.
 * Readers still treat both as untrusted bytes (any process of the group may write
 * them): every index a bucket yields is bounds-checked, every probe is bounded, and a
 * name is compared in the directory entry, never trusted from the bucket.
 */
#include "core.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

uint64_t petra__index_buckets(uint32_t n_signals) {
    /* Load factor <= 2/3 keeps linear probing short (~2 probes for a hit, ~5 for a
     * miss) at 6-12 bytes per signal. */
    uint64_t want = (uint64_t)n_signals + n_signals / 2 + 1, b = 4;
    while (b < want) b <<= 1;
    return b;
}

uint64_t petra__name_hash(const char *name, size_t len) {
    uint64_t h = 1469598103934665603ULL; /* FNV-1a 64 */
    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t)name[i];
        h *= 1099511628211ULL;
    }
    /* FNV-1a's low bits depend only on the low bits of every byte (a multiply carries
     * upwards only), and the bucket is taken from the low bits: finish with
     * MurmurHash3's fmix64 so every output bit depends on every input bit. */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

static size_t name_len(const petra_dir_entry_t *d) {
    const char *z = memchr(d->name, 0, sizeof(d->name));
    return z ? (size_t)(z - d->name) : sizeof(d->name);
}

static int same_name(const petra_dir_entry_t *d, const char *name, size_t len) {
    return len < sizeof(d->name) && d->name[len] == 0 && memcmp(d->name, name, len) == 0;
}

/* A bucket: entry index + 1 in the low 24 bits (0 = empty), the top 8 bits of the
 * name's hash above them. The tag lets a probe pass over other names' buckets without
 * reading their directory entries (a cache and TLB miss each, which made checking a
 * 100k directory cost ~1 us an entry); only a tag match (1 in 256 for a stranger)
 * compares names. Hence at most 2^24 - 1 signals (PETRA_MAX_SIGNALS). */
#define IDX_MASK 0x00ffffffu
#define IDX_TAG(h) ((uint32_t)((h) >> 56) << 24)

/* Entry i's name is read only when a bucket's tag matches (a likely duplicate, or 1 in
 * 256 strangers): the build inserts in bucket order, so entry i is a random place in
 * the directory, and reading it for every insert was a cache and TLB miss each. */
static int insert_hashed(petra_dir_entry_t *dir, uint32_t *index, uint64_t mask, uint32_t i,
                         uint64_t h, uint32_t *dup) {
    uint64_t b = h & mask;
    uint32_t tag = IDX_TAG(h);
    for (;;) {
        uint32_t v = index[b];
        if (v == 0) {
            index[b] = tag | (i + 1);
            return PETRA_OK;
        }
        if ((v & ~IDX_MASK) == tag &&
            same_name(&dir[(v & IDX_MASK) - 1], dir[i].name, name_len(&dir[i]))) {
            *dup = (v & IDX_MASK) - 1;
            return PETRA_EINVAL;
        }
        b = (b + 1) & mask; /* the table is never full (load <= 2/3): this ends */
    }
}

int petra__index_insert(petra_dir_entry_t *dir, uint32_t *index, uint64_t mask, uint32_t i,
                        uint32_t *dup) {
    return insert_hashed(dir, index, mask, i, petra__name_hash(dir[i].name, name_len(&dir[i])),
                         dup);
}

int petra__index_build(petra_dir_entry_t *dir, uint32_t n, uint32_t *index, uint64_t buckets,
                       const uint64_t *hashes, uint32_t *bad) {
    /* Inserting in directory order writes the index at random: at 1M signals (8 MB of
     * buckets) nearly every insert missed the cache and the TLB (a third of creation).
     * So hash everything first, counting-sort the entries by their home bucket's top
     * bits (stable: of two entries with one name the later is still inserted later,
     * and reported), and insert in that order, which walks the index front to back.
     * A creator that hashed the names while it copied them in passes `hashes` (the
     * directory is then not read again: at 1M that was 128 MB, cold). */
    uint64_t mask = buckets - 1;
    uint32_t groups = buckets < 65536 ? (uint32_t)buckets : 65536, shift = 0;
    while (((uint64_t)groups << shift) < buckets) shift++;
    uint64_t *own = hashes ? NULL : malloc((size_t)n * sizeof(uint64_t) + 1);
    const uint64_t *hash = hashes ? hashes : own;
    /* The hash travels with the entry number, so the insert pass reads one array in
     * order instead of looking each entry's hash up at random. */
    struct ordered { uint64_t hash; uint32_t i; } *order = malloc((size_t)n * sizeof(*order) + 1);
    uint32_t *start = calloc((size_t)groups + 1, sizeof(uint32_t));
    int rc = PETRA_OK;
    uint32_t dup;
    if (!hash || !order || !start) { /* no memory for the fast way: the plain one */
        for (uint32_t i = 0; i < n && rc == PETRA_OK; i++) {
            rc = petra__index_insert(dir, index, mask, i, &dup);
            if (rc != PETRA_OK) *bad = i;
        }
    } else {
        if (own)
            for (uint32_t i = 0; i < n; i++) own[i] = petra__name_hash(dir[i].name, name_len(&dir[i]));
        for (uint32_t i = 0; i < n; i++) start[((hash[i] & mask) >> shift) + 1]++;
        for (uint32_t g = 0; g < groups; g++) start[g + 1] += start[g];
        for (uint32_t i = 0; i < n; i++) {
            struct ordered *o = &order[start[(hash[i] & mask) >> shift]++];
            o->hash = hash[i];
            o->i = i;
        }
        for (uint32_t k = 0; k < n; k++) {
            uint32_t i = order[k].i;
            if (insert_hashed(dir, index, mask, i, order[k].hash, &dup) != PETRA_OK) {
                *bad = i; /* the second of two entries with one name */
                rc = PETRA_EINVAL;
                break;
            }
        }
    }
    free(own);
    free(order);
    free(start);
    return rc;
}

int64_t petra_dir_lookup(const petra_seg_t *seg, const char *name, size_t len) {
    if (!name || len == 0 || len >= sizeof(seg->dir[0].name)) return PETRA_ERANGE;
    if (memchr(name, 0, len)) return PETRA_ERANGE; /* "a\0" must not find "a" */
    uint64_t h = petra__name_hash(name, len), mask = seg->index_mask, b = h & mask;
    uint32_t tag = IDX_TAG(h);
    for (uint64_t probes = 0; probes <= mask; probes++, b = (b + 1) & mask) {
        uint32_t v = seg->index[b], i = v & IDX_MASK;
        if (v == 0) break;
        if ((v & ~IDX_MASK) != tag) continue;
        if (i == 0 || i > seg->n_signals) continue; /* damaged: never an index out of range */
        if (same_name(&seg->dir[i - 1], name, len)) return (int64_t)(i - 1);
    }
    return PETRA_ERANGE;
}

static int word(uint8_t c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_';
}

/* The name rule of petra.types (`[^\W\d]\w*([.\-/]\w+)*`, at most 63 bytes) for an
 * ASCII name; 0 for anything else, including any non-ASCII byte (Python decides). */
static int plain_name_ok(const char *name, size_t len) {
    if (len == 0 || len >= 64) return 0;
    const uint8_t *s = (const uint8_t *)name;
    if (!word(s[0]) || (s[0] >= '0' && s[0] <= '9')) return 0;
    for (size_t i = 1; i < len; i++) {
        if (word(s[i])) continue;
        if ((s[i] == '.' || s[i] == '-' || s[i] == '/') && i + 1 < len && word(s[i + 1]))
            continue;
        return 0;
    }
    return 1;
}

/* A unit or owner: NUL terminated inside its field, printable ASCII only. */
static int plain_text_ok(const char *t, size_t size) {
    const uint8_t *s = (const uint8_t *)t;
    for (size_t i = 0; i < size; i++) {
        if (s[i] == 0) return 1;
        if (s[i] < 0x20 || s[i] >= 0x7f) return 0;
    }
    return 0;
}

int petra__entry_plain_ok(const petra_dir_entry_t *d) {
    if (d->type < PETRA_T_BOOL || d->type > PETRA_T_FLOAT) return 0;
    if (!plain_name_ok(d->name, name_len(d))) return 0;
    if (!plain_text_ok(d->unit, sizeof(d->unit)) || !plain_text_ok(d->owner, sizeof(d->owner)))
        return 0;
    if (!isnan(d->min) && !isfinite(d->min)) return 0;
    if (!isnan(d->max) && !isfinite(d->max)) return 0;
    if (!isnan(d->min) && !isnan(d->max) && d->min > d->max) return 0;
    return 1;
}

/* Is entry i what the index finds for its own name, with no other entry of that name
 * on the probe chain? */
static int indexed_once(const petra_seg_t *seg, uint32_t i) {
    const petra_dir_entry_t *d = &seg->dir[i];
    size_t len = name_len(d);
    uint64_t h = petra__name_hash(d->name, len), mask = seg->index_mask, b = h & mask;
    uint32_t tag = IDX_TAG(h);
    int found = 0;
    for (uint64_t probes = 0; probes <= mask; probes++, b = (b + 1) & mask) {
        uint32_t v = seg->index[b], k = v & IDX_MASK;
        if (v == 0) break;
        if (k == 0 || k > seg->n_signals) return 0;
        if ((v & ~IDX_MASK) != tag) continue;
        if (k - 1 == i)
            found = 1;
        else if (same_name(&seg->dir[k - 1], d->name, len))
            return 0;
    }
    return found;
}

int64_t petra_dir_check(const petra_seg_t *seg, uint32_t start, int *kind) {
    uint32_t n = seg->n_signals;
    *kind = 0;
    if (start == 0) {
        /* Exactly n buckets in use: with every entry found from its own name below,
         * the index and the directory are one-to-one. */
        uint64_t used = 0;
        for (uint64_t b = 0; b <= seg->index_mask; b++) used += seg->index[b] != 0;
        if (used != n) {
            *kind = PETRA_DIRCHK_INDEX;
            return 0;
        }
    }
    for (uint32_t i = start; i < n; i++) {
        /* The index first: an entry handed to Python for a closer look (LOOK) is
         * skipped by the resumed check, so it must already be known indexed. */
        if (!indexed_once(seg, i)) {
            *kind = PETRA_DIRCHK_INDEX;
            return i;
        }
        if (!petra__entry_plain_ok(&seg->dir[i])) {
            *kind = PETRA_DIRCHK_LOOK;
            return i;
        }
    }
    return n;
}

int petra_dir_types(const petra_seg_t *seg, uint8_t *out, size_t n) {
    if (n != seg->n_signals) return PETRA_EINVAL;
    for (size_t i = 0; i < n; i++) out[i] = seg->dir[i].type;
    return PETRA_OK;
}
