"""The connected-process base: structured concurrency, state and bounded logging."""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest

from petra.io import ConnectedProcess, IoLimits, RateLimitedLog, run_process
from petra.io._telemetry import RATE_LOG_MAX_KEYS
from petra.shm import HeartbeatHandle, ProcessState, Segment, read_heartbeats
from petra.types import ConnState, SignalDef, SignalType

FAST = IoLimits(backoff_initial_s=0.01, backoff_max_s=0.02, heartbeat_period_s=0.01)


@pytest.fixture
def seg() -> Iterator[Segment]:
    s = Segment.create(f"t-{uuid.uuid4().hex[:12]}", [SignalDef("a", SignalType.FLOAT)])
    try:
        yield s
    finally:
        s.close()
        s.unlink()


class BoomError(RuntimeError):
    pass


class Proc(ConnectedProcess):
    """Connects at once and holds the connection; its one background task can fail."""

    def __init__(self, seg: Segment, fail_after: float | None) -> None:
        super().__init__("t", seg, FAST)
        self.fail_after = fail_after
        self.closed = 0

    async def _connect(self) -> None:
        return None

    async def _session(self, stop: asyncio.Event) -> None:
        await stop.wait()

    async def _close(self) -> None:
        self.closed += 1

    def _background(self, stop: asyncio.Event) -> list[Coroutine[Any, Any, None]]:
        return [self._pump(stop)]

    async def _pump(self, stop: asyncio.Event) -> None:
        if self.fail_after is not None:
            await asyncio.sleep(self.fail_after)
            raise BoomError("pump died")
        await stop.wait()


def test_a_failing_background_task_ends_the_whole_process(seg: Segment) -> None:
    proc = Proc(seg, fail_after=0.05)
    hb = HeartbeatHandle(seg, "driver:t", os.getpid())
    proc.attach_heartbeat(hb)
    stop = asyncio.Event()

    async def main() -> None:
        await asyncio.wait_for(proc.run(stop), timeout=5)

    with pytest.raises(ExceptionGroup) as info:
        asyncio.run(main())
    assert info.group_contains(BoomError)
    assert stop.is_set()
    assert proc.closed >= 1  # the connection was closed on the way out
    assert proc.tm.state == ConnState.DISCONNECTED
    (beat,) = [b for b in read_heartbeats(seg) if b.role == "driver:t"]
    assert beat.state != ProcessState.RUNNING
    hb.release()


def test_a_clean_stop_ends_every_task(seg: Segment) -> None:
    proc = Proc(seg, fail_after=None)
    stop = asyncio.Event()

    async def main() -> None:
        task = asyncio.create_task(proc.run(stop))
        await asyncio.sleep(0.05)
        assert proc.tm.state == ConnState.UP
        stop.set()
        await asyncio.wait_for(task, timeout=5)
        assert not [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]

    asyncio.run(main())


def test_run_process_exits_1_when_a_task_dies(seg: Segment,
                                              caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="petra.io"):
        rc = run_process(lambda s: Proc(s, fail_after=0.02), seg.instance, "driver:t")
    assert rc == 1
    assert any("event=process_failed role=driver:t" in r.getMessage() for r in caplog.records)
    assert not [b for b in read_heartbeats(seg) if b.role == "driver:t"]  # record freed


def test_rate_limited_log_table_is_bounded(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    rlog = RateLimitedLog(logging.getLogger("petra.test"), 10.0, lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="petra.test"):
        for i in range(20_000):
            rlog(logging.WARNING, f"topic/{i}", "event=x n=%d", i)
    assert len(rlog._last) <= RATE_LOG_MAX_KEYS + 1
    assert len(caplog.records) <= RATE_LOG_MAX_KEYS + 1
