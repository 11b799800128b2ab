"""A writer killed inside its write section: readers report busy (never hang), batch
reads keep the last value, other slots work, and ``repair_writer`` restores the slot."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator

import numpy as np
import pytest

from petra.errors import SignalBusyError
from petra.shm import (
    JournalConsumer,
    Quality,
    Segment,
    SignalDef,
    SignalType,
    Substatus,
    unlink_instance,
)

pytestmark = pytest.mark.stress

SIGNALS = [SignalDef("a", SignalType.FLOAT), SignalDef("b", SignalType.INT),
           SignalDef("c", SignalType.BOOL)]


@pytest.fixture
def seg() -> Iterator[Segment]:
    s = Segment.create(f"dead-{uuid.uuid4().hex[:10]}", SIGNALS, journal_capacity=256)
    yield s
    unlink_instance(s.instance)
    s.close()


def _kill_writer_mid_write(instance: str, name: str) -> int:
    """Fork a child that attaches, enters ``name``'s write section and SIGKILLs itself
    there. Returns the dead child's pid."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            child = Segment.attach(instance)
            child._debug_begin_write(name)
            os.kill(os.getpid(), signal.SIGKILL)
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    return pid


def test_dead_writer_busy_then_repaired(seg: Segment) -> None:
    seg.write("a", 1.5)
    seg.write("b", 41)
    seg.write("c", True)
    last = seg.read_batch()
    cons = JournalConsumer(seg)
    dead = _kill_writer_mid_write(seg.instance, "b")

    # Readers get busy, not a hang: in this process...
    with pytest.raises(SignalBusyError):
        seg.read("b")
    with pytest.raises(SignalBusyError):
        seg.get("b")
    # ...and in another one (a fresh interpreter, bounded by a timeout).
    code = (
        "from petra.errors import SignalBusyError\n"
        "from petra.shm import Segment\n"
        f"s = Segment.attach({seg.instance!r}, readonly=True)\n"
        "try:\n    s.get('b')\nexcept SignalBusyError:\n    print('busy')\n"
        "print(s.get('a'), s.read_batch().busy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.split() == ["busy", "1.5", "1"]

    # Batch reads count it busy and keep the last good value in the reused output.
    got = seg.read_batch(out=last)
    assert got.busy == 1
    assert int(got.values[1]) == 41
    vals, _, busy = seg.read_batch_f64()
    assert busy == 1 and vals[0] == 1.5
    # Writers cannot enter it either (bounded too); other slots work.
    with pytest.raises(SignalBusyError):
        seg.write("b", 1)
    assert seg.write_batch_f64(None, np.array([2.5, 7.0, 0.0])) == 2
    seg.write("a", 3.5)
    assert seg.get("a") == 3.5
    assert seg.get("c") is False

    # Repair: only the dead writer's slots, and only once.
    assert seg.repair_writer(dead + 1 if dead + 1 != os.getpid() else dead + 2) == 0
    assert seg.repair_writer(dead) == 1
    assert seg.repair_writer(dead) == 0
    sample = seg.read("b")
    assert sample.quality is Quality.BAD
    assert sample.substatus is Substatus.WRITER_DIED
    assert sample.writer == os.getpid()  # the repairer finished the section
    # The repair is journalled, after the writes that happened while the slot was stuck.
    batch = cons.read()
    assert list(batch.slot) == [0, 2, 0, 1]
    assert int(batch.quality[-1]) == int(Quality.BAD)
    assert int(batch.writer[-1]) == os.getpid()
    assert cons.lost == 0

    # Writes work again and the slot is good.
    seg.write("b", 42)
    sample = seg.read("b")
    assert (sample.value, sample.quality, sample.substatus) == (42, Quality.GOOD,
                                                                 Substatus.NONE)
    assert seg.read_batch().busy == 0


def test_repair_leaves_live_writers_alone(seg: Segment) -> None:
    dead = _kill_writer_mid_write(seg.instance, "a")
    # This process holds "c" (alive): repairing the dead pid must not touch it.
    seg._debug_begin_write("c")
    assert seg.repair_writer(dead) == 1
    assert seg.read("a").substatus is Substatus.WRITER_DIED
    seg.set_retry_limit(4)
    with pytest.raises(SignalBusyError):
        seg.read("c")
    assert seg.repair_writer(os.getpid()) == 1
    assert seg.read("c").quality is Quality.BAD
