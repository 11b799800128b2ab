"""The scan cycle against a real segment, driven by a fake clock (no sleeping)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import numpy as np
import numpy.typing as npt
import pytest

from petra.scan import FakeClock, ScanEngine, grid_base
from petra.shm import (
    JournalConsumer,
    Quality,
    Segment,
    SignalDef,
    SignalType,
    read_stats,
    unlink_instance,
)

MS = 1_000_000


class Program:
    """A block program written in the test: out = in * 2, plus a hook per cycle."""

    def __init__(self, n_signals: int, src: int, dst: int,
                 hook: Callable[[int, int, bool], None] | None = None,
                 factor: float = 2.0) -> None:
        self.image_size = n_signals + 1
        self.constants = np.array([factor])
        self.input_signals = np.array([src], np.uint32)
        self.output_signals = np.array([dst], np.uint32)
        self.src, self.dst, self.const = src, dst, n_signals
        self.hook = hook
        self.calls: list[tuple[int, int, bool]] = []

    def run(self, img: npt.NDArray[np.float64], quality: npt.NDArray[np.uint8], now_ns: int,
            dt_ns: int, first_scan: bool) -> None:
        self.calls.append((now_ns, dt_ns, first_scan))
        img[self.dst] = img[self.src] * img[self.const]
        quality[self.dst] = quality[self.src]
        if self.hook is not None:
            self.hook(now_ns, dt_ns, first_scan)


@pytest.fixture
def seg() -> Iterator[Segment]:
    name = f"t-scan-{os.getpid()}"
    unlink_instance(name)
    s = Segment.create(name, [SignalDef("x", SignalType.FLOAT),
                              SignalDef("y", SignalType.FLOAT),
                              SignalDef("n", SignalType.INT)])
    yield s
    s.close()
    unlink_instance(name)


def test_grid_is_offset_from_multiples_of_the_period() -> None:
    assert grid_base(0, 10 * MS, 5 * MS) == 5 * MS
    assert grid_base(5 * MS, 10 * MS, 5 * MS) == 15 * MS
    assert grid_base(12 * MS, 10 * MS, 5 * MS) == 15 * MS
    # an offset keeps deadlines off the 4 ms tick grid for these periods
    for period in (1 * MS, 10 * MS):
        base = grid_base(123 * MS, period, period // 2)
        assert all((base + k * period) % (4 * MS) != 0 for k in range(100))


def test_cycles_copy_in_compute_copy_out(seg: Segment) -> None:
    prog = Program(len(seg), seg.index("x"), seg.index("y"))
    clock = FakeClock(start_ns=0)
    eng = ScanEngine(seg, prog, 10 * MS, clock)
    seg.write("x", 1.5)
    eng.run(lambda: False, max_cycles=1)
    assert seg.read("y").value == 3.0
    assert seg.read("y").quality == Quality.GOOD
    seg.write("x", 4.0, quality=Quality.UNCERTAIN)
    eng.run(lambda: False, max_cycles=2)
    s = seg.read("y")
    assert (s.value, s.quality) == (8.0, Quality.UNCERTAIN)
    st = read_stats(seg)
    assert st.cycles == 2
    assert st.period_ns == 10 * MS


def test_deadlines_are_absolute_and_dt_is_time_since_last_wake(seg: Segment) -> None:
    prog = Program(len(seg), 0, 1)
    clock = FakeClock(start_ns=3 * MS, lateness_ns=20_000)
    eng = ScanEngine(seg, prog, 10 * MS, clock)
    eng.run(lambda: False, max_cycles=4)
    wakes = [c[0] for c in prog.calls]
    assert wakes == [5 * MS + 20_000 + k * 10 * MS for k in range(4)]
    assert [c[1] for c in prog.calls] == [10 * MS] * 4
    assert [c[2] for c in prog.calls] == [True, False, False, False]
    st = read_stats(seg)
    assert st.wake_min_ns == st.wake_max_ns == 20_000


def test_overrun_is_counted_and_missed_periods_skipped_not_bursted(seg: Segment) -> None:
    clock = FakeClock(start_ns=0)
    slow = {2}  # the third cycle runs 25 ms in a 10 ms period

    def hook(now: int, dt: int, first: bool) -> None:
        if len(prog.calls) - 1 in slow:
            clock.advance(25 * MS)

    prog = Program(len(seg), 0, 1, hook=hook)
    eng = ScanEngine(seg, prog, 10 * MS, clock)
    counters = eng.run(lambda: False, max_cycles=5)
    wakes = [c[0] for c in prog.calls]
    # cycle 2 woke at 25 ms and ended at 50 ms: deadlines 35 and 45 are skipped,
    # the next cycle runs at 55 ms on the same grid.
    assert wakes == [5 * MS, 15 * MS, 25 * MS, 55 * MS, 65 * MS]
    assert counters.overruns == 1
    assert counters.skipped == 2  # the 35 ms and 45 ms deadlines
    st = read_stats(seg)
    assert st.overruns == 1


def test_unchanged_outputs_make_no_journal_entries(seg: Segment) -> None:
    prog = Program(len(seg), 0, 1)
    eng = ScanEngine(seg, prog, 10 * MS, FakeClock(start_ns=0))
    seg.write("x", 1.0)
    journal = JournalConsumer(seg)
    eng.run(lambda: False, max_cycles=10)
    first = journal.read()
    assert [int(s) for s in first.slot] == [seg.index("y")]
    eng.run(lambda: False, max_cycles=20)
    assert len(journal.read()) == 0
    seg.write("x", 2.0)
    eng.run(lambda: False, max_cycles=21)
    batch = journal.read()
    assert [int(s) for s in batch.slot] == [seg.index("x"), seg.index("y")]


def test_nan_for_an_int_output_goes_bad_keeping_the_last_value(seg: Segment) -> None:
    prog = Program(len(seg), seg.index("x"), seg.index("n"))
    eng = ScanEngine(seg, prog, 10 * MS, FakeClock(start_ns=0))
    seg.write("x", 21.0)
    eng.run(lambda: False, max_cycles=1)
    assert seg.read("n").value == 42
    seg.write("x", float("nan"))
    eng.run(lambda: False, max_cycles=2)
    s = seg.read("n")
    assert (s.value, s.quality) == (42, Quality.BAD)


def test_swap_happens_at_a_cycle_boundary_and_keeps_the_image(seg: Segment) -> None:
    prog = Program(len(seg), 0, 1)
    eng = ScanEngine(seg, prog, 10 * MS, FakeClock(start_ns=0))
    seg.write("x", 5.0)
    eng.run(lambda: False, max_cycles=2)
    swapped: list[object] = []
    new = Program(len(seg), 0, 1, factor=3.0)
    eng.request_swap(new, on_swap=swapped.append)
    assert seg.read("y").value == 10.0  # nothing changes until the next cycle
    eng.run(lambda: False, max_cycles=3)
    assert swapped == [new]
    assert seg.read("y").value == 15.0
    assert eng.counters.reloads == 1
    assert eng.image[0][0] == 5.0


def test_stop_is_checked_every_cycle(seg: Segment) -> None:
    prog = Program(len(seg), 0, 1)
    eng = ScanEngine(seg, prog, 10 * MS, FakeClock(start_ns=0))
    counters = eng.run(lambda: len(prog.calls) >= 7)
    assert counters.cycles == 7


def test_trace_records_each_cycle(seg: Segment) -> None:
    trace = np.zeros((3, 2), np.int64)
    eng = ScanEngine(seg, Program(len(seg), 0, 1), 10 * MS,
                     FakeClock(start_ns=0, lateness_ns=7_000), trace=trace)
    eng.run(lambda: False, max_cycles=5)
    assert list(trace[:, 0]) == [7_000, 7_000, 7_000]


def test_histogram_percentile_rank_is_exact_at_boundaries() -> None:
    from petra.shm import hist_percentile_us
    from petra.shm._monitor import HIST_LEN, hist_bucket

    hist = np.zeros(HIST_LEN, np.uint64)
    hist[hist_bucket(10_100)] = 999  # 999 samples in the 9.728..10.24 us bucket
    hist[-1] = 1  # one in overflow
    assert hist_percentile_us(hist, 99.9) == 10.24
    assert hist_percentile_us(hist, 100.0) == float("inf")
    assert hist_percentile_us(hist, 50.0) == 10.24


def test_inputs_follow_the_journal_and_a_lapped_ring_falls_back_to_the_slots() -> None:
    name = f"t-scan-lap-{os.getpid()}"
    unlink_instance(name)
    seg = Segment.create(name, [SignalDef("x", SignalType.FLOAT),
                                SignalDef("y", SignalType.FLOAT)], journal_capacity=64)
    try:
        prog = Program(len(seg), 0, 1)
        eng = ScanEngine(seg, prog, 10 * MS, FakeClock(start_ns=0))
        eng.run(lambda: False, max_cycles=1)  # primes: a full copy-in
        for v in range(1000):  # laps the 64-entry ring many times over
            seg.write("x", float(v))
        eng.run(lambda: False, max_cycles=2)
        assert seg.get("y") == 1998.0
        seg.write("x", 5.0, quality=Quality.UNCERTAIN)  # a few entries: via the journal
        seg.write("x", 5.0, quality=Quality.BAD)  # quality alone changes
        eng.run(lambda: False, max_cycles=3)
        s = seg.read("y")
        assert (s.value, s.quality) == (10.0, Quality.BAD)
    finally:
        seg.close()
        unlink_instance(name)


def test_c_cycle_on_the_real_clock_follows_inputs(seg: Segment) -> None:
    """Built-in-only programs run each cycle as one C call; inputs come from the journal."""
    from petra.blocks import BlockInstance, Const, compile_program
    from petra.scan import MonotonicClock

    program = compile_program(
        [BlockInstance("m", "MUL", {"in1": 0, "in2": Const(3.0)}, {"out": 1}, {})], len(seg))
    eng = ScanEngine(seg, program, MS, MonotonicClock())
    seg.write("x", 2.0)
    eng.run(lambda: False, max_cycles=3)
    assert seg.get("y") == 6.0
    seg.write("x", 7.0)
    eng.run(lambda: False, max_cycles=6)
    assert seg.get("y") == 21.0
    assert read_stats(seg).cycles == 6


def test_lapped_journal_with_a_backlog_below_the_input_count_rereads_the_slots() -> None:
    """80 changes on a 64-entry ring lap the scan even though 80 < 100 inputs: the
    entries are lost, the loss is seen, and that cycle reads every input slot."""
    name = f"t-scan-lap2-{os.getpid()}"
    unlink_instance(name)
    defs = [SignalDef(f"x{i}", SignalType.FLOAT) for i in range(100)]
    defs.append(SignalDef("y", SignalType.FLOAT))
    seg = Segment.create(name, defs, journal_capacity=64)
    try:
        prog = Program(len(seg), 1, 100)  # y = x1 * 2
        prog.input_signals = np.arange(100, dtype=np.uint32)
        eng = ScanEngine(seg, prog, 10 * MS, FakeClock(start_ns=0))
        eng.run(lambda: False, max_cycles=1)
        seg.write("x1", 21.0)  # this entry is lapped away by the writes below
        for v in range(80):
            seg.write("x0", float(v))
        eng.run(lambda: False, max_cycles=2)
        assert seg.get("y") == 42.0  # only a re-read of the slots can know x1
    finally:
        seg.close()
        unlink_instance(name)
