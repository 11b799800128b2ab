"""Preparing a process for real-time work: CPU pinning, SCHED_FIFO, locked memory.

What each step buys on the target boxes (BRIEF section 4): SCHED_FIFO is what
protects the scan against load; mlockall keeps page faults off the loop; timer slack
of 1 ns and a /dev/cpu_dma_latency hold cut idle wake-up latency; a frozen, disabled
garbage collector keeps Python from pausing the loop. In ``rt`` mode a missing
privilege is a refusal to start (:class:`RealTimeError`), never a warning: a PLC that
silently runs without real-time guarantees is worse than one that does not start.
"""

from __future__ import annotations

import gc
import logging
import os
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


@dataclass(slots=True)
class RtState:
    """What was actually obtained, for logs, petra-top and doctor."""

    cpu: int | None = None
    fifo: bool = False
    mlocked: bool = False
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
            _core.mlockall()
            state.mlocked = True
        except OSError as exc:
            _fail_or_note(state, settings.require,
                          f"mlockall failed ({exc.strerror}); raise RLIMIT_MEMLOCK for petra")
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
