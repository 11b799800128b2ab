"""Every journal entry carries the substatus written with its value.

A consumer used to read the substatus from the slot after the fact, which could belong
to a newer write (a SCAN_DOWN mark followed by the restarted scan's GOOD value, or a
driver's own write). These tests write through every path that sets a substatus and
check the entry itself: ``write``/``write_index`` with a substatus, the repair of a
writer killed inside a slot (WRITER_DIED), the supervisor's SCAN_DOWN marks; and that
a driver's :class:`WriteFollower` skips a mark whatever the slot holds by the time it
polls. Deterministic: writer ids are set by hand, the dead writer is a reaped child.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator

import numpy as np
import pytest

from petra._core import lib
from petra.drivers._common import WriteFollower
from petra.shm import (
    JournalBatch,
    JournalConsumer,
    Quality,
    Segment,
    SignalDef,
    SignalType,
    Substatus,
    unlink_instance,
)
from petra.supervisor._scan_down import ScanDownMarker

SIGNALS = [SignalDef("f", SignalType.FLOAT), SignalDef("i", SignalType.INT),
           SignalDef("b", SignalType.BOOL)]
SCAN, SUPERVISOR, DRIVER = 1001, 1002, 4242


@pytest.fixture
def seg() -> Iterator[Segment]:
    s = Segment.create(f"jsub-{uuid.uuid4().hex[:10]}", SIGNALS, journal_capacity=64)
    yield s
    unlink_instance(s.instance)
    s.close()


def _entries(batch: JournalBatch) -> list[tuple[int, int, int, int]]:
    """(slot, quality, substatus, writer) of each entry."""
    return list(zip(batch.slot.tolist(), batch.quality.tolist(), batch.substatus.tolist(),
                    batch.writer.tolist(), strict=True))


def test_each_write_path_journals_its_substatus(seg: Segment) -> None:
    cons = JournalConsumer(seg)
    seg._set_writer(SCAN)
    seg.write("f", 1.5, Quality.BAD, 0, Substatus.NOT_CONNECTED)
    seg.write_index(1, 7, Quality.UNCERTAIN, 0, Substatus.OUT_OF_RANGE)
    seg.write_index(2, True)  # the fast path: no substatus
    seg.write_batch_f64(None, np.array([2.5, 8.0, 0.0]))  # batch writes set none
    got = cons.read()
    assert _entries(got) == [
        (0, Quality.BAD, Substatus.NOT_CONNECTED, SCAN),
        (1, Quality.UNCERTAIN, Substatus.OUT_OF_RANGE, SCAN),
        (2, Quality.GOOD, Substatus.NONE, SCAN),
        (0, Quality.GOOD, Substatus.NONE, SCAN),
        (1, Quality.GOOD, Substatus.NONE, SCAN),
        (2, Quality.GOOD, Substatus.NONE, SCAN),
    ]
    kept = got.copy()
    seg.write("f", 3.0, Quality.BAD, 0, Substatus.DEVICE_FAILURE)
    later = cons.read()
    assert kept.substatus.tolist()[0] == Substatus.NOT_CONNECTED, "copy() keeps its own"
    assert _entries(later) == [(0, Quality.BAD, Substatus.DEVICE_FAILURE, SCAN)]


def test_a_repaired_slot_journals_writer_died(seg: Segment) -> None:
    seg.write("i", 41, Quality.GOOD)
    cons = JournalConsumer(seg)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.close(r)
            child = Segment.attach(seg.instance)
            child._debug_stage(lib.PETRA_DBG_SLOT, lib.PETRA_STAGE_ODD, "i")
            os.write(w, b"k")
            os.kill(os.getpid(), signal.SIGKILL)
        finally:
            os._exit(3)
    os.close(w)
    assert os.read(r, 1) == b"k"
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status)
    assert seg.repair_dead(pid).slots_torn == 1
    seg.write("i", 42, Quality.GOOD)  # the slot moves on before the consumer looks
    entries = [e for e in _entries(cons.read()) if e[0] == 1]
    assert entries == [(1, Quality.BAD, Substatus.WRITER_DIED, os.getpid()),
                       (1, Quality.GOOD, Substatus.NONE, os.getpid())]


def test_scan_down_marks_are_journalled_as_marks(seg: Segment) -> None:
    seg._set_writer(SCAN)
    seg.write("f", 12.5, Quality.GOOD)
    seg.write("b", True, Quality.GOOD)
    cons = JournalConsumer(seg)
    seg._set_writer(SUPERVISOR)
    ScanDownMarker(seg, "bad").scan_down([0, 2])
    seg._set_writer(SCAN)  # the restarted scan rewrites both before anyone reads
    seg.write("f", 13.0, Quality.GOOD)
    seg.write("b", False, Quality.GOOD)
    assert _entries(cons.read()) == [
        (0, Quality.BAD, Substatus.SCAN_DOWN, SUPERVISOR),
        (2, Quality.BAD, Substatus.SCAN_DOWN, SUPERVISOR),
        (0, Quality.GOOD, Substatus.NONE, SCAN),
        (2, Quality.GOOD, Substatus.NONE, SCAN),
    ]


def test_resync_pending_slot_is_delivered_with_its_substatus(seg: Segment) -> None:
    seg.write("i", 5, Quality.UNCERTAIN, 0, Substatus.LAST_KNOWN)
    cons = JournalConsumer(seg)
    cons._pending = [1]  # as resync leaves a slot it could not read yet
    assert _entries(cons.read()) == [(1, Quality.UNCERTAIN, Substatus.LAST_KNOWN,
                                      os.getpid())]


def test_follower_skips_a_mark_the_slot_no_longer_shows(seg: Segment) -> None:
    """The mark's slot is rewritten GOOD by another writer (here the driver itself,
    whose own entries the follower skips) before the follower polls: reading the slot
    then said "not a mark", and the SCAN_DOWN value went to the device as a command."""
    seg._set_writer(SCAN)
    seg.write("f", 3.0, Quality.GOOD)
    follower = WriteFollower(seg, [0], own_writer=DRIVER)
    seg._set_writer(SUPERVISOR)
    ScanDownMarker(seg, "uncertain").scan_down([0])
    seg._set_writer(DRIVER)
    seg.write("f", 9.0, Quality.GOOD)  # the driver's read-back of the output
    assert seg.read("f").substatus == Substatus.NONE
    assert follower.poll() == {}, "a SCAN_DOWN mark was sent to the device"
    seg._set_writer(SCAN)  # the restarted scan's command still goes out
    seg.write("f", 4.0, Quality.UNCERTAIN)
    assert follower.poll() == {0: 4.0}
