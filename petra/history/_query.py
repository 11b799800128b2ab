"""Reading the Parquet history back: by signal (names or patterns) and time range,
optionally aggregated per interval.

Reading uses ``pyarrow.dataset`` with hive partitioning, so a query for one hour of
yesterday opens only yesterday's directory (partition pruning on ``date``), and row
groups whose time or signal statistics rule them out are skipped.
"""

from __future__ import annotations

import fnmatch
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

NS = 1_000_000_000
_REL_RE = re.compile(r"^\s*-\s*([0-9]+(?:\.[0-9]*)?)\s*(s|min|m|h|d)\s*$")
_UNIT_S = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
_AGG_RE = re.compile(r"^\s*([0-9]+)\s*(s|m|min|h|d)\s*$")


def parse_time(text: str, now_ns: int) -> int:
    """A point in time in ns since the epoch (UTC): ``now``, ``-15min``/``-2h``/``-1d``,
    ISO 8601 (``2026-12-01``, ``2026-12-01T13:00``; without a zone: UTC), or epoch
    seconds."""
    t = text.strip()
    if t == "now":
        return now_ns
    m = _REL_RE.match(t)
    if m:
        return now_ns - int(float(m.group(1)) * _UNIT_S[m.group(2)] * NS)
    try:
        return int(float(t) * NS)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(t)
    except ValueError:
        raise ValueError(f"cannot read time {text!r}: use ISO 8601 (2026-12-01T13:00), "
                         f"now, -15min/-2h/-1d or epoch seconds") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp()) * NS + dt.microsecond * 1000


def parse_interval(text: str) -> int:
    """``1m``/``10s``/``1h``/``1d`` as ns."""
    m = _AGG_RE.match(text)
    if m is None or int(m.group(1)) <= 0:
        raise ValueError(f"cannot read interval {text!r}: use e.g. 10s, 1m, 1h, 1d")
    return int(m.group(1)) * _UNIT_S[m.group(2)] * NS


def _date(ns: int) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)
            ).strftime("%Y-%m-%d")


def read_samples(directory: Path, signals: list[str], t_from: int, t_to: int) -> Any:
    """Samples of ``signals`` (names or fnmatch patterns; empty = all) with
    ``t_from <= ts < t_to``, sorted by signal and time, as an Arrow table with columns
    ts, signal, value (float64: bools and ints converted), value_f, value_i, value_b,
    quality, substatus."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    part = ds.partitioning(pa.schema([("date", pa.string()), ("hour", pa.int32())]),
                           flavor="hive")
    if not directory.exists():
        raise FileNotFoundError(f"no Parquet history at {directory}")
    data = ds.dataset(directory, format="parquet", partitioning=part,
                      exclude_invalid_files=False)
    ts = pa.scalar(t_from, pa.timestamp("ns", tz="UTC"))
    te = pa.scalar(t_to, pa.timestamp("ns", tz="UTC"))
    flt = ((ds.field("date") >= _date(t_from)) & (ds.field("date") <= _date(t_to))
           & (ds.field("ts") >= ts) & (ds.field("ts") < te))
    exact = [s for s in signals if not any(c in s for c in "*?[")]
    if signals and len(exact) == len(signals):
        flt = flt & ds.field("signal").isin(exact)
    cols = ["ts", "signal", "value_f", "value_i", "value_b", "quality", "substatus"]
    table = data.to_table(columns=cols, filter=flt)
    table = table.set_column(1, "signal", pc.cast(table.column("signal"), pa.string()))
    if signals and len(exact) != len(signals):
        names = pc.unique(table.column("signal")).to_pylist()
        keep = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in signals)]
        table = table.filter(pc.is_in(table.column("signal"), pa.array(keep, pa.string())))
    value = pc.coalesce(table.column("value_f"), pc.cast(table.column("value_i"), pa.float64()),
                        pc.cast(table.column("value_b"), pa.float64()))
    table = table.append_column("value", value)
    return table.sort_by([("signal", "ascending"), ("ts", "ascending")])


def aggregate(table: Any, interval_ns: int) -> Any:
    """Per signal and interval: first time, min, max, mean, last value and count."""
    import pyarrow as pa

    ts = table.column("ts").cast(pa.int64()).to_numpy()
    bucket = (ts // interval_ns) * interval_ns
    t = table.append_column("bucket", pa.array(bucket, pa.int64()))
    out = t.group_by(["signal", "bucket"], use_threads=False).aggregate([
        ("value", "min"), ("value", "max"), ("value", "mean"), ("value", "last"),
        ("value", "count")])
    out = out.sort_by([("signal", "ascending"), ("bucket", "ascending")])
    return pa.table({
        "ts": pa.array(out.column("bucket").to_numpy(), pa.timestamp("ns", tz="UTC")),
        "signal": out.column("signal"), "min": out.column("value_min"),
        "max": out.column("value_max"), "mean": out.column("value_mean"),
        "last": out.column("value_last"), "count": out.column("value_count")})


def format_ts(ns: int) -> str:
    dt = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{(ns % NS) // 1000:06d}Z"


def rows(table: Any) -> list[dict[str, Any]]:
    """The table as a list of dicts with ts as ISO text (for json/csv/table output)."""
    import pyarrow as pa

    cols = {name: table.column(name) for name in table.column_names}
    ts = cols.pop("ts").cast(pa.int64()).to_numpy()
    plain = {k: v.to_pylist() for k, v in cols.items()}
    out = []
    for i in range(len(ts)):
        row: dict[str, Any] = {"ts": format_ts(int(ts[i]))}
        for k, v in plain.items():
            row[k] = v[i]
        out.append(row)
    return out


def plot(table: Any, path: Path, title: str = "") -> None:
    """One line per signal (a step plot: a value holds until the next sample)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pyarrow as pa

    fig, ax = plt.subplots(figsize=(10, 4.5), dpi=100)
    sig = table.column("signal").to_pylist()
    ts = table.column("ts").cast(pa.int64()).to_numpy()
    col = "value" if "value" in table.column_names else "mean"
    val = table.column(col).to_numpy(zero_copy_only=False)
    names = list(dict.fromkeys(sig))
    sig_arr = np.asarray(sig, dtype=object)
    for name in names:
        sel = sig_arr == name
        times = (ts[sel].astype("datetime64[ns]"))
        ax.step(times, val[sel], where="post", label=name)
    ax.set_xlabel("time (UTC)")
    ax.set_ylabel(col)
    if title:
        ax.set_title(title)
    if names:
        ax.legend(loc="best", fontsize="small")
    ax.grid(True, alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
