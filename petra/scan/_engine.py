"""The scan cycle: wait for the deadline, copy in, run the blocks, copy out, record.

Deadlines
---------
Cycle k starts at ``base + k * period``, an absolute CLOCK_MONOTONIC time, so a late
wake-up never shifts later cycles. ``base`` is a multiple of the period plus a grid
offset (half a period by default): deadlines on multiples of the kernel tick (4 ms at
HZ=250) would wake together with the tick's own work. A cycle that ends after the
next deadline is an *overrun*: it is counted, and every period it ran into is
*skipped* (counted too) rather than run back to back, because a burst of late cycles
would feed the plant stale, bunched outputs.

Time
----
The instant of waking is read once and given to every block as ``now``; ``dt`` is
the time since the previous cycle's wake-up (so timers stay true across skipped
periods). Tests pass a :class:`~petra.scan._clock.FakeClock`.

Process image
-------------
``img``/``quality`` are allocated once per program. Only the signals some block
reads are copied in (consistent per slot, not across slots: the PLC contract), and
only outputs that changed since their last write are copied out, so an idle plant
makes no journal traffic. After one full copy-in, inputs are brought up to
date from the change journal (every entry since the last cycle whose slot is an input),
so copy-in costs what changed, not the size of the plant; if the ring lapped the
scan, that cycle reads every input slot instead. A program swap (hot reload)
happens only here, between two cycles.

Retain
------
After copy-out each cycle commits the block state into the retain area (one C call,
a memcpy into the buffer not in use; see ``csrc/retain.h``), so a scan killed at any
point leaves the state of its last complete cycle for the restarted scan
(:mod:`petra.scan._retain`). A warm start is not a first scan: restored blocks go on,
and the outputs' last values are read into the image before the first cycle.

Event mode
----------
A program compiled with ``event=True`` carries an event plan
(``petra/blocks/_event.py``, rules in ``csrc/event.h``): copy-in marks the readers
of each input it updates, the program runs only marked blocks (and those with
time), and copy-out compares only the outputs that changed. A newly bound program
and every full copy-in mark everything.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from petra._core import check, ffi, lib
from petra.errors import PetraError
from petra.scan._clock import Clock, MonotonicClock
from petra.shm import HeartbeatHandle, ProcessState, Quality, Segment, StatsWriter
from petra.types import ScanCounter, Substatus

log = logging.getLogger("petra.scan")

HEARTBEAT_INTERVAL_NS = 100_000_000
LAP_LOG_INTERVAL_NS = 60_000_000_000  # journal lap warnings: at most one a minute
STALL_TIMEOUT_NS = 250_000_000  # a journal entry unpublished this long is counted lost


class BlockProgram(Protocol):
    """What the engine needs of a compiled block program (see petra.blocks)."""

    image_size: int
    constants: npt.NDArray[np.float64]
    input_signals: npt.NDArray[np.uint32]
    output_signals: npt.NDArray[np.uint32]

    def run(self, img: npt.NDArray[np.float64], quality: npt.NDArray[np.uint8], now_ns: int,
            dt_ns: int, first_scan: bool) -> None: ...


@dataclass(slots=True)
class ScanCounters:
    cycles: int = 0
    overruns: int = 0
    skipped: int = 0
    busy_reads: int = 0
    writes: int = 0
    reloads: int = 0
    journal_laps: int = 0  # episodes of copy-in losing journal entries (lapped)
    journal_lost: int = 0  # entries lost to them (copy-in read the slots instead)
    full_reads: int = 0  # cycles whose copy-in read every input (priming, a lapped journal)


def grid_base(now_ns: int, period_ns: int, offset_ns: int) -> int:
    """The first deadline after ``now_ns`` on the grid ``k * period + offset``."""
    k = (now_ns - offset_ns) // period_ns + 1
    return k * period_ns + offset_ns


class _Image:
    """A program bound to its process image and the cffi pointers into it."""

    def __init__(self, program: BlockProgram, n_signals: int,
                 previous: _Image | None) -> None:
        if program.image_size < n_signals:
            raise PetraError(f"program image ({program.image_size}) smaller than the "
                             f"segment's {n_signals} signals")
        self.program = program
        self.img = np.zeros(program.image_size, np.float64)
        self.quality = np.zeros(program.image_size, np.uint8)
        if previous is not None:
            self.img[:n_signals] = previous.img[:n_signals]
            self.quality[:n_signals] = previous.quality[:n_signals]
        consts = np.asarray(program.constants, np.float64)
        self.img[n_signals:n_signals + len(consts)] = consts
        self.quality[n_signals:] = int(Quality.GOOD)
        # Signals this program writes are not copied in: the scan is their one writer
        # (the config refuses a second), so the image already holds their value.
        self.inputs = np.ascontiguousarray(
            np.setdiff1d(program.input_signals, program.output_signals), np.uint32)
        self.outputs = np.ascontiguousarray(program.output_signals, np.uint32)
        # Last value written per output; quality 255 forces the first write.
        self.last = np.full(len(self.outputs), math.nan, np.float64)
        self.last_quality = np.full(len(self.outputs), 255, np.uint8)
        if previous is not None:
            carried = {int(k): i for i, k in enumerate(previous.outputs)}
            for i, k in enumerate(self.outputs):
                j = carried.get(int(k))
                if j is not None:
                    self.last[i] = previous.last[j]
                    self.last_quality[i] = previous.last_quality[j]
        # Journal copy-in: which slots are inputs, and where this image's reading of the
        # change journal stands. Unprimed until its first full copy-in.
        # A bitmap (bit k of byte k // 8): 12.5 kB at 100k signals, so the test of each
        # journal entry stays a cache hit.
        flags = np.zeros(max(n_signals, 1), np.uint8)
        flags[self.inputs] = 1
        self.is_input = np.packbits(flags, bitorder="little")
        self.cursor = ffi.new("petra_cursor_t *")
        self.primed = False
        self.p_mask = ffi.from_buffer("uint8_t[]", self.is_input)
        self.p_img = ffi.from_buffer("double[]", self.img)
        self.p_q = ffi.from_buffer("uint8_t[]", self.quality)
        self.p_in = ffi.from_buffer("uint32_t[]", self.inputs)
        self.p_out = ffi.from_buffer("uint32_t[]", self.outputs)
        self.p_last = ffi.from_buffer("double[]", self.last)
        self.p_last_q = ffi.from_buffer("uint8_t[]", self.last_quality)
        self.n_in = len(self.inputs)
        self.n_out = len(self.outputs)
        # Event mode (petra/blocks/_event.py): the plan's pointer, or NULL. A program
        # newly bound runs every block and compares every output once.
        self.event: Any = getattr(getattr(program, "event", None), "ptr", None) or ffi.NULL
        if self.event != ffi.NULL:
            if self.event.n_out != self.n_out:
                raise PetraError("event plan and program disagree on the outputs")
            lib.petra_event_mark_all(self.event)


class ScanEngine:
    """Runs a block program against a segment on a fixed period."""

    def __init__(
        self,
        segment: Segment,
        program: BlockProgram,
        period_ns: int,
        clock: Clock,
        *,
        offset_ns: int | None = None,
        heartbeat: HeartbeatHandle | None = None,
        record_stats: bool = True,
        trace: npt.NDArray[np.int64] | None = None,
        retain: Callable[[BlockProgram], tuple[Any, ...] | None] | None = None,
        warm: bool = False,
    ) -> None:
        if period_ns <= 0:
            raise PetraError(f"scan period must be positive, got {period_ns} ns")
        self.segment = segment
        self.period_ns = period_ns
        self.offset_ns = period_ns // 2 if offset_ns is None else offset_ns % period_ns
        self.clock = clock
        self.heartbeat = heartbeat
        self.counters = ScanCounters()
        self._lapping = False
        self._lap_logged_ns = 0
        self._lost_before_swap = 0  # cursor losses of programs swapped out by reloads
        self._journal_capacity = segment.info().journal_capacity
        self._n_signals = len(segment)
        self._bound = _Image(program, self._n_signals, None)
        self._pending: BlockProgram | None = None
        # A warm start (block state restored, see petra.scan._retain) is no first scan:
        # restored blocks go on, the others carry their own first-scan flag.
        self._first_scan = not warm
        # Retain: ``retain(program)`` binds a program to the retain area and returns the
        # arguments of petra_retain_commit (but the cycle count); one commit per cycle.
        self._retain = retain
        self._retain_args = retain(program) if retain is not None else None
        self._on_swap: Callable[[BlockProgram], None] | None = None
        self._stats = StatsWriter(segment, period_ns) if record_stats else None
        self._h = segment.handle
        # Optional per-cycle record for benchmarks: row k = (wake latency, exec) ns.
        self._trace = trace
        if warm:
            self._prime_outputs()

    @property
    def program(self) -> BlockProgram:
        return self._bound.program

    @property
    def image(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.uint8]]:
        return self._bound.img, self._bound.quality

    def request_swap(self, program: BlockProgram,
                     on_swap: Callable[[BlockProgram], None] | None = None) -> None:
        """Swap in ``program`` at the next cycle boundary (hot reload)."""
        self._on_swap = on_swap
        self._pending = program

    def run(  # noqa: PLR0912, PLR0915  # the hot loop stays flat: no per-cycle helper calls
        self, should_stop: Callable[[], bool], max_cycles: int | None = None
    ) -> ScanCounters:
        """Cycle until ``should_stop()`` is true (checked once per cycle) or
        ``max_cycles`` ran. Returns the counters.

        A program of built-ins only, on the real clock, runs each cycle as one C call
        (``petra_scan_cycle``: wait, copy-in, blocks, copy-out, stats); Python then
        only checks for stop, reload and the heartbeat between cycles. Custom Python
        blocks, a fake clock or a pending first-scan flag take the Python path."""
        period = self.period_ns
        clock = self.clock
        base = grid_base(clock.now_ns(), period, self.offset_ns)
        k = 0
        prev_wake = 0
        first = self._first_scan  # true only for the engine's very first cycle
        next_beat = 0
        copy_in = lib.petra_scan_copy_in
        copy_in_journal = lib.petra_scan_copy_in_journal_ev
        copy_out_ev = lib.petra_scan_copy_out_ev
        mark_all = lib.petra_event_mark_all
        applied = ffi.new("int64_t *")
        full = ffi.new("int *")
        copy_out = lib.petra_scan_copy_out
        scan_cycle = lib.petra_scan_cycle
        record = lib.petra_stats_record if self._stats is not None else None
        h = self._h
        c = self.counters
        trace = self._trace
        trace_len = 0 if trace is None else len(trace)
        real_clock = isinstance(clock, MonotonicClock)
        fast: Any = None
        retain_commit = lib.petra_retain_commit
        rargs = self._retain_args
        if self.heartbeat is not None:
            self.heartbeat.beat(ProcessState.RUNNING)
        while not should_stop():
            if max_cycles is not None and c.cycles >= max_cycles:
                break
            if self._pending is not None:
                self._swap()
                fast = None
                rargs = self._retain_args
            if fast is None and real_clock and self._bound.primed:
                fast = self._fast_cycle(base, k, prev_wake)
            if fast is not None:
                rc = scan_cycle(fast)
                if rc:
                    check(rc, "scan cycle")
                k = fast.k
                woke = fast.wake_ns
                c.busy_reads += fast.busy
                c.writes += fast.written
                c.full_reads += fast.full
                c.overruns += fast.overrun
                c.skipped += fast.skipped
                c.cycles += 1
                if c.cycles <= trace_len:
                    trace[c.cycles - 1, 0] = fast.latency_ns  # type: ignore[index]
                    trace[c.cycles - 1, 1] = fast.exec_ns  # type: ignore[index]
            else:
                deadline = base + k * period
                woke = clock.wait_until(deadline)
                b = self._bound
                ev = b.event
                if b.primed:
                    busy = copy_in_journal(h, b.cursor, b.p_mask, b.p_in, b.n_in, b.p_img,
                                           b.p_q, applied, full, ev)
                    c.full_reads += full[0]
                else:
                    lib.petra_cursor_init(h, b.cursor, 0, STALL_TIMEOUT_NS)
                    busy = copy_in(h, b.p_in, b.n_in, b.p_img, b.p_q)
                    if ev:
                        mark_all(ev)
                    b.primed = True
                    c.full_reads += 1
                if busy < 0:
                    check(busy, "copy-in")
                c.busy_reads += busy
                b.program.run(b.img, b.quality, woke,
                              woke - prev_wake if prev_wake else period, first)
                if ev:
                    written = copy_out_ev(h, b.p_out, b.n_out, b.p_img, b.p_q, b.p_last,
                                          b.p_last_q, ev)
                else:
                    written = copy_out(h, b.p_out, b.n_out, b.p_img, b.p_q, b.p_last,
                                       b.p_last_q, 0)
                if written < 0:
                    check(written, "copy-out")
                c.writes += written
                end = clock.now_ns()
                k += 1
                overrun = skipped = 0
                next_deadline = base + k * period
                if end > next_deadline:
                    overrun = 1
                    skipped = (end - next_deadline) // period + 1
                    k += skipped
                c.overruns += overrun
                c.skipped += skipped
                c.cycles += 1
                if record is not None:
                    record(h, woke - deadline, end - woke, overrun, skipped)
                if c.cycles <= trace_len:
                    trace[c.cycles - 1, 0] = woke - deadline  # type: ignore[index]
                    trace[c.cycles - 1, 1] = end - woke  # type: ignore[index]
            if rargs is not None:  # after copy-out: the state of this complete cycle
                rc = retain_commit(*rargs, c.cycles)
                if rc:  # a bug, not a plant fault: said once, the scan runs on
                    log.error("event=retain_commit_failed rc=%d action=no_warm_restart", rc)
                    rargs = self._retain_args = None
            if self.heartbeat is not None and woke >= next_beat:
                self._note_journal_loss(woke)
                self.heartbeat.beat(ProcessState.RUNNING)
                next_beat = woke + HEARTBEAT_INTERVAL_NS
            prev_wake = woke
            first = self._first_scan = False
        return c

    def _note_journal_loss(self, now_ns: int) -> None:
        """Between cycles, at heartbeat pace: count journal entries copy-in lost (the
        ring lapped it; the cycle read every input instead) into the heartbeat counters,
        and log once per episode. An episode is a run of beats with new losses; it ends
        after a beat without; a new one logs again, at most once a minute."""
        lost = int(self._bound.cursor.lost) + self._lost_before_swap
        c = self.counters
        new = lost - c.journal_lost
        if new <= 0:
            self._lapping = False
            return
        c.journal_lost = lost
        hb = self.heartbeat
        if not self._lapping:
            self._lapping = True
            c.journal_laps += 1
            if now_ns - self._lap_logged_ns >= LAP_LOG_INTERVAL_NS or not self._lap_logged_ns:
                self._lap_logged_ns = now_ns
                log.warning("event=journal_lapped lost=%d episodes=%d capacity=%d "
                            "hint=%r", new, c.journal_laps, self._journal_capacity,
                            "raise scan.journal_capacity, or leave it unset to size it "
                            "from the plant")
        if hb is not None:
            hb.set_counter(ScanCounter.JOURNAL_LAPS, c.journal_laps)
            hb.set_counter(ScanCounter.JOURNAL_LOST, c.journal_lost)

    def _fast_cycle(self, base: int, k: int, prev_wake: int) -> Any:
        """The C cycle context for the bound program, or None if it has custom blocks."""
        b = self._bound
        native = getattr(b.program, "native_run", None)
        run = native() if native is not None else None
        if run is None:
            return None
        prog, count, state, params = run
        cyc = ffi.new("petra_cycle_t *")
        cyc.seg = self._h
        cyc.in_idx, cyc.n_in = b.p_in, b.n_in
        cyc.out_idx, cyc.n_out = b.p_out, b.n_out
        cyc.img, cyc.quality = b.p_img, b.p_q
        cyc.last, cyc.last_quality = b.p_last, b.p_last_q
        cyc.prog, cyc.n_prog, cyc.state, cyc.params = prog, count, state, params
        cyc.cursor, cyc.is_input = b.cursor, b.p_mask
        cyc.period_ns = self.period_ns
        cyc.spin_ns = getattr(self.clock, "spin_ns", 0)
        cyc.base_ns, cyc.k, cyc.prev_wake_ns = base, k, prev_wake
        cyc.record_stats = 1 if self._stats is not None else 0
        cyc.event = b.event
        # keep the cdata pointers the struct refers to alive with it
        self._fast_keep = (b, run)
        return cyc

    def _prime_outputs(self) -> None:
        """Read the outputs' current values from the segment into the image: after a
        warm restart a block that reads an output written later in the cycle (a
        feedback loop) sees the last value, not zero."""
        b = self._bound
        busy = lib.petra_scan_copy_in(self._h, b.p_out, b.n_out, b.p_img, b.p_q)
        if busy < 0:
            check(busy, "priming the outputs")
        # The supervisor's SCAN_DOWN mark is about the outage, not about the value the
        # scan last computed: a feedback loop must not carry the mark on for ever, so a
        # marked output is primed GOOD (its value is the scan's own last one).
        for index in b.outputs.tolist():
            if self.segment.read_index(index).substatus is Substatus.SCAN_DOWN:
                b.quality[index] = int(Quality.GOOD)

    def write_safe_values(self, safe: Mapping[int, float | int | bool]) -> None:
        """Write each signal's configured safe value (on stop)."""
        for index, value in safe.items():
            self.segment.write_index(index, value)

    def _swap(self) -> None:
        program = self._pending
        assert program is not None
        self._pending = None
        carry = getattr(program, "carry_state", None)
        if carry is not None:
            carry(self._bound.program)
        self._lost_before_swap += int(self._bound.cursor.lost)  # the new image's starts at 0
        self._bound = _Image(program, self._n_signals, self._bound)
        if self._retain is not None:
            self._retain_args = self._retain(program)
        self.counters.reloads += 1
        if self._on_swap is not None:
            self._on_swap(program)


def describe(counters: ScanCounters) -> dict[str, Any]:
    return {name: getattr(counters, name) for name in counters.__slots__}
