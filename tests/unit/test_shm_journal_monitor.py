"""The change journal (single process), scan statistics and heartbeats."""

from __future__ import annotations

import itertools
import math
import mmap
import os
import struct
import time
import uuid
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from petra._core import ffi, lib
from petra.errors import PetraError, SegmentError, ValueOutOfRangeError
from petra.shm import (
    HeartbeatHandle,
    JournalConsumer,
    ProcessState,
    Quality,
    Segment,
    SignalDef,
    SignalType,
    StatsWriter,
    add_restart,
    hist_percentile_us,
    read_heartbeats,
    read_stats,
    unlink_instance,
)
from petra.shm._monitor import HIST_LEN, hist_bucket, hist_upper_us

SIGNALS = [SignalDef("f", SignalType.FLOAT), SignalDef("i", SignalType.INT),
           SignalDef("b", SignalType.BOOL)]


@pytest.fixture
def seg() -> Iterator[Segment]:
    s = Segment.create(f"t-{uuid.uuid4().hex[:12]}", SIGNALS, journal_capacity=64,
                       heartbeats=3)
    yield s
    unlink_instance(s.instance)
    s.close()


# ------------------------------------------------------------------ journal
def test_journal_delivers_writes_in_order(seg: Segment) -> None:
    cons = JournalConsumer(seg, batch=16)
    assert len(cons.read()) == 0
    seg.write("f", 1.5, Quality.UNCERTAIN, source_ts_ns=77)
    seg.write("i", -2)
    seg.write("b", True)
    assert cons.count_pending() == 3
    batch = cons.read()
    assert list(batch.slot) == [0, 1, 2]
    assert batch.decoded() == [1.5, -2, True]
    assert list(batch.values_f64()) == [1.5, -2.0, 1.0]
    assert list(batch.type) == [3, 2, 1]
    assert list(batch.quality) == [1, 2, 2]
    assert int(batch.source_ts_ns[0]) == 77
    assert list(batch.writer) == [os.getpid()] * 3
    assert all(batch.write_ts_ns > 0)
    kept = batch.copy()
    seg.write("i", 5)
    cons.read()
    assert kept.decoded() == [1.5, -2, True]  # copy() survives the next read
    assert (cons.received, cons.lost, cons.overruns, cons.count_pending()) == (4, 0, 0, 0)
    assert cons.position == seg.info().journal_head


def test_journal_max_entries_and_from_start(seg: Segment) -> None:
    for k in range(10):
        seg.write("i", k)
    late = JournalConsumer(seg)
    assert len(late.read()) == 0
    early = JournalConsumer(seg, from_start=True, batch=4)
    got: list[int] = []
    while len(b := early.read(3)) > 0:
        assert len(b) <= 3
        got += b.decoded()  # type: ignore[arg-type]
    assert got == list(range(10))
    with pytest.raises(ValueOutOfRangeError):
        JournalConsumer(seg, batch=0)


def test_lapped_consumer_counts_loss_exactly(seg: Segment) -> None:
    cons = JournalConsumer(seg, batch=1000)
    start = cons.position
    for k in range(200):  # capacity 64
        seg.write("i", k)
    batch = cons.read()
    assert cons.overruns == 1
    assert cons.lost == 200 - 64
    assert len(batch) == 64
    assert batch.decoded() == list(range(136, 200))
    assert cons.received + cons.lost == cons.position - start


def test_resync_snapshot(seg: Segment) -> None:
    cons = JournalConsumer(seg)
    for k in range(100):
        seg.write("i", k)
    snap = cons.resync()
    assert int(snap.values.view(np.int64)[1]) == 99
    assert cons.count_pending() == 0
    seg.write("i", 100)
    assert cons.read().decoded() == [100]


def test_stalled_position_is_skipped_after_timeout(seg: Segment) -> None:
    """A claimed but never published position (a producer that died between its
    fetch-add and its publish) is counted lost after the stall timeout instead of
    blocking the consumer forever."""
    info = ffi.new("petra_info_t *")
    lib.petra_info(seg.handle, info)
    cons = JournalConsumer(seg, stall_timeout_s=0.05)
    seg.write("i", 1)
    assert cons.read().decoded() == [1]
    path = f"/dev/shm/petra.{seg.instance}"
    with open(path, "r+b") as f, mmap.mmap(f.fileno(), 0) as mm:
        off = int(info.journal_offset)
        (head,) = struct.unpack_from("<Q", mm, off)
        struct.pack_into("<Q", mm, off, head + 1)  # claim, never publish
    seg.write("i", 2)
    assert len(cons.read()) == 0  # waits on the unpublished position
    assert cons.lost == 0
    deadline = time.monotonic() + 10
    got: list[object] = []
    while not got and time.monotonic() < deadline:
        time.sleep(0.02)
        got = cons.read().decoded()  # type: ignore[assignment]
    assert got == [2]
    assert (cons.received, cons.lost) == (2, 1)


# ------------------------------------------------------------------ stats
def test_stats_record_and_read(seg: Segment) -> None:
    empty = read_stats(seg)
    assert empty.cycles == 0
    w = StatsWriter(seg, period_ns=1_000_000)
    s0 = read_stats(seg)
    assert (s0.cycles, s0.wake_min_ns, s0.period_ns) == (0, 0, 1_000_000)
    assert s0.wake_percentile_us(99) == 0.0
    wakes = [5_000, 12_500, 999_999, 2_000_000, 7_000, 3_000, 40_000, 41_000, 42_000, 43_000]
    for k, wake in enumerate(wakes):
        w.record(wake, 1_000 * (k + 1), overruns=1 if wake > 1_000_000 else 0,
                 skipped=2 if wake > 1_000_000 else 0)
    st = read_stats(seg)
    assert st.cycles == 10
    assert (st.overruns, st.skipped) == (1, 2)
    assert st.wake_min_ns == 3_000 and st.wake_max_ns == 2_000_000
    assert st.wake_last_ns == 43_000
    assert math.isclose(st.wake_avg_ns, sum(wakes) / 10)
    assert (st.exec_min_ns, st.exec_max_ns, st.exec_last_ns) == (1_000, 10_000, 10_000)
    for wake in wakes:
        assert int(st.wake_hist[ref_bucket(wake)]) >= 1
    assert len(st.wake_hist) == len(st.exec_hist) == HIST_LEN == 450
    assert int(st.wake_hist.sum()) == 10 and int(st.exec_hist.sum()) == 10
    assert st.wake_percentile_us(10) == 3.072  # 3 us sample: bucket [2.944, 3.072) us
    assert st.wake_percentile_us(50) == 40.96  # 40 us: [38.912, 40.96)
    assert st.wake_percentile_us(100) == 2031.616  # 2 ms is a real value, not inf
    assert st.exec_percentile_us(100) == 10.24
    # The 8 worst wake-ups, largest first, with their cycle numbers (1-based).
    assert st.worst[0] == (4, 2_000_000)
    assert st.worst[1] == (3, 999_999)
    assert len(st.worst) == 8
    assert (6, 3_000) not in st.worst and (1, 5_000) not in st.worst


def test_hist_percentile_helper() -> None:
    h = np.zeros(HIST_LEN, np.uint64)
    assert hist_percentile_us(h, 50) == 0.0
    h[0] = 99  # below 64 ns
    h[-1] = 1  # the overflow bucket: 2^34 ns (17.2 s) and more
    assert hist_percentile_us(h, 99) == 0.064
    assert hist_percentile_us(h, 99.5) == math.inf
    with pytest.raises(ValueOutOfRangeError):
        hist_percentile_us(np.zeros(1001, np.uint64), 50)


def ref_bucket(ns: int) -> int:
    """The histogram rule written out independently of the C core: 16 linear
    sub-buckets per power of two from 64 ns to 2^34 ns, one bucket below, one above."""
    if ns < 64:
        return 0
    if ns >= 2**34:
        return 449
    msb = ns.bit_length() - 1
    return int(1 + (msb - 6) * 16 + ((ns >> (msb - 4)) & 15))


def ref_upper_ns(b: int) -> int:
    if b == 0:
        return 64
    octave, sub = divmod(b - 1, 16)
    return int((1 << (6 + octave)) + (sub + 1) * (1 << (2 + octave)))


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_hist_bucket_matches_the_reference(ns: int) -> None:
    b = hist_bucket(ns)
    assert b == ref_bucket(ns)
    if b < 449:
        upper = ref_upper_ns(b)
        assert hist_upper_us(b) == upper / 1000
        assert ns < upper  # the edge is exclusive
        if b > 0:
            lower = ref_upper_ns(b - 1)
            assert ns >= lower
            # Resolution: a bucket is at most 1/16 of its lower edge wide.
            assert (upper - lower) * 16 <= lower


def test_hist_edges_cover_100ns_to_10s() -> None:
    edges = [hist_upper_us(b) for b in range(HIST_LEN)]
    assert all(a < b for a, b in itertools.pairwise(edges))
    assert hist_bucket(100) > 0 and hist_upper_us(hist_bucket(100)) <= 0.104
    assert hist_upper_us(hist_bucket(10 * 10**9)) <= 10 * 10**6 * 1.0625
    assert hist_upper_us(HIST_LEN - 1) == math.inf


def test_readonly_stats_writer_refused(seg: Segment) -> None:
    ro = Segment.attach(seg.instance, readonly=True)
    try:
        with pytest.raises(PetraError):
            StatsWriter(ro, 1_000_000)
    finally:
        ro.close()


# ------------------------------------------------------------------ heartbeats
def test_heartbeats(seg: Segment) -> None:
    assert read_heartbeats(seg) == []
    scan = HeartbeatHandle(seg, "scan", pid=os.getpid(), cpu=1)
    drv = HeartbeatHandle(seg, "driver:plc1-é", pid=4242)
    scan.beat(ProcessState.RUNNING)
    scan.set_counter(0, 123)
    scan.set_counter(7, 2**64 - 1)
    add_restart(seg, drv.record)
    add_restart(seg, drv.record)
    beats = {b.role: b for b in read_heartbeats(seg)}
    assert set(beats) == {"scan", "driver:plc1-é"}
    s = beats["scan"]
    assert (s.pid, s.state, s.cpu, s.restarts) == (os.getpid(), ProcessState.RUNNING, 1, 0)
    assert s.counters == (123, 0, 0, 0, 0, 0, 0, 2**64 - 1)
    assert 0 <= s.age_ns() < 60 * 10**9
    assert s.age_ns(s.last_beat_ns + 5) == 5
    d = beats["driver:plc1-é"]
    assert (d.pid, d.state, d.restarts) == (4242, ProcessState.STARTING, 2)
    before = s.last_beat_ns
    time.sleep(0.001)
    scan.beat(ProcessState.DEGRADED)
    s2 = next(b for b in read_heartbeats(seg) if b.role == "scan")
    assert s2.state is ProcessState.DEGRADED and s2.last_beat_ns > before
    with pytest.raises(ValueOutOfRangeError):
        scan.set_counter(8, 1)
    # Full table: 3 records.
    third = HeartbeatHandle(seg, "api", pid=77)
    with pytest.raises(SegmentError, match="no free record"):
        HeartbeatHandle(seg, "extra", pid=78)
    third.release()
    again = HeartbeatHandle(seg, "api2", pid=79)
    assert again.record == third.record
    fresh = next(b for b in read_heartbeats(seg) if b.role == "api2")
    assert fresh.restarts == 0 and fresh.counters == (0,) * 8
    with pytest.raises(ValueOutOfRangeError):
        HeartbeatHandle(seg, "zero", pid=0)
    drv.release()
    assert {b.role for b in read_heartbeats(seg)} == {"scan", "api2"}


def test_long_role_is_truncated(seg: Segment) -> None:
    HeartbeatHandle(seg, "r" * 100, pid=5)
    (hb,) = read_heartbeats(seg)
    assert hb.role == "r" * 47
