"""Rendering registry: what petra-top shows, declared once, used by every front end.

In the spirit of htop's ``MeterClass``: a :class:`Column` names a title, a width, a
getter (which value of a row it shows, also the sort key) and a formatter (how that
value reads); a :class:`Panel` lists its columns and says which rows of a snapshot it
shows. :data:`HEADER_METERS` do the same for the one-line facts of the header. The
TUI (``_app.py``) and the plain-text dump (:func:`render_text`) both walk these
tables, so adding a column is one entry here and nothing else.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from petra.top._snapshot import AlarmsView, ProcessView, SignalDetail, SignalView, Snapshot

R = TypeVar("R")
Align = Literal["left", "right"]

SPARK_CHARS = "▁▂▃▄▅▆▇█"


# ---------------------------------------------------------------------- formatters
# Every formatter takes whatever the data holds (None, NaN, inf, a negative age) and
# returns text: a bad number is a cell that says so, never an exception in the UI.
def _bad(x: float | None) -> bool:
    return x is None or not math.isfinite(x)


def fmt_us(us: float | None) -> str:
    """A duration given in microseconds: ``12.3 us``, ``1.25 ms``, ``2.50 s``."""
    if us is None or math.isnan(us):
        return "-"
    if math.isinf(us):
        return ">1 ms"  # the overflow of a histogram without a known top
    if us < 10:
        return f"{us:.2f} us"
    if us < 1000:
        return f"{us:.1f} us"
    if us < 1_000_000:
        return f"{us / 1e3:.2f} ms"
    return f"{us / 1e6:.2f} s"


def fmt_percentile(us: float | None, top_us: float) -> str:
    """A histogram percentile: beyond the histogram (``inf``) it reads ``>`` the top
    edge (``>1 ms`` with 1-us buckets up to 1 ms), since only that much is known."""
    if us is not None and math.isinf(us) and us > 0:
        if not math.isfinite(top_us):
            return "overflow"  # a histogram whose top edge is unknown
        return ">" + fmt_us(top_us).replace(".00 ", " ").replace(".0 ", " ")
    return fmt_us(us)


_AGE_STEPS = ((60.0, 1.0, "s"), (3600.0, 60.0, "min"), (86400.0, 3600.0, "h"))


def fmt_age_ms(ms: float | None) -> str:
    """An age given in milliseconds, coarser as it grows."""
    if ms is None or math.isnan(ms):
        return "-"
    if math.isinf(ms):
        return "never"
    ms = max(0.0, ms)
    if ms < 1000:
        return f"{ms:.0f} ms"
    s = ms / 1000
    for limit, size, unit in _AGE_STEPS:
        if s < limit:
            return f"{s / size:.1f} {unit}"
    return f"{s / 86400:.1f} d"


def fmt_uptime(s: float) -> str:
    """``3d 04:05:06`` / ``04:05:06``."""
    if _bad(s):
        return "-"
    total = int(max(0.0, s))
    days, rest = divmod(total, 86400)
    h, rest = divmod(rest, 3600)
    m, sec = divmod(rest, 60)
    clock = f"{h:02d}:{m:02d}:{sec:02d}"
    return f"{days}d {clock}" if days else clock


def fmt_bytes(n: int | None) -> str:
    """Binary units, three significant digits: ``812K``, ``41.2M``."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "K", "M", "G", "T"):
        if value < 1024 or unit == "T":
            if unit == "B":
                return f"{int(value)}B"
            return f"{value:.1f}{unit}" if value < 100 else f"{value:.0f}{unit}"
        value /= 1024
    raise AssertionError("unreachable")


def fmt_percent(p: float | None) -> str:
    return "-" if _bad(p) else f"{p:.1f}%"


def fmt_count(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def fmt_rate(r: float | None) -> str:
    if r is None or _bad(r):
        return "-"
    if r >= 1e6:
        return f"{r / 1e6:.2f}M/s"
    if r >= 1e4:
        return f"{r / 1e3:.1f}k/s"
    return f"{r:.0f}/s"


def fmt_value(v: object) -> str:
    """A signal value: booleans as words, floats to 6 significant digits (``nan``,
    ``inf`` and ``-inf`` as such)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def fmt_limit(v: float | None) -> str:
    return "-" if v is None else f"{v:g}"


def fmt_cpus(cpus: object) -> str:
    """The CPU column: ``all`` for a process that may run anywhere, else its CPUs as
    ranges (``1``, ``0,2``, ``2-5``); ``-`` when the OS would not say."""
    if cpus is None:
        return "-"
    if isinstance(cpus, str):
        return cpus
    ids = sorted(int(c) for c in cpus)  # type: ignore[attr-defined]
    parts: list[str] = []
    i = 0
    while i < len(ids):
        j = i
        while j + 1 < len(ids) and ids[j + 1] == ids[j] + 1:
            j += 1
        parts.append(str(ids[i]) if i == j else f"{ids[i]}-{ids[j]}")
        i = j + 1
    return ",".join(parts) or "-"


def fmt_text(v: object) -> str:
    return str(v)


def spark_values(values: Sequence[float]) -> list[float]:
    """Sparkline data a drawing routine can scale: NaN and negatives become 0, an
    interval beyond the histogram (``inf``) the tallest finite bar, or 1 when there is
    none. textual's Sparkline (and :func:`sparkline`) would fail or mislead on them."""
    finite = [v for v in values if math.isfinite(v)]
    top = max(finite, default=0.0) or 1.0
    return [0.0 if math.isnan(v) or v < 0 else (top if math.isinf(v) else v) for v in values]


def sparkline(values: Sequence[float], width: int, *, top: float | None = None) -> str:
    """The last ``width`` values as block characters scaled to ``top`` (default: the
    largest); a value beyond the histogram draws a full bar."""
    if width <= 0 or not values:
        return ""
    raw = list(values[-width:])
    data = spark_values(raw)
    if top is not None:
        data = [top if math.isinf(r) and r > 0 else v for r, v in zip(raw, data, strict=True)]
    hi = max(data) if top is None else top
    if not math.isfinite(hi) or hi <= 0:
        return SPARK_CHARS[0] * len(data)
    last = len(SPARK_CHARS) - 1
    return "".join(SPARK_CHARS[min(last, max(0, round(v / hi * last)))] for v in data)


def spark_top(snap: Snapshot) -> float | None:
    """The latency line's full bar: the histogram's top edge when an interval went
    beyond it (finite intervals then scale against it too), else None (the largest)."""
    over = any(math.isinf(v) and v > 0 for v in snap.scan.history)
    return snap.scan.hist_top_us if over else None


def spark_label(snap: Snapshot) -> str:
    """What the latency line's full bar stands for: ``p99/refresh 0..250 us``."""
    top = spark_top(snap)
    if top is not None:
        return f"p99/refresh 0..{fmt_percentile(math.inf, top)}"
    finite = [v for v in snap.scan.history if math.isfinite(v)]
    return f"p99/refresh 0..{fmt_us(max(finite, default=0.0))}"


def spark_text(snap: Snapshot, width: int) -> str:
    """The latency line itself (``-`` before the first interval)."""
    return sparkline(snap.scan.history, width, top=spark_top(snap)) or "-"


# ---------------------------------------------------------------------- registry
@dataclass(frozen=True, slots=True)
class Column(Generic[R]):
    """One column of a panel: what it shows of a row and how."""

    key: str
    title: str
    width: int
    get: Callable[[R], Any]
    """The cell's raw value; also the sort key (None sorts first)."""
    fmt: Callable[[Any], str] = fmt_text
    align: Align = "left"
    order: Callable[[R], Any] | None = None
    """The sort key when it is not the shown value (quality sorts bad first)."""

    def cell(self, row: R) -> str:
        return self.fmt(self.get(row))

    def sort_key(self, row: R) -> tuple[int, Any]:
        """None first, then by value; numbers and strings never compared together."""
        v = self.get(row) if self.order is None else self.order(row)
        if v is None:
            return (0, 0)
        if isinstance(v, bool | int | float):
            return (1, float(v) if not (isinstance(v, float) and math.isnan(v)) else -math.inf)
        return (2, str(v))


@dataclass(frozen=True, slots=True)
class Panel(Generic[R]):
    """A table of rows drawn from a snapshot."""

    key: str
    title: str
    columns: tuple[Column[R], ...]
    rows: Callable[[Snapshot], Sequence[R]]
    row_key: Callable[[R], str]
    """A stable identity per row (to highlight changes between refreshes)."""

    def column(self, key: str) -> Column[R]:
        for col in self.columns:
            if col.key == key:
                return col
        raise KeyError(key)


@dataclass(frozen=True, slots=True)
class Meter:
    """One labelled fact of the header."""

    key: str
    label: str
    get: Callable[[Snapshot], Any]
    fmt: Callable[[Any], str] = fmt_text


QUALITY_ORDER = {"bad": 0, "uncertain": 1, "good": 2}
"""Sorting by quality puts the worst first."""


def _cpus(p: ProcessView) -> object:
    """What the CPU column shows: the OS affinity, ``all`` when not pinned."""
    if p.affinity is None or p.pinned is None:
        return None
    return p.affinity if p.pinned else "all"


PROCESS_PANEL: Panel[ProcessView] = Panel(
    key="processes",
    title="Processes",
    columns=(
        Column("role", "ROLE", 22, lambda p: p.role),
        Column("pid", "PID", 8, lambda p: p.pid, fmt_text, "right"),
        Column("state", "STATE", 9,
               lambda p: p.state if p.alive or p.record < 0 else f"{p.state}?"),
        Column("cpu_percent", "CPU%", 7, lambda p: p.cpu_percent, fmt_percent, "right"),
        Column("rss", "RSS", 7, lambda p: p.rss_bytes, fmt_bytes, "right"),
        Column("restarts", "RESTARTS", 8, lambda p: p.restarts, fmt_count, "right"),
        Column("cpu", "CPU", 5, _cpus, fmt_cpus, "right"),
        Column("heartbeat", "BEAT AGE", 9, lambda p: p.heartbeat_age_ms, fmt_age_ms, "right"),
        Column("counters", "COUNTERS", 30,
               lambda p: " ".join(str(c) for c in p.counters if c) or "-"),
        Column("link", "LINK", 12, lambda p: p.link or "-"),
        Column("why", "WHY", 40, lambda p: p.why),
    ),
    rows=lambda s: s.processes,
    row_key=lambda p: f"{p.record}:{p.pid}" if p.record >= 0 else f"failed:{p.role}",
)

SIGNAL_PANEL: Panel[SignalView] = Panel(
    key="signals",
    title="Signals",
    columns=(
        Column("name", "NAME", 32, lambda s: s.name),
        Column("value", "VALUE", 14, lambda s: s.value, fmt_value, "right"),
        Column("unit", "UNIT", 6, lambda s: s.unit),
        Column("quality", "QUALITY", 9, lambda s: s.quality,
               order=lambda s: QUALITY_ORDER.get(s.quality, -1)),
        Column("age", "AGE", 9, lambda s: s.age_ms, fmt_age_ms, "right"),
        Column("type", "TYPE", 5, lambda s: s.type),
        Column("owner", "OWNER", 16, lambda s: s.owner),
        Column("substatus", "WHY", 13, lambda s: "" if s.substatus == "none" else s.substatus),
    ),
    rows=lambda s: s.signals,
    row_key=lambda s: s.name,
)

PANELS: dict[str, Panel[Any]] = {p.key: p for p in (PROCESS_PANEL, SIGNAL_PANEL)}


def _wake_line(s: Snapshot) -> str:
    sc = s.scan

    def pct(v: float) -> str:
        return fmt_percentile(v, sc.hist_top_us)

    return (f"p50 {pct(sc.wake_p50_us)}  p90 {pct(sc.wake_p90_us)}  "
            f"p99 {pct(sc.wake_p99_us)}  p99.9 {pct(sc.wake_p999_us)}  "
            f"max {fmt_us(sc.wake_max_us)}")


def _exec_line(s: Snapshot) -> str:
    sc = s.scan
    return (f"last {fmt_us(sc.exec_last_us)}  avg {fmt_us(sc.exec_avg_us)}  "
            f"max {fmt_us(sc.exec_max_us)}")


def _journal_line(s: Snapshot) -> str:
    j = s.journal
    lag = j.max_lag
    text = f"head {j.head:,}  rate {fmt_rate(j.rate_per_s)}  drops {j.producer_drops:,}"
    text += f"  lag {lag:,}" if lag is not None else "  lag -"
    return text


def fmt_alarms(a: AlarmsView | None) -> str:
    """The alarm meter: ``-`` without an alarm manager."""
    if a is None:
        return "-"
    return (f"{a.active:,} active  {a.unacked:,} unacked  {a.hidden:,} hidden  "
            f"{a.per_10min:,} in 10 min  {a.standing:,} standing  {a.chattering:,} chattering")


HEADER_METERS: tuple[Meter, ...] = (
    Meter("instance", "Instance", lambda s: s.instance),
    Meter("uptime", "Uptime", lambda s: s.uptime_s, fmt_uptime),
    Meter("period", "Period", lambda s: s.scan.period_us, fmt_us),
    Meter("cycles", "Cycles", lambda s: s.scan.cycles, fmt_count),
    Meter("rate", "Rate", lambda s: s.scan.cycles_per_s, fmt_rate),
    Meter("overruns", "Overruns",
          lambda s: f"{s.scan.overruns:,} (skipped {s.scan.skipped:,})"),
    Meter("exec", "Exec", _exec_line),
    Meter("wake", "Wake-up", _wake_line),
    Meter("journal", "Journal", _journal_line),
    Meter("alarms", "Alarms", lambda s: s.alarms, fmt_alarms),
)


def _writer(d: SignalDetail) -> str:
    if not d.writer_pid:
        return "-"
    return f"{d.writer_role} (pid {d.writer_pid})" if d.writer_role else f"pid {d.writer_pid}"


def _limits(d: SignalDetail) -> str:
    if d.minimum is None and d.maximum is None:
        return "-"
    return f"{fmt_limit(d.minimum)} .. {fmt_limit(d.maximum)}"


DETAIL_FIELDS: tuple[tuple[str, Callable[[SignalDetail], str]], ...] = (
    ("Signal", lambda d: f"{d.name}  ({d.type}{', ' + d.unit if d.unit else ''}"
                         f"{', writable' if d.writable else ', read-only'})"),
    ("Description", lambda d: d.description or "-"),
    ("Value", lambda d: f"{fmt_value(d.value)} {d.unit}".rstrip()),
    ("Quality", lambda d: d.quality + (f" ({d.substatus})" if d.substatus != "none" else "")),
    ("Limits", _limits),
    ("Owner", lambda d: d.owner or "-"),
    ("Last writer", _writer),
    ("Age", lambda d: f"source {fmt_age_ms(d.source_age_ms)}, "
                      f"written {fmt_age_ms(d.write_age_ms)} ago"),
)
"""The detail pane of one signal, label and text per line."""


def render_detail(detail: SignalDetail) -> list[tuple[str, str]]:
    return [(label, get(detail)) for label, get in DETAIL_FIELDS]


# ---------------------------------------------------------------------- row selection
def matches(pattern: str, name: str) -> bool:
    """Filter semantics of ``/``: a glob when the pattern has ``*?[``, else a
    case-insensitive substring."""
    if not pattern:
        return True
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(name.lower(), pattern.lower())
    return pattern.lower() in name.lower()


def select_rows(panel: Panel[R], snapshot: Snapshot, *, pattern: str = "",
                sort_key: str | None = None, reverse: bool = False,
                name_of: Callable[[R], str] | None = None) -> list[R]:
    """The rows a panel shows: filtered by ``pattern`` on ``name_of`` (default: the
    row key), sorted by a column."""
    name = name_of or panel.row_key
    rows = [r for r in panel.rows(snapshot) if matches(pattern, name(r))]
    if sort_key is not None:
        col = panel.column(sort_key)
        rows.sort(key=col.sort_key, reverse=reverse)
    return rows


# ---------------------------------------------------------------------- plain text
def _table(panel: Panel[R], rows: Sequence[R]) -> list[str]:
    def pad(text: str, col: Column[R]) -> str:
        text = text if len(text) <= col.width else text[: col.width - 1] + "…"
        return text.rjust(col.width) if col.align == "right" else text.ljust(col.width)

    head = " ".join(pad(c.title, c) for c in panel.columns).rstrip()
    lines = [f"{panel.title} ({len(rows)})", head]
    lines += [" ".join(pad(c.cell(r), c) for c in panel.columns).rstrip() for r in rows]
    return lines


def render_text(snapshot: Snapshot, *, pattern: str = "", spark_width: int = 60) -> str:
    """The whole screen as plain text (``petra-top --once`` without ``--json``)."""
    width = max(len(m.label) for m in HEADER_METERS)
    lines = [f"{m.label.ljust(width)}  {m.fmt(m.get(snapshot))}" for m in HEADER_METERS]
    lines.append(f"{'Latency'.ljust(width)}  {spark_text(snapshot, spark_width)}  (wake-up "
                 f"{spark_label(snapshot)})")
    lines.append("")
    lines += _table(PROCESS_PANEL, list(snapshot.processes))
    lines.append("")
    lines += _table(SIGNAL_PANEL, select_rows(SIGNAL_PANEL, snapshot, pattern=pattern))
    return "\n".join(lines) + "\n"
