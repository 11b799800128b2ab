"""Sampling: read a running instance's segment into a :class:`Snapshot`.

The sampler is the only part of petra-top that touches the segment, and it only
reads: it attaches read-only, so a bug here can never disturb the plant.

What is cumulative and what is a rate
-------------------------------------
The stats block holds counters and histograms since the scan last reset them
(``StatsWriter``), so the header's percentiles describe the whole run. A live
sparkline wants "how is it *now*": the sampler keeps the previous wake-up histogram
and computes each interval's p99 from the difference of the two (a histogram of the
cycles run in between). When the scan restarts its stats the counters go backwards;
the sampler notices (``cycles`` smaller than before) and takes the new histogram as
the interval's.

Rates (cycles per second, journal appends per second, CPU%) need two samples; on
the first one they are ``None`` rather than a misleading zero. ``petra-top --once``
therefore samples twice, a short interval apart.

Clocks
------
Heartbeats carry CLOCK_MONOTONIC times, slot timestamps and the segment's creation
time carry CLOCK_REALTIME, so the sampler reads both from its injectable
:class:`Clock` (tests pass a fake one; Python's ``time.monotonic_ns`` is the same
CLOCK_MONOTONIC the C core uses on Linux).

Processes
---------
CPU% and RSS come from psutil. ``Process.cpu_percent()`` measures since its previous
call on the *same* object, so objects are cached per pid, and dropped when the pid
goes away or is reused (psutil compares the creation time). A pid this user may not
inspect (another user's process) still shows, with CPU% and RSS unknown.

CPU affinity
------------
A heartbeat's ``cpu`` field is 0 both for "pinned to CPU 0" and "not pinned", so the
CPU column comes from the OS instead (``sched_getaffinity`` through psutil): the CPUs
the process may run on, and whether that is fewer than the machine has.

Robustness
----------
Nothing read here is trusted to be tidy: a percentile beyond the histogram is ``inf``,
a float signal may hold NaN, a pid may vanish between two calls. Those pass through
as data (the formatters render them); only a failure to read the segment at all
raises, and the live view shows that instead of crashing.

Journal lag
-----------
The segment does not know its consumers (their cursors are private). A sink that
wants its lag shown publishes its cursor position in heartbeat counter
:data:`SINK_CURSOR_COUNTER` (roles ``sink:*``); the sampler reports ``head - position``.
"""

from __future__ import annotations

import collections
import functools
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import NamedTuple, Protocol, Self

import numpy as np
import numpy.typing as npt
import psutil

from petra.errors import PetraError
from petra.shm import (
    Heartbeat,
    Quality,
    Segment,
    SignalInfo,
    SignalType,
    hist_percentile_us,
    read_heartbeats,
    read_stats,
)
from petra.top._snapshot import (
    AlarmsView,
    ConsumerLag,
    JournalView,
    ProcessView,
    ScanView,
    SignalDetail,
    SignalView,
    Snapshot,
)
from petra.types import SINK_ALARMS, SINK_PREFIX, AlarmCounter, SinkCounter, role_kind, sink_role

SINK_CURSOR_COUNTER = int(SinkCounter.JOURNAL_POSITION)
"""Heartbeat counter in which a ``sink:*`` process publishes its journal cursor."""
DEFAULT_HISTORY = 120
FAILED_REFRESH_S = 1.0  # the supervisor rewrites its state file when a child fails


def failed_children(instance: str) -> dict[str, str]:
    """Role -> reason of each child the instance's supervisor left down (FAILED), from
    its state file; empty when there is none or it cannot be read (a plant run without
    a supervisor, another user's file: nothing to tell, never an error)."""
    from petra.supervisor import read_state

    try:
        failed = read_state(instance).get("failed")
    except PetraError:
        return {}
    if not isinstance(failed, dict):
        return {}
    return {str(role): str(reason) for role, reason in failed.items()}

_QUALITY_NAMES = {int(q): q.name.lower() for q in Quality}


@dataclass(frozen=True, slots=True)
class SignalMeta:
    """What the plant file says about a signal beyond the segment's directory."""

    description: str = ""
    minimum: float | None = None
    maximum: float | None = None


def _limit(info: SignalInfo, which: str, meta: SignalMeta | None) -> float | None:
    """A signal's min or max: the directory's when it carries limits, else the file's."""
    value = getattr(info, which, None)
    if value is None and meta is not None:
        value = getattr(meta, which)
    return None if value is None else float(value)


@functools.cache
def hist_top_us(n_buckets: int) -> float:
    """Upper edge (us) of the last finite bucket of an ``n_buckets`` histogram (the
    last bucket is the overflow): asked of :func:`hist_percentile_us` itself, so it
    stays right whatever bucket layout the stats block uses."""
    if n_buckets < 2:
        return math.inf
    probe = np.zeros(n_buckets, np.uint64)
    probe[n_buckets - 2] = 1
    return hist_percentile_us(probe, 100.0)


def _alarms(beats: list[Heartbeat]) -> AlarmsView | None:
    """The alarm manager's counters, when it runs."""
    hb = next((b for b in beats if b.role == sink_role(SINK_ALARMS)), None)
    if hb is None:
        return None
    c = hb.counters
    return AlarmsView(active=c[AlarmCounter.ACTIVE], unacked=c[AlarmCounter.UNACKED],
                      hidden=c[AlarmCounter.HIDDEN], per_10min=c[AlarmCounter.PER_10MIN],
                      standing=c[AlarmCounter.STANDING], chattering=c[AlarmCounter.CHATTERING])


class Clock(Protocol):
    """The two clocks a sample needs."""

    def monotonic_ns(self) -> int: ...

    def time_ns(self) -> int: ...


class SystemClock:
    """The real clocks."""

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()

    def time_ns(self) -> int:
        return time.time_ns()


class Probe(NamedTuple):
    """What the OS says about one pid."""

    alive: bool
    cpu_percent: float | None
    rss_bytes: int | None
    affinity: tuple[int, ...] | None


_GONE = Probe(False, None, None, None)
_HIDDEN = Probe(True, None, None, None)  # alive but not ours to inspect


class _ProcessProbe:
    """CPU%, RSS and affinity per pid, with psutil objects kept between samples."""

    def __init__(self) -> None:
        self._procs: dict[int, psutil.Process] = {}

    def probe(self, pid: int) -> Probe:
        """The CPU% is None on a pid's first sample (psutil needs two)."""
        proc = self._procs.get(pid)
        first = False
        if proc is None or not proc.is_running():
            try:
                proc = psutil.Process(pid)
            except psutil.NoSuchProcess:
                self._procs.pop(pid, None)
                return _GONE
            except psutil.Error:
                return _HIDDEN
            self._procs[pid] = proc
            first = True
        try:
            with proc.oneshot():
                cpu = proc.cpu_percent(interval=None)
                rss = int(proc.memory_info().rss)
                affinity = tuple(sorted(proc.cpu_affinity()))
        except psutil.NoSuchProcess:
            self._procs.pop(pid, None)
            return _GONE
        except psutil.Error:  # AccessDenied, zombie: alive but not inspectable
            return _HIDDEN
        return Probe(True, None if first else float(cpu), rss, affinity)

    def forget_except(self, pids: set[int]) -> None:
        for pid in list(self._procs):
            if pid not in pids:
                del self._procs[pid]


class Sampler:
    """Reads one instance's segment into snapshots; keeps what rates need between calls.

    The sampler owns neither the plant nor (unless made by :meth:`attach`) the segment
    handle. Not thread-safe: one sampler per thread.
    """

    def __init__(self, segment: Segment, *, clock: Clock | None = None,
                 history: int = DEFAULT_HISTORY, owns_segment: bool = False,
                 meta: Mapping[str, SignalMeta] | None = None,
                 failed: Callable[[], Mapping[str, str]] | None = None) -> None:
        """``meta``: what the plant file says about each signal (descriptions, limits),
        when the caller could read it; the segment's directory is used without it.
        ``failed``: the children the supervisor left down, role -> reason (read at most
        every :data:`FAILED_REFRESH_S`); they have no heartbeat, so only it can tell."""
        self._seg = segment
        self._failed_reader = failed
        self._failed: Mapping[str, str] = {}
        self._failed_read_ns: int | None = None
        self._meta: Mapping[str, SignalMeta] = meta or {}
        self._n_cpus = psutil.cpu_count() or 1
        self._owns = owns_segment
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._probe = _ProcessProbe()
        self._history: collections.deque[float] = collections.deque(maxlen=history)
        self._prev_hist: npt.NDArray[np.uint64] | None = None
        self._prev_cycles = 0
        self._prev_mono_ns: int | None = None
        self._prev_head = 0
        info = segment.info()
        self._created_ns = info.created_ns
        self._capacity = info.journal_capacity
        sigs = segment.signals
        self._names = [s.name for s in sigs]
        self._units = [s.unit for s in sigs]
        self._owners = [s.owner for s in sigs]
        self._writable = [s.writable for s in sigs]
        self._type_names = [s.type.name.lower() for s in sigs]
        types = np.array([int(s.type) for s in sigs], dtype=np.uint8)
        self._float_list: list[bool] = (types == int(SignalType.FLOAT)).tolist()
        self._bool_list: list[bool] = (types == int(SignalType.BOOL)).tolist()

    @classmethod
    def attach(cls, instance: str, *, clock: Clock | None = None,
               history: int = DEFAULT_HISTORY,
               meta: Mapping[str, SignalMeta] | None = None) -> Sampler:
        """Attach read-only to a running instance by name (failed children from its
        supervisor's state file)."""
        return cls(Segment.attach(instance, readonly=True), clock=clock, history=history,
                   owns_segment=True, meta=meta, failed=lambda: failed_children(instance))

    @property
    def segment(self) -> Segment:
        return self._seg

    def close(self) -> None:
        if self._owns:
            self._seg.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # ------------------------------------------------------------------ sampling
    def sample(self) -> Snapshot:
        """Read everything once."""
        mono = self._clock.monotonic_ns()
        real = self._clock.time_ns()
        dt_s = None if self._prev_mono_ns is None else (mono - self._prev_mono_ns) / 1e9
        if dt_s is not None and dt_s <= 0:
            dt_s = None
        info = self._seg.info()
        beats = read_heartbeats(self._seg)
        scan = self._scan(real, dt_s)
        journal = self._journal(info.journal_head, info.producer_drops, beats, dt_s)
        snap = Snapshot(
            instance=self._seg.instance,
            taken_ns=real,
            uptime_s=max(0.0, (real - self._created_ns) / 1e9),
            scan=scan,
            processes=self._processes(beats, mono),
            signals=self._signals(real),
            journal=journal,
            alarms=_alarms(beats),
        )
        self._prev_mono_ns = mono
        return snap

    def _scan(self, real_ns: int, dt_s: float | None) -> ScanView:
        st = read_stats(self._seg)
        hist = st.wake_hist
        restarted = self._prev_hist is None or st.cycles < self._prev_cycles
        delta = hist if restarted else hist - self._prev_hist  # type: ignore[operator]
        new_cycles = st.cycles if restarted else st.cycles - self._prev_cycles
        if self._prev_hist is not None or st.cycles:
            self._history.append(hist_percentile_us(delta, 99.0) if new_cycles else 0.0)
        rate = None if dt_s is None or restarted else new_cycles / dt_s
        self._prev_hist = hist
        self._prev_cycles = st.cycles
        return ScanView(
            period_us=st.period_ns / 1e3,
            cycles=st.cycles,
            overruns=st.overruns,
            skipped=st.skipped,
            exec_last_us=st.exec_last_ns / 1e3,
            exec_avg_us=st.exec_avg_ns / 1e3,
            exec_max_us=st.exec_max_ns / 1e3,
            wake_last_us=st.wake_last_ns / 1e3,
            wake_avg_us=st.wake_avg_ns / 1e3,
            wake_max_us=st.wake_max_ns / 1e3,
            wake_p50_us=st.wake_percentile_us(50.0),
            wake_p90_us=st.wake_percentile_us(90.0),
            wake_p99_us=st.wake_percentile_us(99.0),
            wake_p999_us=st.wake_percentile_us(99.9),
            running_s=max(0.0, (real_ns - st.started_ns) / 1e9) if st.started_ns else 0.0,
            cycles_per_s=rate,
            history=tuple(self._history),
            hist_top_us=hist_top_us(len(hist)),
        )

    def _processes(self, beats: list[Heartbeat], mono_ns: int) -> tuple[ProcessView, ...]:
        views = []
        seen: dict[int, Probe] = {}
        for hb in beats:
            # Several records may share a pid (threads of one process): probe it once,
            # a second cpu_percent() call microseconds later would read ~0.
            if hb.pid not in seen:
                seen[hb.pid] = self._probe.probe(hb.pid)
            pr = seen[hb.pid]
            views.append(ProcessView(
                record=hb.record, role=hb.role, pid=hb.pid, state=hb.state.name.lower(),
                restarts=hb.restarts, cpu=hb.cpu, alive=pr.alive, cpu_percent=pr.cpu_percent,
                rss_bytes=pr.rss_bytes,
                heartbeat_age_ms=max(0.0, (mono_ns - hb.last_beat_ns) / 1e6),
                counters=hb.counters, affinity=pr.affinity,
                pinned=None if pr.affinity is None else len(pr.affinity) < self._n_cpus))
        self._probe.forget_except({hb.pid for hb in beats})
        live = {hb.role for hb in beats}
        for role, reason in sorted(self._failed_now(mono_ns).items()):
            if role not in live:
                views.append(ProcessView(
                    record=-1, role=role, pid=0, state="failed", restarts=0, cpu=0,
                    alive=False, cpu_percent=None, rss_bytes=None,
                    heartbeat_age_ms=math.nan, counters=(), why=reason))
        return tuple(views)

    def _failed_now(self, mono_ns: int) -> Mapping[str, str]:
        reader = self._failed_reader
        if reader is None:
            return {}
        last = self._failed_read_ns
        if last is None or mono_ns - last >= FAILED_REFRESH_S * 1e9 or mono_ns < last:
            self._failed_read_ns = mono_ns
            self._failed = reader()
        return self._failed

    def _signals(self, real_ns: int) -> tuple[SignalView, ...]:
        if not self._names:
            return ()
        batch = self._seg.read_batch()
        bits = batch.values
        floats = bits.view(np.float64).tolist()
        ints = bits.view(np.int64).tolist()
        values: list[bool | int | float] = [
            f if is_f else (i == 1 if is_b else i)
            for f, i, is_f, is_b in zip(floats, ints, self._float_list, self._bool_list,
                                        strict=True)]
        ages = ((real_ns - batch.source_ts_ns) / 1e6).clip(min=0.0).tolist()
        quality = [_QUALITY_NAMES.get(q, "bad") for q in batch.quality.tolist()]
        # the batch read carries no substatus: read it for the (few) signals not GOOD
        substatus = ["none"] * len(values)
        for i, q in enumerate(quality):
            if q != "good":
                substatus[i] = self._seg.read_index(i).substatus.name.lower()
        return tuple(map(SignalView._make, zip(
            range(len(values)), self._names, self._type_names, values, quality, ages,
            self._units, self._owners, self._writable, substatus, strict=True)))

    def detail(self, name: str) -> SignalDetail:
        """One signal in full: a consistent slot read (value, quality, substatus, both
        timestamps, writer), its directory entry, and the writer's role when it is a
        live process of the plant. Raises UnknownSignalError for a name not in the
        segment."""
        info = self._seg.info_of(name)
        sample = self._seg.read(info.index)
        real = self._clock.time_ns()
        roles = {hb.pid: hb.role for hb in read_heartbeats(self._seg)}
        roles.setdefault(os.getpid(), "this process")  # petra-top's own write key
        meta = self._meta.get(name)
        return SignalDetail(
            name=info.name, type=info.type.name.lower(), unit=info.unit, owner=info.owner,
            writable=info.writable, value=sample.value, quality=sample.quality.name.lower(),
            substatus=sample.substatus.name.lower(),
            source_age_ms=max(0.0, (real - sample.source_ts_ns) / 1e6),
            write_age_ms=max(0.0, (real - sample.write_ts_ns) / 1e6),
            writer_pid=sample.writer, writer_role=roles.get(sample.writer),
            minimum=_limit(info, "minimum", meta), maximum=_limit(info, "maximum", meta),
            description=meta.description if meta is not None else "")

    def _journal(self, head: int, drops: int, beats: list[Heartbeat],
                 dt_s: float | None) -> JournalView:
        rate = None if dt_s is None else max(0, head - self._prev_head) / dt_s
        self._prev_head = head
        consumers = tuple(
            ConsumerLag(role=hb.role, position=hb.counters[SINK_CURSOR_COUNTER],
                        lag=max(0, head - hb.counters[SINK_CURSOR_COUNTER]))
            for hb in beats
            if role_kind(hb.role) == SINK_PREFIX and hb.counters[SINK_CURSOR_COUNTER] > 0)
        return JournalView(head=head, capacity=self._capacity, producer_drops=drops,
                           rate_per_s=rate, consumers=consumers)
