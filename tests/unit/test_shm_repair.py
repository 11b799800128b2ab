"""A writer killed at each stage of each kind of section, and the repair that follows.

Every object a writer can be inside of (slot, journal entry, stats block, heartbeat
record) has a lock word naming its holder; a child process stops at a chosen stage
(``Segment._debug_stage``) and SIGKILLs itself there. Checked for each: what readers
and writers see meanwhile (busy only where the data may be torn; writers fail at once,
counted as a dead holder), and that ``repair_dead(pid)`` leaves the object usable.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from petra._core import lib
from petra.errors import SegmentFullError, SignalBusyError
from petra.shm import (
    HeartbeatHandle,
    JournalConsumer,
    Quality,
    Segment,
    SignalDef,
    SignalType,
    StatsWriter,
    Substatus,
    read_heartbeats,
    read_stats,
    unlink_instance,
)

SIGNALS = [SignalDef("a", SignalType.FLOAT), SignalDef("b", SignalType.INT),
           SignalDef("c", SignalType.BOOL)]
LOCKED, ODD, EVEN = lib.PETRA_STAGE_LOCKED, lib.PETRA_STAGE_ODD, lib.PETRA_STAGE_EVEN
STAGES = {"locked": LOCKED, "odd": ODD, "even": EVEN}
WAIT_S = 5.0  # the writers' budget for a live holder in these tests
QUICK_S = 2.5  # "did not wait for it", with room for a loaded machine's scheduling


@pytest.fixture
def seg() -> Iterator[Segment]:
    s = Segment.create(f"rep-{uuid.uuid4().hex[:10]}", SIGNALS, journal_capacity=8,
                       heartbeats=2)
    s.set_write_wait(WAIT_S)  # long: a test that gives up sooner saw no waiting
    yield s
    unlink_instance(s.instance)
    s.close()


def _die_in(instance: str, act: Callable[[Segment], object], *, reap: bool = True) -> int:
    """Fork a child that attaches, runs ``act`` (which stops half-way inside something)
    and SIGKILLs itself. Returns its pid (reaped unless ``reap`` is False)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.close(r)
            child = Segment.attach(instance)
            act(child)
            os.write(w, b"k")
            os.kill(os.getpid(), signal.SIGKILL)
        finally:
            os._exit(3)
    os.close(w)
    assert os.read(r, 1) == b"k"
    os.close(r)
    if reap:
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    else:
        deadline = time.monotonic() + 10
        while lib.petra_holder_state(pid) != lib.PETRA_HOLDER_DEAD:
            assert time.monotonic() < deadline
            time.sleep(0.001)
    return pid


# ------------------------------------------------------------------ slots
@pytest.mark.parametrize("stage", list(STAGES))
def test_slot_killed_at_each_stage(seg: Segment, stage: str) -> None:
    seg.write("b", 41, Quality.UNCERTAIN)
    cons = JournalConsumer(seg)
    dead = _die_in(seg.instance, lambda s: s._debug_stage(lib.PETRA_DBG_SLOT, STAGES[stage],
                                                          "b"))
    assert seg.slot_holder("b") == dead
    # Readers: busy only while the fields may be torn (the odd stage).
    if stage == "odd":
        with pytest.raises(SignalBusyError):
            seg.read("b")
    else:
        assert seg.get("b") == 41
    # Writers fail at once (no waiting for the dead), naming the holder.
    t0 = time.monotonic()
    with pytest.raises(SignalBusyError, match=f"held by pid {dead}, dead"):
        seg.write("b", 1)
    w = seg.write_batch_f64(None, np.array([1.5, 2.0, 1.0]))
    assert w == 2 and w.failed.tolist() == [1]
    assert time.monotonic() - t0 < QUICK_S, "a writer waited for a dead holder"
    assert seg.lock_stats().busy_dead == 2
    # Other slots are untouched; repair frees exactly this one.
    assert seg.get("a") == 1.5
    rep = seg.repair_dead(dead)
    assert (rep.slots, rep.slots_torn, rep.entries, rep.stats, rep.heartbeats) == (
        1, 1 if stage == "odd" else 0, 0, 0, 0)
    assert seg.slot_holder("b") == 0
    assert seg.repair_dead(dead).total == 0
    sample = seg.read("b")
    if stage == "odd":
        assert (sample.quality, sample.substatus) == (Quality.BAD, Substatus.WRITER_DIED)
        assert sample.writer == os.getpid()
    else:
        # Killed before touching the data, or after finishing it: consistent as it is.
        assert (sample.value, sample.quality) == (41, Quality.UNCERTAIN)
    seg.write("b", 42)
    assert seg.read("b")[:2] == (42, Quality.GOOD)
    batch = cons.read()
    slots = batch.slot.tolist()
    assert slots == ([0, 2, 1, 1] if stage == "odd" else [0, 2, 1])
    assert cons.lost == 0


def test_unreaped_dead_holder_counts_as_dead(seg: Segment) -> None:
    """A zombie (exited, not yet reaped) can never leave its section: no waiting."""
    dead = _die_in(seg.instance, lambda s: s._debug_stage(lib.PETRA_DBG_SLOT, ODD, "a"),
                   reap=False)
    try:
        t0 = time.monotonic()
        with pytest.raises(SignalBusyError, match="dead"):
            seg.write("a", 1.0)
        assert time.monotonic() - t0 < QUICK_S
    finally:
        os.waitpid(dead, 0)
    assert seg.repair_dead(dead).slots_torn == 1


def test_live_and_stopped_holders(seg: Segment) -> None:
    """A live holder is waited for (up to the budget); a stopped one is not."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            child = Segment.attach(seg.instance)
            child._debug_stage(lib.PETRA_DBG_SLOT, LOCKED, "c")
            os.write(w, b"k")
            time.sleep(60)
        finally:
            os._exit(3)
    try:
        assert os.read(r, 1) == b"k"
        seg.set_write_wait(0.2)
        t0 = time.monotonic()
        with pytest.raises(SignalBusyError, match=f"held by pid {pid}, alive"):
            seg.write("c", True)
        assert 0.15 < time.monotonic() - t0 < 5
        assert seg.lock_stats().busy_live == 1
        os.kill(pid, signal.SIGSTOP)
        deadline = time.monotonic() + 10
        while lib.petra_holder_state(pid) != lib.PETRA_HOLDER_STOPPED:
            assert time.monotonic() < deadline
            time.sleep(0.001)
        seg.set_write_wait(WAIT_S)
        t0 = time.monotonic()
        with pytest.raises(SignalBusyError, match="stopped"):
            seg.write("c", True)
        assert time.monotonic() - t0 < QUICK_S
        assert seg.lock_stats().busy_stopped == 1
        os.kill(pid, signal.SIGCONT)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(r)
        os.close(w)
    assert seg.repair_dead(pid).slots == 1
    seg.write("c", True)
    assert seg.get("c") is True


def test_repair_takes_only_the_dead_writers_objects(seg: Segment) -> None:
    dead = _die_in(seg.instance, lambda s: s._debug_stage(lib.PETRA_DBG_SLOT, ODD, "a"))
    seg._debug_stage(lib.PETRA_DBG_SLOT, ODD, "c")  # this live process holds "c"
    assert seg.repair_dead(dead).slots == 1
    assert seg.slot_holder("c") == os.getpid()
    seg.set_retry_limit(4)
    with pytest.raises(SignalBusyError):
        seg.read("c")
    assert seg.repair_dead(os.getpid()).slots == 1
    assert seg.read("c").quality is Quality.BAD


# ------------------------------------------------------------------ journal entries
@pytest.mark.parametrize("stage", list(STAGES))
def test_entry_killed_at_each_stage(seg: Segment, stage: str) -> None:
    cons = JournalConsumer(seg, stall_timeout_s=30)  # a stall would fail the test
    seg.write("a", 1.0)
    dead = _die_in(seg.instance, lambda s: s._debug_stage(lib.PETRA_DBG_ENTRY, STAGES[stage]))
    seg.write("a", 2.0)
    # Stops at the dead producer's position, unless it had published it (the even
    # stage: the entry is complete, only its lock word was left taken).
    assert len(cons.read()) == (3 if stage == "even" else 1)
    # A full lap later the same ring entry comes round again: it is held, so the
    # producer there drops its entry (never waits) and the drop is counted.
    drops = seg.info().producer_drops
    for k in range(8):
        seg.write("b", k)
    assert seg.info().producer_drops == drops + 1
    rep = seg.repair_dead(dead)
    assert rep.entries == 1 and rep.slots == 0
    # After repair that entry is free again: the next lap fills it.
    drops = seg.info().producer_drops
    for k in range(8):
        seg.write("b", 100 + k)
    assert seg.info().producer_drops == drops
    # The consumer was lapped meanwhile; every position is accounted for.
    while len(cons.read()):
        pass
    head = seg.info().journal_head
    assert cons.position == head
    assert cons.received + cons.lost == head - 0


def test_void_entry_is_lost_at_once_not_stalled(seg: Segment) -> None:
    cons = JournalConsumer(seg, stall_timeout_s=30)
    dead = _die_in(seg.instance, lambda s: s._debug_stage(lib.PETRA_DBG_ENTRY, ODD))
    seg.write("a", 3.0)
    assert len(cons.read()) == 0  # waiting at the dead producer's position
    assert seg.repair_dead(dead).entries == 1
    batch = cons.read()  # the VOID entry is counted lost without waiting 30 s
    assert batch.slot.tolist() == [0] and batch.decoded() == [3.0]
    assert (cons.received, cons.lost) == (1, 1)


def test_a_dead_claim_costs_one_stall_not_one_per_position(seg: Segment) -> None:
    """Positions claimed but never locked (killed between claim and entry): the
    consumer waits once, then skips every position claimed before its wait began."""
    cons = JournalConsumer(seg, stall_timeout_s=0.05)
    h = seg.handle
    for _ in range(3):  # three claimed positions nobody will ever fill
        assert lib.petra_debug_stage(h, lib.PETRA_DBG_ENTRY, 0, LOCKED) == 0
    # Free the three entry locks as a repair would (our own pid) but leave them
    # unpublished: the positions stay claimed and empty.
    assert seg.repair_dead(os.getpid()).entries == 3
    seg.write("a", 4.0)
    assert len(cons.read()) == 0
    time.sleep(0.06)
    batch = cons.read()
    assert batch.decoded() == [4.0]
    assert (cons.received, cons.lost) == (1, 3)


# ------------------------------------------------------------------ stats and heartbeats
@pytest.mark.parametrize("stage", list(STAGES))
def test_stats_writer_killed_at_each_stage(seg: Segment, stage: str) -> None:
    w = StatsWriter(seg, 1_000_000)
    w.record(5_000, 1_000)
    dead = _die_in(seg.instance, lambda s: s._debug_stage(lib.PETRA_DBG_STATS, STAGES[stage]))
    if stage == "odd":
        with pytest.raises(SignalBusyError):
            read_stats(seg)
    w.record(6_000, 1_000)  # skipped (the block is held): the scan never waits
    rep = seg.repair_dead(dead)
    assert rep.stats == 1
    st = read_stats(seg)
    assert st.cycles in (1, 2)  # one half-applied update may remain
    w.record(7_000, 1_000)
    assert read_stats(seg).cycles == st.cycles + 1
    StatsWriter(seg, 2_000_000)  # a restarted scan can reset it
    assert read_stats(seg).period_ns == 2_000_000


def test_heartbeat_claimer_killed_while_claiming(seg: Segment) -> None:
    HeartbeatHandle(seg, "scan", pid=os.getpid())
    dead = _die_in(seg.instance, lambda s: s._debug_stage(lib.PETRA_DBG_HB, LOCKED))
    assert [hb.role for hb in read_heartbeats(seg)] == ["scan"]  # claiming: not shown
    with pytest.raises(SegmentFullError):  # but taken: 2 records, both in use
        HeartbeatHandle(seg, "driver:x", pid=4242)
    assert seg.repair_dead(dead).heartbeats == 1
    hb = HeartbeatHandle(seg, "driver:x", pid=4242)
    assert hb.record == 1


def test_repair_frees_a_dead_process_heartbeat(seg: Segment) -> None:
    dead = _die_in(seg.instance, lambda s: HeartbeatHandle(s, "sink:x", pid=os.getpid()))
    assert [hb.pid for hb in read_heartbeats(seg)] == [dead]
    rep = seg.repair_dead(dead)
    assert rep.heartbeats == 1 and rep.total == 1
    assert read_heartbeats(seg) == []


def test_repair_refuses_bad_pids(seg: Segment) -> None:
    for bad in (0, -1, 2**31, True):
        with pytest.raises(ValueError):
            seg.repair_dead(bad)
