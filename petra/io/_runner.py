"""Running one connected process (a driver or a sink) against a running instance.

``run_process(make, instance, role)`` attaches the segment, claims a heartbeat record,
runs the object's asyncio loop until SIGTERM or SIGINT, and releases everything. It
returns the exit status the supervisor acts on: 0 for a clean stop, 1 when the
process failed (a task raised, the segment is gone): the heartbeat says FAILED and the
supervisor restarts the process with backoff.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable, Sequence
from typing import Protocol

from petra.errors import PetraError
from petra.io._process import describe
from petra.shm import HeartbeatHandle, ProcessState, Segment

log = logging.getLogger("petra.io")


class Runnable(Protocol):
    """What the runner needs from a driver or sink object."""

    def attach_heartbeat(self, hb: HeartbeatHandle) -> None: ...

    async def run(self, stop: asyncio.Event) -> None: ...


def setup_logging(level: str = "info", role: str = "io") -> None:
    """One line per event on stderr (``petra.logs``), unless logging is configured."""
    if not logging.getLogger().handlers:
        from petra.logs import setup_logging as petra_logging

        petra_logging(level, role)


def set_cpus(cpus: Sequence[int] | None) -> None:
    """Pin this process (drivers never run on the scan's CPU; the supervisor says where)."""
    if cpus:
        os.sched_setaffinity(0, set(cpus))


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def run_process(make: Callable[[Segment], Runnable], instance: str, role: str,
                cpus: Sequence[int] | None = None, log_level: str = "info") -> int:
    """Attach, register the heartbeat, run until SIGTERM/SIGINT, clean up."""
    setup_logging(log_level, role)
    set_cpus(cpus)
    seg = Segment.attach(instance)
    hb: HeartbeatHandle | None = None
    try:
        obj = make(seg)
        hb = HeartbeatHandle(seg, role, os.getpid(), cpu=min(cpus) if cpus else 0)
        obj.attach_heartbeat(hb)

        async def _main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            log.info("event=start role=%s pid=%d instance=%s", role, os.getpid(), instance)
            await obj.run(stop)
            log.info("event=stop role=%s pid=%d", role, os.getpid())

        try:
            asyncio.run(_main())
        except Exception as exc:  # a task of the process died: say so and exit non-zero
            for leaf in _leaves(exc):
                log.error("event=process_failed role=%s pid=%d error=%s", role, os.getpid(),
                          describe(leaf), exc_info=not isinstance(leaf, PetraError))
            if hb is not None:
                hb.beat(ProcessState.FAILED)
            return 1
        return 0
    finally:
        if hb is not None:
            hb.release()
        seg.close()
