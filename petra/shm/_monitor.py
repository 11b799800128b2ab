"""Scan timing statistics and process heartbeats: what petra-top and the supervisor read.

The scan is the only writer of the stats block; every process owns one heartbeat
record. Readers never block either.

The histograms are log-scale (HDR style, ``csrc/layout.h``): one bucket below 64 ns,
then every power of two up to 2^34 ns (17.2 s) cut into 16 equal sub-buckets, then an
overflow bucket. A percentile is the upper edge of the bucket it falls in, so it
overstates by at most 1/16 of the value, and a 10 ms plant on a slow box gets a real
number instead of "beyond the histogram".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from petra._core import check, ffi, lib, now_mono_ns
from petra.errors import ValueOutOfRangeError
from petra.shm._segment import Segment
from petra.types import HB_COUNTERS, ProcessState

HIST_LEN = int(lib.petra_hist_buckets())  # every bucket, the overflow one included
HIST_OVERFLOW = HIST_LEN - 1
# Upper edge of each bucket in us (from the C core, so the two cannot drift).
_UPPER_US: npt.NDArray[np.float64] = np.array(
    [int(lib.petra_hist_upper_ns(b)) / 1000.0 for b in range(HIST_OVERFLOW)] + [math.inf])


def hist_bucket(ns: int) -> int:
    """The histogram bucket a duration in ns is counted in (the C core's rule)."""
    return int(lib.petra_hist_bucket(ns))


def hist_upper_us(bucket: int) -> float:
    """Upper edge in us of a bucket (inf for the overflow bucket)."""
    return float(_UPPER_US[bucket])


@dataclass(frozen=True, slots=True)
class ScanStats:
    """A consistent snapshot of the scan's timing statistics (times in ns)."""

    period_ns: int
    started_ns: int
    cycles: int
    overruns: int
    skipped: int
    wake_min_ns: int
    wake_max_ns: int
    wake_avg_ns: float
    wake_last_ns: int
    exec_min_ns: int
    exec_max_ns: int
    exec_avg_ns: float
    exec_last_ns: int
    wake_hist: npt.NDArray[np.uint64] = field(repr=False)
    exec_hist: npt.NDArray[np.uint64] = field(repr=False)
    worst: tuple[tuple[int, int], ...] = ()

    def wake_percentile_us(self, p: float) -> float:
        return hist_percentile_us(self.wake_hist, p)

    def exec_percentile_us(self, p: float) -> float:
        return hist_percentile_us(self.exec_hist, p)


def hist_percentile_us(hist: npt.NDArray[np.uint64], p: float) -> float:
    """Upper edge (us) of the log-scale bucket holding the p-th percentile; inf if it
    is in the overflow bucket (>= 17.2 s), 0 when the histogram is empty."""
    if len(hist) != HIST_LEN:
        raise ValueOutOfRangeError(f"a stats histogram has {HIST_LEN} buckets, got {len(hist)}")
    total = int(hist.sum())
    if total == 0:
        return 0.0
    # Integer rank: the smallest count r with r >= p% of total. Rounding first keeps
    # 99.9% of 1000 at 999 instead of the float 999.0000000000001 (one bucket too far).
    rank = max(1, math.ceil(round(p * total / 100.0, 6)))
    cum = np.cumsum(hist)
    k = int(np.searchsorted(cum, rank, side="left"))
    return float(_UPPER_US[min(k, HIST_OVERFLOW)])


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """One process's heartbeat record as read by a monitor."""

    record: int
    pid: int
    role: str
    state: ProcessState
    last_beat_ns: int
    restarts: int
    cpu: int
    counters: tuple[int, ...]

    def age_ns(self, now_ns: int | None = None) -> int:
        return (now_mono_ns() if now_ns is None else now_ns) - self.last_beat_ns


class StatsWriter:
    """The scan's side of the stats block (exactly one per segment)."""

    def __init__(self, segment: Segment, period_ns: int) -> None:
        self._seg = segment
        check(lib.petra_stats_reset(segment.handle, period_ns), "stats reset")

    def record(self, wake_ns: int, exec_ns: int, overruns: int = 0, skipped: int = 0) -> None:
        lib.petra_stats_record(self._seg.handle, wake_ns, exec_ns, overruns, skipped)


def read_stats(segment: Segment) -> ScanStats:
    out = ffi.new("petra_stats_out_t *")
    check(lib.petra_stats_read(segment.handle, out), "stats read")
    cycles = int(out.cycles)
    wake_hist = np.frombuffer(ffi.buffer(out.wake_hist), dtype=np.uint64).copy()
    exec_hist = np.frombuffer(ffi.buffer(out.exec_hist), dtype=np.uint64).copy()
    worst = sorted(
        ((int(out.worst_cycle[i]), int(out.worst_latency_ns[i])) for i in range(8)
         if out.worst_latency_ns[i] >= 0 and out.worst_cycle[i] > 0),
        key=lambda cw: -cw[1],
    )
    return ScanStats(
        period_ns=int(out.period_ns),
        started_ns=int(out.started_ns),
        cycles=cycles,
        overruns=int(out.overruns),
        skipped=int(out.skipped),
        wake_min_ns=int(out.wake_min_ns) if cycles else 0,
        wake_max_ns=int(out.wake_max_ns),
        wake_avg_ns=int(out.wake_sum_ns) / cycles if cycles else 0.0,
        wake_last_ns=int(out.wake_last_ns),
        exec_min_ns=int(out.exec_min_ns) if cycles else 0,
        exec_max_ns=int(out.exec_max_ns),
        exec_avg_ns=int(out.exec_sum_ns) / cycles if cycles else 0.0,
        exec_last_ns=int(out.exec_last_ns),
        wake_hist=wake_hist,
        exec_hist=exec_hist,
        worst=tuple(worst),
    )


class HeartbeatHandle:
    """A process's own heartbeat record: claim it once, beat it from the main loop."""

    def __init__(self, segment: Segment, role: str, pid: int, cpu: int = 0) -> None:
        self._seg = segment
        self.record = check(
            lib.petra_hb_register(segment.handle, pid, role.encode("utf-8")[:47], cpu),
            "heartbeat register (all records taken?)")

    def beat(self, state: ProcessState = ProcessState.RUNNING) -> None:
        lib.petra_hb_beat(self._seg.handle, self.record, int(state))

    def set_counter(self, counter: int, value: int) -> None:
        """Store one of the record's 8 free-use u64 counters (what each means is the
        role's convention: messages, reconnects, ...)."""
        if not 0 <= counter < HB_COUNTERS:
            raise ValueOutOfRangeError(f"heartbeat counter {counter} outside 0..{HB_COUNTERS - 1}")
        check(lib.petra_hb_set_counter(self._seg.handle, self.record, counter, value),
              "heartbeat counter")

    def release(self) -> None:
        if not self._seg.closed:
            lib.petra_hb_release(self._seg.handle, self.record)


def add_restart(segment: Segment, record: int) -> None:
    """Count a restart against a record (the supervisor does this)."""
    check(lib.petra_hb_add_restart(segment.handle, record), "heartbeat restart")


def release_heartbeat(segment: Segment, record: int) -> None:
    """Free the record of a process known to be dead (the supervisor does this)."""
    check(lib.petra_hb_release(segment.handle, record), "heartbeat release")


def read_heartbeats(segment: Segment) -> list[Heartbeat]:
    """Every claimed heartbeat record."""
    out = ffi.new("petra_hb_out_t *")
    n = segment.info().n_heartbeats
    beats = []
    for i in range(n):
        check(lib.petra_hb_read(segment.handle, i, out))
        if out.pid == 0:
            continue
        try:
            state = ProcessState(out.state)
        except ValueError:
            state = ProcessState.FAILED
        beats.append(Heartbeat(
            record=i, pid=int(out.pid), role=ffi.string(out.role).decode("utf-8", "replace"),
            state=state, last_beat_ns=int(out.last_beat_ns), restarts=int(out.restarts),
            cpu=int(out.cpu), counters=tuple(int(c) for c in out.counters)))
    return beats
