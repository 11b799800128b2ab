/*
 * journal.c - the change journal: a multi-producer broadcast ring.
 * Protocol: layout.h, "Change journal". Producers never wait; consumers keep a
 * private cursor and count every position they could not deliver.
 */
#include "core.h"

#include <time.h>

void petra__journal_put(petra_seg_t *seg, uint32_t slot, uint8_t type, uint64_t value,
                        uint8_t quality, uint8_t substatus, int64_t source_ts,
                        int64_t write_ts) {
    petra_journal_hdr_t *j = seg->jhdr;
    /* Relaxed: claiming a position orders nothing; the entry's seq does. */
    uint64_t pos = atomic_fetch_add_explicit(&j->head, 1, memory_order_relaxed);
    petra_jentry_t *e = &seg->ring[pos & seg->jmask];
    uint64_t want = 2 * pos + 1;
    /* Relaxed: a hint for the CAS below. */
    uint64_t cur = atomic_load_explicit(&e->seq, memory_order_relaxed);
    /* Acquire on success: pairs with the release store that published the entry's
     * previous occupant, so our stores land after its stores. An odd entry belongs to
     * a producer a full lap behind (or a dead one): never wait for it, drop ours. */
    if ((cur & 1) || cur >= want ||
        !atomic_compare_exchange_strong_explicit(&e->seq, &cur, want, memory_order_acquire,
                                                 memory_order_relaxed)) {
        /* Relaxed: a statistic. */
        atomic_fetch_add_explicit(&j->producer_drops, 1, memory_order_relaxed);
        return;
    }
    /* Release fence: pairs with the consumer's acquire fence in petra_journal_read;
     * orders the odd seq before the data stores below. */
    atomic_thread_fence(memory_order_release);
    atomic_store_explicit(&e->value, value, memory_order_relaxed);
    atomic_store_explicit(&e->source_ts_ns, source_ts, memory_order_relaxed);
    atomic_store_explicit(&e->write_ts_ns, write_ts, memory_order_relaxed);
    atomic_store_explicit(&e->slot, slot, memory_order_relaxed);
    atomic_store_explicit(&e->writer, seg->writer, memory_order_relaxed);
    atomic_store_explicit(&e->type, type, memory_order_relaxed);
    atomic_store_explicit(&e->quality, quality, memory_order_relaxed);
    atomic_store_explicit(&e->substatus, substatus, memory_order_relaxed);
    /* Release: pairs with the consumer's acquire load of seq; publishes the entry. */
    atomic_store_explicit(&e->seq, want + 1, memory_order_release);
}

int64_t petra_journal_append(petra_seg_t *seg, uint32_t slot, uint8_t type,
                             uint64_t value, uint8_t quality, uint8_t substatus,
                             int64_t source_ts_ns, int64_t write_ts_ns) {
    if (seg->readonly) return PETRA_EINVAL;
    if (slot >= seg->n_signals) return PETRA_ERANGE;
    petra__journal_put(seg, slot, type, value, quality, substatus, source_ts_ns,
                       write_ts_ns ? write_ts_ns : petra__clock(CLOCK_REALTIME));
    return PETRA_OK;
}

uint64_t petra_journal_head(const petra_seg_t *seg) {
    /* Relaxed: a bound for readers; each entry's seq carries the ordering. */
    return atomic_load_explicit(&seg->jhdr->head, memory_order_relaxed);
}

void petra_cursor_init(const petra_seg_t *seg, petra_cursor_t *cur, int from_start,
                       int64_t stall_timeout_ns) {
    uint64_t head = petra_journal_head(seg);
    uint64_t cap = seg->jmask + 1;
    cur->next = from_start ? (head > cap ? head - cap : 0) : head;
    cur->received = 0;
    cur->lost = 0;
    cur->overruns = 0;
    cur->stall_pos = 0;
    cur->stall_since_ns = 0;
    cur->stall_timeout_ns = stall_timeout_ns > 0 ? stall_timeout_ns : 250000000LL;
}

/* Jump a lapped consumer to the oldest position the ring can still hold. */
static void skip_lapped(const petra_seg_t *seg, petra_cursor_t *cur) {
    uint64_t head = petra_journal_head(seg);
    uint64_t cap = seg->jmask + 1;
    uint64_t to = head > cap ? head - cap : 0;
    if (to <= cur->next) to = cur->next + 1;
    cur->lost += to - cur->next;
    cur->overruns++;
    cur->next = to;
    cur->stall_since_ns = 0;
}

int64_t petra_journal_read(petra_seg_t *seg, petra_cursor_t *cur, size_t max,
                           uint32_t *slot, uint64_t *value, uint8_t *type,
                           uint8_t *quality, int64_t *source_ts, int64_t *write_ts,
                           uint32_t *writer) {
    uint64_t cap = seg->jmask + 1;
    uint64_t head = petra_journal_head(seg);
    size_t n = 0;
    while (n < max && cur->next < head) {
        uint64_t pos = cur->next;
        if (head - pos > cap) {
            skip_lapped(seg, cur);
            continue;
        }
        petra_jentry_t *e = &seg->ring[pos & seg->jmask];
        uint64_t want = 2 * pos + 2;
        /* Acquire: pairs with the producer's release store of seq (publish). */
        uint64_t s1 = atomic_load_explicit(&e->seq, memory_order_acquire);
        if (s1 == want) {
            /* Relaxed: validated by the seq re-check after the fence. */
            uint64_t v = atomic_load_explicit(&e->value, memory_order_relaxed);
            int64_t st = atomic_load_explicit(&e->source_ts_ns, memory_order_relaxed);
            int64_t wt = atomic_load_explicit(&e->write_ts_ns, memory_order_relaxed);
            uint32_t sl = atomic_load_explicit(&e->slot, memory_order_relaxed);
            uint32_t w = atomic_load_explicit(&e->writer, memory_order_relaxed);
            uint8_t t = atomic_load_explicit(&e->type, memory_order_relaxed);
            uint8_t q = atomic_load_explicit(&e->quality, memory_order_relaxed);
            /* Acquire fence: pairs with the producer's release fence after its CAS; a
             * copy that saw a newer producer's store sees its odd seq below. */
            atomic_thread_fence(memory_order_acquire);
            uint64_t s2 = atomic_load_explicit(&e->seq, memory_order_relaxed);
            if (s2 != s1) {
                skip_lapped(seg, cur);
                continue;
            }
            if (slot) slot[n] = sl;
            if (value) value[n] = v;
            if (type) type[n] = t;
            if (quality) quality[n] = q;
            if (source_ts) source_ts[n] = st;
            if (write_ts) write_ts[n] = wt;
            if (writer) writer[n] = w;
            n++;
            cur->next = pos + 1;
            cur->received++;
            cur->stall_since_ns = 0;
            continue;
        }
        if (s1 > want) {
            skip_lapped(seg, cur);
            continue;
        }
        /* Not published yet. Wait for it (return what we have), unless its producer
         * has had longer than the stall timeout: then it dropped the entry or died,
         * and the position is counted lost instead of blocking every sink. */
        int64_t now = petra__clock(CLOCK_MONOTONIC);
        if (cur->stall_since_ns == 0 || cur->stall_pos != pos) {
            cur->stall_pos = pos;
            cur->stall_since_ns = now;
            break;
        }
        if (now - cur->stall_since_ns < cur->stall_timeout_ns) break;
        cur->lost++;
        cur->next = pos + 1;
        cur->stall_since_ns = 0;
    }
    return (int64_t)n;
}
