"""No gap when a cursor jumps to the head: JournalConsumer.resync and the scan's
journal copy-in keep reading a slot that was busy at the jump until it can be read."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator

import numpy as np
import pytest

from petra._core import ffi, lib
from petra.shm import (
    JournalConsumer,
    Quality,
    Segment,
    SignalDef,
    SignalType,
    Substatus,
    unlink_instance,
)

SIGNALS = [SignalDef("a", SignalType.FLOAT), SignalDef("b", SignalType.INT),
           SignalDef("c", SignalType.FLOAT)]
ODD, LEAVE = lib.PETRA_STAGE_ODD, lib.PETRA_STAGE_LEAVE


@pytest.fixture
def seg() -> Iterator[Segment]:
    s = Segment.create(f"rs-{uuid.uuid4().hex[:10]}", SIGNALS, journal_capacity=64)
    yield s
    unlink_instance(s.instance)
    s.close()


def test_resync_keeps_a_busy_slot_pending_and_delivers_it(seg: Segment) -> None:
    seg.write("b", 7)
    cons = JournalConsumer(seg)
    seg.write("a", 1.0)
    seg._debug_stage(lib.PETRA_DBG_SLOT, ODD, "b")  # a writer (us) stays inside "b"
    snap = cons.resync(wait_s=0.05)
    assert cons.position == seg.info().journal_head
    assert snap.busy == 1 and snap.busy_indices.tolist() == [1]
    assert snap.values.view(np.float64)[0] == 1.0
    assert cons.pending == (1,)
    assert len(cons.read()) == 0  # still busy: nothing to deliver yet
    assert cons.pending == (1,)
    # The section ends (here: repaired): the pending slot is delivered with what the
    # slot now holds, after the ring's own entry for it (a duplicate, never a gap).
    assert seg.repair_dead(os.getpid()).slots_torn == 1
    batch = cons.read()
    assert batch.slot.tolist() == [1, 1]
    assert batch.quality.tolist() == [int(Quality.BAD)] * 2
    assert not cons.pending
    assert cons.received == 1  # the pending delivery is not a ring position
    assert seg.read("b").substatus is Substatus.WRITER_DIED


def test_resync_waits_for_a_live_writer(seg: Segment) -> None:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            child = Segment.attach(seg.instance)
            child._debug_stage(lib.PETRA_DBG_SLOT, ODD, "c")
            os.write(w, b"k")
            time.sleep(0.2)
            child._debug_stage(lib.PETRA_DBG_SLOT, LEAVE, "c")
            time.sleep(60)
        finally:
            os._exit(3)
    try:
        assert os.read(r, 1) == b"k"
        cons = JournalConsumer(seg)
        t0 = time.monotonic()
        snap = cons.resync(wait_s=10)
        assert 0.1 < time.monotonic() - t0 < 10
        assert snap.busy == 0 and not cons.pending
        # The child left 0xDEAD... in "c" and then finished the section: that is its value.
        assert int(snap.values[2]) == 0xDEADDEADDEADDEAD
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(r)
        os.close(w)


def test_scan_copy_in_stays_in_full_mode_until_a_clean_read(seg: Segment) -> None:
    h = seg.handle
    cur = ffi.new("petra_cursor_t *")
    lib.petra_cursor_init(h, cur, 0, 10**9)
    assert cur.flags & lib.PETRA_CUR_NEED_FULL  # a cursor at head has seen nothing yet
    inputs = np.arange(3, dtype=np.uint32)
    is_input = np.array([0b111], np.uint8)  # a bitmap: slots 0, 1, 2
    img = np.zeros(3, np.float64)
    q = np.zeros(3, np.uint8)
    applied, full = ffi.new("int64_t *"), ffi.new("int *")

    def copy_in() -> int:
        return int(lib.petra_scan_copy_in_journal(
            h, cur, ffi.from_buffer("uint8_t[]", is_input), ffi.from_buffer("uint32_t[]", inputs),
            3, ffi.from_buffer("double[]", img), ffi.from_buffer("uint8_t[]", q), applied, full))

    seg.write("a", 5.0)
    seg._debug_stage(lib.PETRA_DBG_SLOT, ODD, "b")
    seg.set_retry_limit(4)
    assert copy_in() == 1  # full read tried, "b" busy: stays in full mode
    assert full[0] == 0 and cur.flags & lib.PETRA_CUR_NEED_FULL
    assert img[0] == 5.0
    assert copy_in() == 1 and cur.flags & lib.PETRA_CUR_NEED_FULL
    seg.repair_dead(os.getpid())
    assert copy_in() == 0 and full[0] == 1
    assert not cur.flags & lib.PETRA_CUR_NEED_FULL
    assert q[1] == int(Quality.BAD)
    seg.write("c", 2.5)  # from now on the journal carries it
    assert copy_in() == 0 and full[0] == 0 and applied[0] == 1 and img[2] == 2.5
