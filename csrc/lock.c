/*
 * lock.c - lock words that name their holder, the wait policy, and dead-writer repair.
 * Protocol: layout.h, "The rule that makes a kill -9 harmless".
 *
 * Why the pid, and why /proc (and not a writer table of our own):
 *  - The lock word must say who holds it in the same atomic step that takes it, and
 *    the supervisor already knows children by pid when it reaps them; a pid needs no
 *    registration, so a user's script that writes one signal is covered too.
 *  - A waiting writer must tell a live holder (wait: it leaves its section within
 *    microseconds once it runs) from a dead one (will never leave: give up, the
 *    supervisor repairs) and from a stopped one (SIGSTOP, a debugger: may not leave
 *    for minutes: give up). kill(pid, 0) answers "dead" only once the process is
 *    reaped; /proc/<pid>/stat also says Z (exited, not yet reaped) and T/t (stopped).
 *    A heartbeat-based writer table would need every writer to beat, and staleness
 *    is a timeout, not a fact.
 *  - The check is a syscall or three, so it runs only after the spin is exhausted, and
 *    at most once a millisecond while waiting.
 *  Limits: pids are per PID namespace (every process of a plant shares one); a holder
 *  that dies and whose pid is reused before the waiter looks is taken for alive and
 *  waited for up to the wait budget (the supervisor repairs on reap, before that).
 */
#include "core.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int petra_holder_state(uint32_t pid) {
    if (pid == 0 || pid >= PETRA_HB_CLAIMING) return PETRA_HOLDER_DEAD;
    if (kill((pid_t)pid, 0) != 0 && errno == ESRCH) return PETRA_HOLDER_DEAD;
    char path[32];
    snprintf(path, sizeof path, "/proc/%u/stat", (unsigned)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? PETRA_HOLDER_DEAD : PETRA_HOLDER_ALIVE;
    char buf[512];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return PETRA_HOLDER_ALIVE;
    buf[n] = 0;
    /* "pid (comm) S ...": comm may itself contain ')', so take the last one. */
    const char *p = strrchr(buf, ')');
    if (!p || p[1] != ' ') return PETRA_HOLDER_ALIVE;
    switch (p[2]) {
    case 'Z': case 'X': case 'x': return PETRA_HOLDER_DEAD;
    case 'T': case 't': return PETRA_HOLDER_STOPPED;
    default: return PETRA_HOLDER_ALIVE;
    }
}

static void nap(long ns) {
    struct timespec ts = {.tv_sec = 0, .tv_nsec = ns};
    nanosleep(&ts, NULL);
}

int petra__lock(petra_seg_t *seg, _Atomic uint32_t *lock, int wait) {
    for (uint32_t attempt = 0; attempt < seg->retry_limit; attempt++) {
        /* Relaxed: a hint that saves a failing CAS; petra__try_lock decides. */
        if (atomic_load_explicit(lock, memory_order_relaxed) == 0 && petra__try_lock(seg, lock))
            return PETRA_OK;
        petra__cpu_relax();
    }
    if (!wait || seg->wait_ns <= 0) {
        seg->lock_stats.busy_nowait++;
        return PETRA_EBUSY;
    }
    seg->lock_stats.waits++;
    int64_t now = petra__clock(CLOCK_MONOTONIC);
    int64_t deadline = now + seg->wait_ns, next_check = now;
    for (uint32_t round = 0;; round++) {
        /* Relaxed: the holder's id, read to decide whether to wait; not ordering. */
        uint32_t holder = atomic_load_explicit(lock, memory_order_relaxed);
        if (holder == 0) {
            if (petra__try_lock(seg, lock)) return PETRA_OK;
            continue;
        }
        now = petra__clock(CLOCK_MONOTONIC);
        if (now >= next_check) {
            int state = petra_holder_state(holder);
            if (state == PETRA_HOLDER_DEAD) {
                seg->lock_stats.busy_dead++;
                return PETRA_EBUSY;
            }
            if (state == PETRA_HOLDER_STOPPED) {
                seg->lock_stats.busy_stopped++;
                return PETRA_EBUSY;
            }
            next_check = now + 1000000; /* look again in 1 ms */
        }
        if (now >= deadline) {
            seg->lock_stats.busy_live++;
            return PETRA_EBUSY;
        }
        /* The holder is alive but not leaving: most likely preempted. Give it the CPU:
         * yield first (cheap when it waits on our run queue), then sleep briefly (it
         * may be queued on the other CPU behind someone else). */
        if (round < 8)
            sched_yield();
        else
            nap(round < 64 ? 20000 : 200000);
        for (int spin = 0; spin < 64; spin++) {
            if (atomic_load_explicit(lock, memory_order_relaxed) == 0 &&
                petra__try_lock(seg, lock))
                return PETRA_OK;
            petra__cpu_relax();
        }
    }
}

int petra__take_over(petra_seg_t *seg, _Atomic uint32_t *lock, uint32_t dead) {
    uint32_t expect = dead;
    /* Acquire on success, though the dead holder never released: its stores are
     * visible to us because it is dead and reaped (its exit and the supervisor's wait
     * are full barriers in the kernel; the C11 model has no edge for that, the OS
     * supplies it). The CAS makes one repairer win when two try. */
    return atomic_compare_exchange_strong_explicit(lock, &expect, seg->writer,
                                                   memory_order_acquire,
                                                   memory_order_relaxed);
}

void petra_set_wait(petra_seg_t *seg, int64_t wait_ns) {
    seg->wait_ns = wait_ns > 0 ? wait_ns : 0;
}

int petra_lock_stats(const petra_seg_t *seg, petra_lock_stats_t *out) {
    *out = seg->lock_stats;
    return PETRA_OK;
}

/* Finish everything a dead writer was inside of. The caller must know the process is
 * dead (the supervisor calls it after reaping the child): only then is nobody going
 * to store into those objects again, and we may finish them ourselves. Each object is
 * taken over with a CAS from the dead pid to ours, so two repairers never both act. */
int64_t petra_repair_dead(petra_seg_t *seg, uint32_t dead_pid, petra_repair_t *out) {
    if (seg->readonly) return PETRA_EINVAL;
    if (dead_pid == 0 || dead_pid >= PETRA_HB_CLAIMING) return PETRA_EINVAL;
    petra_repair_t r;
    memset(&r, 0, sizeof r);
    r.slots = petra__repair_slots(seg, dead_pid, &r.slots_torn);
    r.entries = petra__repair_journal(seg, dead_pid);
    r.stats = petra__repair_stats(seg, dead_pid);
    r.heartbeats = petra__repair_heartbeats(seg, dead_pid);
    if (out) *out = r;
    return (int64_t)(r.slots + r.entries + r.stats + r.heartbeats);
}

/* The supervisor's name for it (kept): repairs everything, returns the slots. */
int64_t petra_repair_writer(petra_seg_t *seg, uint32_t dead_writer) {
    petra_repair_t r;
    int64_t rc = petra_repair_dead(seg, dead_writer, &r);
    return rc < 0 ? rc : (int64_t)r.slots;
}

int petra_debug_stage(petra_seg_t *seg, int kind, uint32_t index, int stage) {
    if (seg->readonly) return PETRA_EINVAL;
    if (stage < PETRA_STAGE_LOCKED || stage > PETRA_STAGE_LEAVE) return PETRA_EINVAL;
    if (stage == PETRA_STAGE_LEAVE && kind != PETRA_DBG_SLOT) return PETRA_EINVAL;
    switch (kind) {
    case PETRA_DBG_SLOT: return petra__debug_slot(seg, index, stage);
    case PETRA_DBG_ENTRY: return petra__debug_entry(seg, stage);
    case PETRA_DBG_STATS: return petra__debug_stats(seg, stage);
    case PETRA_DBG_HB: return petra__debug_hb(seg);
    default: return PETRA_EINVAL;
    }
}
