"""Preparing a process for real-time work: CPU pinning, SCHED_FIFO, locked memory.

What each step buys on the target boxes (BRIEF section 4): SCHED_FIFO is what
protects the scan against load; mlockall keeps page faults off the loop; timer slack
of 1 ns and a /dev/cpu_dma_latency hold cut idle wake-up latency; a frozen, disabled
garbage collector keeps Python from pausing the loop. In ``rt`` mode a missing
privilege is a refusal to start (:class:`RealTimeError`), never a warning: a PLC that
silently runs without real-time guarantees is worse than one that does not start.

Locking memory, and what is left out
------------------------------------
The promise is that the loop never takes a page fault. ``mlockall(MCL_CURRENT |
MCL_FUTURE)`` keeps it by brute force: it populates and pins every mapping the process
has, including memory nothing will ever touch. In a Python process with numpy that is
most of it: OpenBLAS maps a 32 MB work buffer per BLAS thread at load time and never
touches it unless asked for linear algebra, its 22 MB of code are never run by the
scan, and each thread stack is 8 MB. Locked, all of that becomes resident: the scan
held 150 MB before this was measured and changed.

So :func:`lock_memory` locks explicitly: ``mlockall(MCL_FUTURE)`` first (every mapping
made later, a heap that grows, a program compiled by a reload, is populated and pinned
when it is made, as before), then ``mlock`` of every current mapping except

- the code and data of the BLAS libraries numpy links (OpenBLAS, gfortran, quadmath,
  MKL): the scan runs no linear algebra; its numpy use is element-wise and indexing;
- anonymous mappings of 1 MB or more in which not one page has been touched yet
  (``mincore``): reservations such as the BLAS work buffer. Everything the loop uses
  was written when it was built (the process image, the compiled program), and the
  threshold is above any array the scan itself allocates for 100k signals.

Everything else, interpreter and C core, numpy's own code, the heap and the stacks, the
shared segment, is populated and pinned as before, so the hot path stays free of
faults. A custom block that calls BLAS (``np.dot``, ``@``) would fault the first time
it does; linear algebra does not belong in a 1 ms cycle anyway. ``MCL_ONFAULT`` was
measured and not used: it leaves pages the loop has not touched yet to fault on first
use, and the size it books in ``VmLck`` (what ``RLIMIT_MEMLOCK`` limits) is unchanged.

Before locking, :func:`bound_threads` caps what later threads can add: glibc gets at
most two malloc arenas (the main thread keeps its own, so the loop never waits on an
arena lock held by a helper thread; every other thread shares the second), new Python
threads get 1 MB stacks, and the GIL switch interval is 0.2 ms, so a helper thread
running Python hands the interpreter back to the loop quickly. ``OPENBLAS_NUM_THREADS=1``
must be set before numpy is imported (``petra scan`` and the supervisor's child
environment do), so OpenBLAS starts no thread and maps one buffer, not one per CPU.
"""

from __future__ import annotations

import ctypes
import errno
import gc
import logging
import os
import resource
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from petra import _core
from petra.errors import RealTimeError

log = logging.getLogger("petra.scan.rt")


@dataclass(frozen=True, slots=True)
class RtSettings:
    cpu: int | None = None
    policy: str = "other"        # "other" | "fifo"
    priority: int = 80
    require: bool = False        # rt mode: refuse to start without fifo + mlockall
    cpu_dma_latency: bool = True
    lock_memory: bool = True


@dataclass(frozen=True, slots=True)
class LockReport:
    """What :func:`lock_memory` pinned and what it left out, in bytes."""

    locked: int = 0
    skipped_libraries: int = 0
    skipped_untouched: int = 0
    failed: tuple[str, ...] = ()


@dataclass(slots=True)
class RtState:
    """What was actually obtained, for logs, petra-top and doctor."""

    cpu: int | None = None
    fifo: bool = False
    mlocked: bool = False
    lock: LockReport | None = None
    dma_fd: int = -1
    notes: list[str] = field(default_factory=list)

    def release(self) -> None:
        if self.dma_fd >= 0:
            _core.dma_latency_release(self.dma_fd)
            self.dma_fd = -1
        gc.unfreeze()
        gc.enable()


def _fail_or_note(state: RtState, require: bool, what: str) -> None:
    if require:
        raise RealTimeError(f"real-time mode: {what}")
    state.notes.append(what)
    log.warning("event=rt_degraded detail=%r", what)


def apply(settings: RtSettings) -> RtState:
    """Apply the settings to this process. Call once, before the first cycle."""
    state = RtState()
    if settings.cpu is not None:
        try:
            os.sched_setaffinity(0, {settings.cpu})
            state.cpu = settings.cpu
        except OSError as exc:
            _fail_or_note(state, settings.require, f"cannot pin to CPU {settings.cpu}: {exc}")
    if settings.policy == "fifo":
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(settings.priority))
            state.fifo = True
        except OSError as exc:
            _fail_or_note(state, settings.require,
                          f"SCHED_FIFO priority {settings.priority} refused ({exc}); "
                          "grant rtprio to the petra user (limits.conf) or run as root")
    elif settings.require:
        raise RealTimeError("real-time mode needs scan.policy: fifo")
    try:
        _core.set_timerslack(1)
    except OSError as exc:
        state.notes.append(f"timer slack not set ({exc.strerror})")
    if settings.lock_memory:
        try:
            state.lock = lock_memory()
            state.mlocked = True
            if state.lock.failed:
                state.notes.append("not fully populated: " + "; ".join(state.lock.failed[:3]))
        except OSError as exc:
            _fail_or_note(state, settings.require,
                          f"locking memory failed ({exc.strerror}); raise RLIMIT_MEMLOCK for petra")
    _core.prefault_stack(256 * 1024)
    if settings.cpu_dma_latency:
        try:
            state.dma_fd = _core.dma_latency_hold()
        except OSError as exc:
            state.notes.append(f"/dev/cpu_dma_latency not held ({exc.strerror})")
    gc.collect()
    gc.freeze()
    gc.disable()
    return state


# ---------------------------------------------------------------- memory locking
MCL_CURRENT, MCL_FUTURE = 1, 2
M_ARENA_MAX = -8                # mallopt parameter (glibc malloc.h)
MALLOC_ARENAS = 2
THREAD_STACK_BYTES = 1 << 20
SWITCH_INTERVAL_S = 0.0002
UNTOUCHED_MIN_BYTES = 1 << 20
CAP_IPC_LOCK = 14
PAGE = os.sysconf("SC_PAGE_SIZE")
# File names (prefixes) of libraries the scan maps but never runs: numpy's BLAS.
NEVER_RUN = ("libscipy_openblas", "libopenblas", "libgfortran", "libquadmath", "libmkl",
             "libblas", "liblapack")


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mlock.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return libc


def _raise_errno(what: str) -> None:
    err = ctypes.get_errno()
    raise OSError(err, f"{what}: {os.strerror(err)}")


def bound_threads() -> None:
    """Cap malloc arenas and Python thread stacks, and make a helper thread hand the
    GIL back to the loop within 0.2 ms instead of the default 5 ms (while only the loop
    runs Python the interval costs nothing). Call before starting any thread."""
    if _libc().mallopt(M_ARENA_MAX, MALLOC_ARENAS) != 1:
        log.warning("event=rt_degraded detail='mallopt(M_ARENA_MAX) refused'")
    threading.stack_size(THREAD_STACK_BYTES)
    sys.setswitchinterval(SWITCH_INTERVAL_S)


@dataclass(frozen=True, slots=True)
class Region:
    """One line of ``/proc/self/maps``."""

    start: int
    end: int
    perms: str
    path: str

    @property
    def size(self) -> int:
        return self.end - self.start

    @property
    def anonymous(self) -> bool:
        return not self.path or self.path.startswith("[anon:")


def mappings() -> Iterator[Region]:
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split(maxsplit=5)
            lo, hi = parts[0].split("-")
            path = parts[5].strip() if len(parts) > 5 else ""
            yield Region(int(lo, 16), int(hi, 16), parts[1], path)


def _touched(libc: ctypes.CDLL, m: Region) -> bool:
    """Whether any page of ``m`` is resident."""
    n = (m.size + PAGE - 1) // PAGE
    vec = ctypes.create_string_buffer(n)
    if libc.mincore(m.start, m.size, vec) != 0:
        return True  # cannot tell: lock it
    return vec.raw != bytes(n)


def _excluded(libc: ctypes.CDLL, m: Region) -> str | None:
    """Why ``m`` is not locked ("library", "untouched", "special"), or None."""
    if "r" not in m.perms and "w" not in m.perms and "x" not in m.perms:
        return "special"  # guard pages and reservations: nothing to lock
    if m.path.startswith("[") and m.path not in ("[heap]", "[stack]") \
            and not m.path.startswith("[anon:"):
        return "special"  # vdso, vvar, vsyscall: kernel pages
    if m.path and os.path.basename(m.path).startswith(NEVER_RUN):
        return "library"
    if m.anonymous and m.size >= UNTOUCHED_MIN_BYTES and not _touched(libc, m):
        return "untouched"
    return None


def _unlimited_lock() -> bool:
    """Root or CAP_IPC_LOCK: RLIMIT_MEMLOCK does not apply."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_IPC_LOCK & 1)
    except OSError:
        pass
    return os.geteuid() == 0


def lock_memory() -> LockReport:
    """Pin the process's memory as the module essay describes; raises OSError (EPERM,
    ENOMEM) when the locking limit is too small, leaving nothing locked."""
    libc = _libc()
    # MCL_FUTURE first: a mapping made while the current ones are listed is pinned by it.
    if libc.mlockall(MCL_FUTURE) != 0:
        _raise_errno("mlockall")
    plan: list[Region] = []
    skipped = {"library": 0, "untouched": 0, "special": 0}
    for m in mappings():
        why = _excluded(libc, m)
        if why is None:
            plan.append(m)
        else:
            skipped[why] += m.size
    need = sum(m.size for m in plan)
    soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    if soft != resource.RLIM_INFINITY and need > soft and not _unlimited_lock():
        libc.munlockall()
        raise OSError(errno.ENOMEM, f"mlock: {need >> 20} MB to lock, RLIMIT_MEMLOCK "
                                    f"allows {soft >> 20} MB")
    failed: list[str] = []
    for m in plan:
        if libc.mlock(m.start, m.size) != 0:
            err = ctypes.get_errno()
            if err in (errno.EPERM, errno.EAGAIN):
                libc.munlockall()
                raise OSError(err, f"mlock: {os.strerror(err)}")
            # ENOMEM here: the range went away meanwhile (an arena freed) or not every
            # page could be populated (a file mapping past its end). Not fatal; said.
            failed.append(f"{m.path or 'anonymous'} {m.size >> 10} kB: {os.strerror(err)}")
    return LockReport(locked=need, skipped_libraries=skipped["library"],
                      skipped_untouched=skipped["untouched"], failed=tuple(failed))
