/*
 * retain.h - the retain area: the scan's block state, committed once per cycle, in a
 * shared-memory object of its own (/petra-retain.<instance>) next to the segment.
 *
 * Why a companion object and not a region of the segment: the segment's size and
 * layout are fixed at creation from the signal table, while the block state changes
 * size with every hot reload that adds or removes a stateful block. A separate object
 * can grow without touching the segment's layout hash, and it outlives the scan
 * process like the segment does (a kill -9 of the scan leaves both in RAM). Python maps
 * it (posix-ipc, mode 0660, as the segment); this file lays it out and holds every
 * memory-ordering step.
 *
 * ## Layout (all offsets from the start of the mapping; never pointers)
 *  - header (one 4 KiB page): magic, ABI version, instance name, `commit`, and per
 *    buffer its offset and capacity;
 *  - two buffers, A and B, each: a 64-byte buffer header (`seq`, `gen`, `meta_len`,
 *    `n_state`, `cycles`, `wall_ns`), then `meta_len` bytes of metadata (the block
 *    table, opaque to C: petra/blocks/_retain.py writes JSON), padded to 8, then
 *    `n_state` doubles (the block program's state array).
 *
 * ## The protocol: one writer (the scan), double buffer, sequence numbers
 *  - `commit` = (n << 1) | b: the n-th complete commit is in buffer b. 0 = none yet.
 *  - Writer (petra_retain_commit), once per cycle after copy-out: b = the buffer
 *    `commit` does not name; seq = b.seq (even); store seq+1 (relaxed); release fence
 *    (pairs with the reader's acquire fence: a reader that sees any byte below sees
 *    the odd seq on its re-load); copy meta (only when the buffer's `gen` is older than
 *    the caller's) and the state; store seq+2 (release: pairs with the reader's acquire
 *    load of b.seq); store commit = ((n+1) << 1) | b (release: pairs with the reader's
 *    acquire load of commit, so a reader that sees the new commit sees b complete).
 *  - A writer killed at any instruction leaves `commit` naming the previous complete
 *    buffer (the one it was not writing): a restarted scan resumes from the last
 *    complete cycle. A buffer left odd is simply written again by the next commit.
 *  - Reader (petra_retain_read): load commit (acquire), then the named buffer's seq
 *    (acquire); odd or changed means a commit raced the read: retry, at most
 *    PETRA_RETAIN_RETRIES times (the reader is a restarted scan after the writer
 *    died, or a tool; never the writer's own loop). Copy, acquire fence, re-load seq
 *    and commit (relaxed: the fence orders them after the copy); equal = consistent.
 *  - Placement (petra_retain_place): a reload that needs more room moves the buffer
 *    `commit` does not name to the end of the mapping (the caller grows the object
 *    first). Offsets and capacities of that buffer are plain stores published by the
 *    next commit's release store; a reader never uses the buffer `commit` does not
 *    name. The released room is not reused: the object is rebuilt at the next clean
 *    plant start.
 *  - Wrap: n is 63 bits; at one commit per 100 us it wraps after 29 million years.
 *
 * The copies are plain memcpy: the reader's racy copy of a buffer being rewritten is
 * discarded by the seq check (the seqlock pattern of the Linux kernel's seqlock.rst);
 * the data are doubles and bytes, with no pointers to follow before the check.
 */
#ifndef PETRA_RETAIN_H
#define PETRA_RETAIN_H

#include <stddef.h>
#include <stdint.h>

/* CFFI-BEGIN */
typedef struct {
    uint64_t commit;      /* (n << 1) | buffer of the snapshot read */
    uint64_t gen;         /* metadata generation the writer gave */
    uint64_t meta_len;
    uint64_t n_state;
    uint64_t cycles;      /* the writer's cycle count at that commit */
    int64_t wall_ns;      /* CLOCK_REALTIME of that commit */
} petra_retain_info_t;

/* Bytes of the header page. */
size_t petra_retain_header_size(void);
/* Bytes one buffer needs for meta_len bytes of metadata and n_state doubles. */
size_t petra_retain_buffer_size(size_t meta_len, size_t n_state);
/* Lay out an empty area (no commit) in a zeroed mapping; magic stored last. */
int petra_retain_init(void *base, size_t size, const char *instance);
/* Check magic, ABI and bounds; instance (may be NULL) must match. 0 or PETRA_E*. */
int petra_retain_check(const void *base, size_t size, const char *instance);
/* Make the buffer `commit` does not name hold meta_len + n_state: 0 when it does
 * (moved to the end of the mapping if needed), or the mapping size needed (> 0) when
 * the caller must grow the object and call again with the new mapping. */
int64_t petra_retain_place(void *base, size_t size, size_t meta_len, size_t n_state);
/* Commit one snapshot (see the protocol above). meta is copied only into a buffer
 * whose gen differs from `gen`. PETRA_ESIZE when the buffer is too small (place). */
int petra_retain_commit(void *base, size_t size, const void *meta, size_t meta_len,
                        uint64_t gen, const double *state, size_t n_state,
                        uint64_t cycles);
/* Read the last complete snapshot. Returns 0 (info, meta and state filled; meta_cap
 * and n_cap too small: only info, PETRA_ERANGE), 1 when nothing was committed yet,
 * PETRA_EBUSY when commits kept racing the read, or the petra_retain_check error. */
int petra_retain_read(const void *base, size_t size, void *meta, size_t meta_cap,
                      double *state, size_t n_cap, petra_retain_info_t *info);
/* Tests only: a commit that stops after `nbytes` of the state copy, as a writer
 * killed there would (seq left odd, commit not advanced). */
int petra_retain_debug_torn(void *base, size_t size, const double *state, size_t n_state,
                            size_t nbytes);
/* CFFI-END */

#endif
