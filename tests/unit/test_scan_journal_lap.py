"""A scan whose copy-in is lapped by the change journal (issue 18): it reads every
input instead (values stay right), counts the lost entries and the episode in its
heartbeat counters, and logs the episode once."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
import pytest

from petra.scan import FakeClock, ScanEngine
from petra.shm import (
    HeartbeatHandle,
    Segment,
    SignalDef,
    SignalType,
    read_heartbeats,
    unlink_instance,
)
from petra.types import ScanCounter

MS = 1_000_000
N_IN = 100


class Program:
    """y = 2 * x99, with x0..x99 all inputs: more inputs than the 64-entry ring."""

    def __init__(self) -> None:
        self.image_size = N_IN + 2
        self.constants = np.array([2.0])
        self.input_signals = np.arange(N_IN, dtype=np.uint32)
        self.output_signals = np.array([N_IN], np.uint32)

    def run(self, img: npt.NDArray[np.float64], quality: npt.NDArray[np.uint8], now_ns: int,
            dt_ns: int, first_scan: bool) -> None:
        img[N_IN] = img[N_IN - 1] * img[N_IN + 1]
        quality[N_IN] = quality[N_IN - 1]


@pytest.fixture
def seg() -> Iterator[Segment]:
    name = f"t-lap-{os.getpid()}"
    unlink_instance(name)
    s = Segment.create(name, [*(SignalDef(f"x{k}", SignalType.FLOAT) for k in range(N_IN)),
                              SignalDef("y", SignalType.FLOAT)], journal_capacity=64)
    yield s
    s.close()
    unlink_instance(name)


def test_lapped_copy_in_is_counted_and_logged_once(seg: Segment,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    hb = HeartbeatHandle(seg, "scan", os.getpid(), 0)
    prog = Program()
    clock = FakeClock(start_ns=0)
    eng = ScanEngine(seg, prog, 100 * MS, clock, heartbeat=hb)
    eng.run(lambda: False, max_cycles=2)  # primed, then one clean full copy-in: now the
    # copy-in follows the journal
    caplog.set_level(logging.WARNING, "petra.scan")
    for episode in range(2):
        # 90 changes in one cycle: fewer than the inputs (so copy-in follows the
        # journal) but more than the ring holds: the oldest 26 are lapped
        for k in range(10, N_IN):
            seg.write(f"x{k}", float(k + 1000 * episode))
        eng.run(lambda: False, max_cycles=eng.counters.cycles + 4)  # beats in between
        assert seg.get("y") == 2.0 * (N_IN - 1 + 1000 * episode)  # the slots were read
    c = eng.counters
    assert c.journal_laps == 2 and c.journal_lost == 2 * (90 - 64)
    mine = next(h for h in read_heartbeats(seg) if h.pid == os.getpid())
    assert mine.counters[ScanCounter.JOURNAL_LAPS] == 2
    assert mine.counters[ScanCounter.JOURNAL_LOST] == c.journal_lost
    lapped = [r for r in caplog.records if "event=journal_lapped" in r.getMessage()]
    assert len(lapped) == 1  # the second episode came within the minute: not logged
    assert "capacity=64" in lapped[0].getMessage()
    hb.release()
