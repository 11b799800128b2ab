"""The plain data petra-top shows: one :class:`Snapshot` per refresh.

A snapshot is what the sampler read from the segment at one moment, already in display
units (microseconds, milliseconds, bytes) but not yet formatted. Rendering (the TUI, the
text dump and ``--once --json``) only ever looks at snapshots, never at the segment, so
it can be tested with hand-made ones and the sampler can be tested without a terminal.

JSON
----
:meth:`Snapshot.to_json` is the stable shape scripts rely on (see ``docs/operations.md``).
JSON has no NaN or infinity, so a non-finite number is written as ``null``: a wake-up
percentile that falls in the histogram's overflow bucket (above ``hist_top_us``) and a
float signal holding NaN both read back as ``null``.

Nothing here assumes the data is sane: a percentile may be infinite, a float NaN, a
process gone. The formatters in ``_columns.py`` turn each of those into text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

from petra.types import DRIVER_PREFIX, SINK_PREFIX, ConnState

JSON_SCHEMA_VERSION = 1


def finite_or_none(x: float | None) -> float | None:
    """``x`` unless it is None, NaN or infinite (JSON cannot carry those)."""
    if x is None or not math.isfinite(x):
        return None
    return x


@dataclass(frozen=True, slots=True)
class ScanView:
    """The scan's timing, from the stats block (times in microseconds)."""

    period_us: float
    cycles: int
    overruns: int
    skipped: int
    exec_last_us: float
    exec_avg_us: float
    exec_max_us: float
    wake_last_us: float
    wake_avg_us: float
    wake_max_us: float
    wake_p50_us: float
    wake_p90_us: float
    wake_p99_us: float
    wake_p999_us: float
    running_s: float
    """Seconds since the scan reset its stats (0 when no scan has started)."""
    cycles_per_s: float | None
    """Cycle rate over the last sampling interval (None on the first sample)."""
    history: tuple[float, ...]
    """Per-interval wake-up p99 (us), oldest first: the sparkline's data. An interval
    whose p99 fell beyond the histogram holds ``inf``."""
    hist_top_us: float = 1000.0
    """Upper edge of the wake-up histogram (us): a percentile beyond it is ``inf``,
    shown as ``>`` this."""

    def to_json(self) -> dict[str, Any]:
        return {
            "period_us": self.period_us,
            "cycles": self.cycles,
            "overruns": self.overruns,
            "skipped": self.skipped,
            "cycles_per_s": finite_or_none(self.cycles_per_s),
            "exec_us": {"last": self.exec_last_us, "avg": self.exec_avg_us,
                        "max": self.exec_max_us},
            "wake_us": {
                "p50": finite_or_none(self.wake_p50_us),
                "p90": finite_or_none(self.wake_p90_us),
                "p99": finite_or_none(self.wake_p99_us),
                "p999": finite_or_none(self.wake_p999_us),
                "avg": self.wake_avg_us,
                "last": self.wake_last_us,
                "max": self.wake_max_us,
            },
            "running_s": self.running_s,
            "hist_top_us": self.hist_top_us,
        }


@dataclass(frozen=True, slots=True)
class ProcessView:
    """One heartbeat record, with what the OS says about its pid."""

    record: int
    role: str
    pid: int
    state: str
    restarts: int
    cpu: int
    """The CPU the process put in its heartbeat (0 also when it is not pinned)."""
    alive: bool
    """Whether a process with that pid exists (as far as this user can see)."""
    cpu_percent: float | None
    rss_bytes: int | None
    heartbeat_age_ms: float
    counters: tuple[int, ...]
    affinity: tuple[int, ...] | None = None
    """The CPUs the OS lets the process run on (None: unknown, e.g. the pid is gone)."""
    pinned: bool | None = None
    """Whether ``affinity`` is narrower than every CPU of the machine (None: unknown)."""
    why: str = ""
    """Why a child is not running: the supervisor's reason for one it left FAILED (such a
    child has no heartbeat record; ``record`` is -1 and ``pid`` its last pid or 0)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "record": self.record,
            "role": self.role,
            "pid": self.pid,
            "state": self.state,
            "restarts": self.restarts,
            "cpu": self.cpu,
            "affinity": None if self.affinity is None else list(self.affinity),
            "pinned": self.pinned,
            "alive": self.alive,
            "cpu_percent": finite_or_none(self.cpu_percent),
            "rss_bytes": self.rss_bytes,
            "heartbeat_age_ms": finite_or_none(self.heartbeat_age_ms),
            "counters": list(self.counters),
            "link": self.link,
            "why": self.why,
        }

    @property
    def link(self) -> str | None:
        """A driver's or sink's connection state by name (counter 0), else None."""
        if not self.role.startswith((f"{DRIVER_PREFIX}:", f"{SINK_PREFIX}:")):
            return None
        try:
            return ConnState(self.counters[0]).name.lower() if self.counters else None
        except ValueError:  # a sink whose counter 0 is not a connection state
            return None


class SignalView(NamedTuple):
    """One slot: its current value and how old it is. (A named tuple, not a dataclass:
    a snapshot of 100k signals builds 100k of them, and tuples build ~10x faster.)"""

    slot: int
    name: str
    type: str
    value: bool | int | float
    quality: str
    age_ms: float
    """Milliseconds since the value's source timestamp (the write time, unless the
    writer supplied a device timestamp)."""
    unit: str
    owner: str
    writable: bool = False
    """Operators may write it (through the checked path: ``petra write``, the ``w`` key)."""
    substatus: str = "none"
    """Why the quality is what it is (``not_connected``, ``out_of_range``...)."""

    def to_json(self) -> dict[str, Any]:
        value: bool | int | float | None = self.value
        if isinstance(value, float):
            value = finite_or_none(value)
        return {"value": value, "quality": self.quality, "substatus": self.substatus,
                "age_ms": self.age_ms, "unit": self.unit, "type": self.type,
                "owner": self.owner, "writable": self.writable}


@dataclass(frozen=True, slots=True)
class SignalDetail:
    """Everything known about one signal: one full slot read, its directory entry and,
    when the plant file can be read, its configuration (the detail pane)."""

    name: str
    type: str
    unit: str
    owner: str
    writable: bool
    value: bool | int | float
    quality: str
    substatus: str
    source_age_ms: float
    write_age_ms: float
    writer_pid: int
    writer_role: str | None
    """The role of the heartbeat record with the writer's pid (None: not a live process
    of the plant, e.g. a ``petra write`` that has exited)."""
    minimum: float | None = None
    maximum: float | None = None
    description: str = ""

    def to_json(self) -> dict[str, Any]:
        value: bool | int | float | None = self.value
        if isinstance(value, float):
            value = finite_or_none(value)
        return {"name": self.name, "type": self.type, "unit": self.unit, "owner": self.owner,
                "writable": self.writable, "value": value, "quality": self.quality,
                "substatus": self.substatus, "source_age_ms": self.source_age_ms,
                "write_age_ms": self.write_age_ms, "writer_pid": self.writer_pid,
                "writer_role": self.writer_role, "min": self.minimum, "max": self.maximum,
                "description": self.description}


@dataclass(frozen=True, slots=True)
class ConsumerLag:
    """How far one journal consumer (a sink) is behind the head."""

    role: str
    position: int
    lag: int


@dataclass(frozen=True, slots=True)
class JournalView:
    """The change journal's activity."""

    head: int
    capacity: int
    producer_drops: int
    rate_per_s: float | None
    """Appends per second over the last sampling interval (None on the first sample)."""
    consumers: tuple[ConsumerLag, ...]

    @property
    def max_lag(self) -> int | None:
        return max((c.lag for c in self.consumers), default=None)

    def to_json(self) -> dict[str, Any]:
        return {
            "head": self.head,
            "capacity": self.capacity,
            "producer_drops": self.producer_drops,
            "rate_per_s": finite_or_none(self.rate_per_s),
            "lag": self.max_lag,
            "consumers": [{"role": c.role, "position": c.position, "lag": c.lag}
                          for c in self.consumers],
        }


@dataclass(frozen=True, slots=True)
class AlarmsView:
    """The alarm manager's figures, from its heartbeat counters (``AlarmCounter``)."""

    active: int
    unacked: int
    hidden: int
    per_10min: int
    standing: int
    chattering: int

    def to_json(self) -> dict[str, Any]:
        return {"active": self.active, "unacked": self.unacked, "hidden": self.hidden,
                "per_10min": self.per_10min, "standing": self.standing,
                "chattering": self.chattering}


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything petra-top shows at one refresh."""

    instance: str
    taken_ns: int
    """Wall-clock time of the sample (ns since the epoch)."""
    uptime_s: float
    """Seconds since the segment was created."""
    scan: ScanView
    processes: tuple[ProcessView, ...]
    signals: tuple[SignalView, ...]
    journal: JournalView
    alarms: AlarmsView | None = None
    """None when the plant runs no alarm manager."""

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": JSON_SCHEMA_VERSION,
            "instance": self.instance,
            "taken_ns": self.taken_ns,
            "uptime_s": self.uptime_s,
            "scan": self.scan.to_json(),
            "processes": [p.to_json() for p in self.processes],
            "signals": {s.name: s.to_json() for s in self.signals},
            "journal": self.journal.to_json(),
            "alarms": None if self.alarms is None else self.alarms.to_json(),
        }
