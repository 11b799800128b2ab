/*
 * journal.c - the change journal: a multi-producer broadcast ring.
 * Protocol: layout.h, "Change journal". Producers never wait; consumers keep a
 * private cursor and count every position they could not deliver.
 */
#include "core.h"

#include <string.h>
#include <time.h>

int64_t petra_journal_append(petra_seg_t *seg, uint32_t slot, uint8_t type,
                             uint64_t value, uint8_t quality, uint8_t substatus,
                             int64_t source_ts_ns, int64_t write_ts_ns) {
    if (seg->readonly) return PETRA_EINVAL;
    if (slot >= seg->n_signals) return PETRA_ERANGE;
    if (type < PETRA_T_BOOL || type > PETRA_T_FLOAT) return PETRA_ETYPE;
    petra__journal_put(seg, petra__journal_claim(seg, 1), slot, type, value, quality,
                       substatus, source_ts_ns,
                       write_ts_ns ? write_ts_ns : petra__clock(CLOCK_REALTIME));
    return PETRA_OK;
}

uint64_t petra_journal_head(const petra_seg_t *seg) {
    /* Acquire: pairs with the release fence every slot writer issues after its odd
     * seq store and before its claim (fence-to-acquire synchronisation through the
     * claim's fetch_add and the release sequence of later claims). A reader that
     * sees a claim therefore sees the claiming writer's slot odd or newer: the scan's
     * "skip entries when no slot read busy" depends on it (scan.c). On x86 this costs
     * nothing; on ARM64 it is an LDAR, not an LDR. */
    return atomic_load_explicit(&seg->jhdr->head, memory_order_acquire);
}

void petra_cursor_init(const petra_seg_t *seg, petra_cursor_t *cur, int from_start,
                       int64_t stall_timeout_ns) {
    uint64_t head = petra_journal_head(seg);
    uint64_t cap = seg->jmask + 1;
    memset(cur, 0, sizeof *cur);
    cur->next = from_start ? (head > cap ? head - cap : 0) : head;
    cur->stall_timeout_ns = stall_timeout_ns > 0 ? stall_timeout_ns : 250000000LL;
    /* A cursor that starts at head has not seen what came before: a scan copy-in must
     * first read every slot once with none busy (scan.c). */
    cur->flags = from_start ? 0 : PETRA_CUR_NEED_FULL;
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
    return petra_journal_read_sub(seg, cur, max, slot, value, type, quality, NULL, source_ts,
                                  write_ts, writer);
}

/* The substatus comes from the entry's own `tqs` word, loaded in the same read section
 * as the value: it is the one the producer wrote with that value. Read from the slot
 * afterwards it could belong to a newer write (a restarted scan's GOOD value after
 * the supervisor's SCAN_DOWN mark). */
int64_t petra_journal_read_sub(petra_seg_t *seg, petra_cursor_t *cur, size_t max,
                               uint32_t *slot, uint64_t *value, uint8_t *type,
                               uint8_t *quality, uint8_t *substatus, int64_t *source_ts,
                               int64_t *write_ts, uint32_t *writer) {
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
            uint64_t sw = atomic_load_explicit(&e->slot_writer, memory_order_relaxed);
            uint32_t tqs = atomic_load_explicit(&e->tqs, memory_order_relaxed);
            /* Acquire fence: pairs with the producer's release fence after its odd
             * store; a copy that saw a newer producer's store sees its odd seq below. */
            atomic_thread_fence(memory_order_acquire);
            uint64_t s2 = atomic_load_explicit(&e->seq, memory_order_relaxed);
            if (s2 != s1) {
                skip_lapped(seg, cur);
                continue;
            }
            cur->next = pos + 1;
            cur->stall_since_ns = 0;
            uint8_t t = (uint8_t)tqs;
            if (t == PETRA_ENTRY_VOID) { /* a dead producer's entry, published by repair */
                cur->lost++;
                continue;
            }
            if (slot) slot[n] = (uint32_t)sw;
            if (value) value[n] = v;
            if (type) type[n] = t;
            if (quality) quality[n] = (uint8_t)(tqs >> 8);
            if (substatus) substatus[n] = (uint8_t)(tqs >> 16);
            if (source_ts) source_ts[n] = st;
            if (write_ts) write_ts[n] = wt;
            if (writer) writer[n] = (uint32_t)(sw >> 32);
            n++;
            cur->received++;
            continue;
        }
        if (s1 > want) {
            skip_lapped(seg, cur);
            continue;
        }
        /* Not published yet. Wait for it (return what we have), unless its producer
         * has had longer than the stall timeout: then it dropped the entry or died
         * before locking it, and the position is counted lost instead of blocking
         * every sink. Every position claimed before the wait began has had as long,
         * so once one times out, those still unpublished go without a second wait. */
        if (pos < cur->skip_below) {
            cur->lost++;
            cur->next = pos + 1;
            continue;
        }
        int64_t now = petra__clock(CLOCK_MONOTONIC);
        if (cur->stall_since_ns == 0 || cur->stall_pos != pos) {
            cur->stall_pos = pos;
            cur->stall_since_ns = now;
            cur->stall_head = head;
            break;
        }
        if (now - cur->stall_since_ns < cur->stall_timeout_ns) break;
        cur->skip_below = cur->stall_head;
        cur->lost++;
        cur->next = pos + 1;
        cur->stall_since_ns = 0;
    }
    return (int64_t)n;
}

/* Free every ring entry a dead producer holds; one it died inside is published as
 * VOID for its position, so consumers count it lost at once. */
uint64_t petra__repair_journal(petra_seg_t *seg, uint32_t dead) {
    uint64_t freed = 0;
    for (uint64_t i = 0; i <= seg->jmask; i++) {
        petra_jentry_t *e = &seg->ring[i];
        /* Relaxed: a filter; the take-over CAS decides. */
        if (atomic_load_explicit(&e->lock, memory_order_relaxed) != dead) continue;
        if (!petra__take_over(seg, &e->lock, dead)) continue;
        uint64_t seq = atomic_load_explicit(&e->seq, memory_order_relaxed);
        if (seq & 1) {
            /* Release fence: as in petra__journal_put (our load of the odd seq is
             * ordered before the stores below). */
            atomic_thread_fence(memory_order_release);
            atomic_store_explicit(&e->tqs, PETRA_TQS(PETRA_ENTRY_VOID, PETRA_Q_BAD, 0),
                                  memory_order_relaxed);
            atomic_store_explicit(&e->slot_writer, UINT32_MAX | (uint64_t)seg->writer << 32,
                                  memory_order_relaxed);
            /* Release: pairs with the consumer's acquire load of seq. */
            atomic_store_explicit(&e->seq, seq + 1, memory_order_release);
        }
        petra__unlock(&e->lock);
        freed++;
    }
    return freed;
}

int petra__debug_entry(petra_seg_t *seg, int stage) {
    if (seg->n_signals == 0) return PETRA_ERANGE;
    uint64_t pos = petra__journal_claim(seg, 1);
    petra_jentry_t *e = &seg->ring[pos & seg->jmask];
    if (!petra__try_lock(seg, &e->lock)) return PETRA_EBUSY;
    if (stage == PETRA_STAGE_LOCKED) return PETRA_OK;
    atomic_store_explicit(&e->seq, 2 * pos + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release); /* as in petra__journal_put */
    atomic_store_explicit(&e->value, 0xDEADDEADDEADDEADULL, memory_order_relaxed);
    if (stage == PETRA_STAGE_EVEN) {
        atomic_store_explicit(&e->slot_writer, (uint64_t)seg->writer << 32,
                              memory_order_relaxed);
        atomic_store_explicit(&e->tqs, PETRA_TQS(PETRA_T_INT, PETRA_Q_GOOD, 0),
                              memory_order_relaxed);
        atomic_store_explicit(&e->seq, 2 * pos + 2, memory_order_release); /* publish */
    }
    return PETRA_OK;
}
