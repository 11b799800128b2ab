"""``GET {PREFIX}/history``: one signal's recorded samples over a time window, for the
web page's trends.

It reads the history sink's Parquet files read-only (the sink writes a file under a
temporary name and renames it when complete, so a reader never sees half a file) and
never the WAL: what the last ``max_file_age_s`` holds is not there yet, and the page
draws that part from the live WebSocket feed instead.

Bounded on every axis: one signal per request, a window of at most :data:`MAX_WINDOW_NS`,
at most :data:`MAX_POINTS` points answered, at most :data:`MAX_ROWS` rows read (beyond
that the answer says ``truncated``), the read run off the event loop with one at a time
per process. Downsampling keeps the extremes: the window is cut into ``max_points / 2``
equal buckets and each bucket gives its minimum and its maximum in time order (a spike
is never averaged away), with the worst quality of the bucket.

The API is a runtime role beside ``petra.history`` and imports none of it (layers, see
docs/architecture.md): the Parquet layout it reads (hive partitions ``date=``/``hour=``,
columns ``ts``, ``signal``, ``value_f``/``value_i``/``value_b``, ``quality``) is the
documented file format of docs/history.md.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from aiohttp import web

from petra.api._auth import ctx_of
from petra.api._http import ApiError, int_param, json_response, query
from petra.types import QUALITIES

log = logging.getLogger("petra.api")

MAX_POINTS = 10_000
DEFAULT_POINTS = 1_000
MAX_WINDOW_NS = 31 * 86_400 * 1_000_000_000
DEFAULT_WINDOW_NS = 3_600 * 1_000_000_000
MAX_ROWS = 5_000_000
_QNAMES = tuple(q.name for q in QUALITIES)
ONE_READ = web.AppKey("history_read", asyncio.Semaphore)


def _date(ns: int) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)
            ).strftime("%Y-%m-%d")


def read_window(directory: Path, signal: str, start_ns: int, end_ns: int
                ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64],
                           npt.NDArray[np.uint8], bool]:
    """(ts, value, quality, truncated) of ``signal`` with ``start_ns <= ts < end_ns``,
    in time order; bools and ints as floats. Empty arrays when nothing is recorded."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    empty = (np.zeros(0, np.int64), np.zeros(0, np.float64), np.zeros(0, np.uint8), False)
    if not directory.is_dir():
        return empty
    part = ds.partitioning(pa.schema([("date", pa.string()), ("hour", pa.int32())]),
                           flavor="hive")
    # Temporary files of a flush in progress start with a dot: the dataset ignores them.
    data = ds.dataset(directory, format="parquet", partitioning=part)
    if not data.files:
        return empty
    t0 = pa.scalar(start_ns, pa.timestamp("ns", tz="UTC"))
    t1 = pa.scalar(end_ns, pa.timestamp("ns", tz="UTC"))
    flt = ((ds.field("date") >= _date(start_ns)) & (ds.field("date") <= _date(end_ns))
           & (ds.field("signal") == signal) & (ds.field("ts") >= t0) & (ds.field("ts") < t1))
    table = data.to_table(columns=["ts", "value_f", "value_i", "value_b", "quality"],
                          filter=flt)
    truncated = table.num_rows > MAX_ROWS
    if table.num_rows == 0:
        return empty
    table = table.sort_by([("ts", "ascending")])
    if truncated:
        table = table.slice(0, MAX_ROWS)
    value = pc.coalesce(table.column("value_f"),
                        pc.cast(table.column("value_i"), pa.float64()),
                        pc.cast(table.column("value_b"), pa.float64()))
    ts = table.column("ts").cast(pa.int64()).to_numpy().astype(np.int64)
    v = pc.fill_null(value, math.nan).to_numpy().astype(np.float64)
    q = table.column("quality").to_numpy().astype(np.uint8)
    return ts, v, q, truncated


def downsample(ts: npt.NDArray[np.int64], v: npt.NDArray[np.float64],
               q: npt.NDArray[np.uint8], *, start_ns: int, end_ns: int, max_points: int
               ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64],
                          npt.NDArray[np.uint8]]:
    """At most ``max_points`` samples: per bucket its min and max sample (time order),
    carrying the bucket's worst quality (lowest code: BAD < UNCERTAIN < GOOD)."""
    if len(ts) <= max_points:
        return ts, v, q
    buckets = max(1, max_points // 2)
    width = max(1, -(-(end_ns - start_ns) // buckets))
    b = np.minimum((ts - start_ns) // width, buckets - 1)
    # NaN (a BAD sample with no value) must not win min or max: compare on a copy.
    lo_key = np.where(np.isnan(v), np.inf, v)
    hi_key = np.where(np.isnan(v), -np.inf, v)
    starts = np.flatnonzero(np.r_[True, b[1:] != b[:-1]])
    keep: list[int] = []
    worst: list[int] = []
    for k, s in enumerate(starts.tolist()):
        e = int(starts[k + 1]) if k + 1 < len(starts) else len(ts)
        i_lo = s + int(np.argmin(lo_key[s:e]))
        i_hi = s + int(np.argmax(hi_key[s:e]))
        w = int(q[s:e].min())
        for i in sorted({i_lo, i_hi}):
            keep.append(i)
            worst.append(w)
    idx = np.asarray(keep, np.intp)
    return ts[idx], v[idx], np.asarray(worst, np.uint8)


async def history(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    params = query(request, ("signal", "start_ns", "end_ns", "max_points"))
    name = params.get("signal")
    if not name:
        raise ApiError(400, "signal is required (one signal name)")
    now = time.time_ns()
    end_ns = int_param(params, "end_ns", now, 0, 1 << 62)
    start_ns = int_param(params, "start_ns", max(0, end_ns - DEFAULT_WINDOW_NS), 0, 1 << 62)
    max_points = int_param(params, "max_points", DEFAULT_POINTS, 2, MAX_POINTS)
    # 422, not 400: each parameter is well-formed, their combination is refused.
    if end_ns <= start_ns:
        raise ApiError(422, "end_ns must be after start_ns")
    if end_ns - start_ns > MAX_WINDOW_NS:
        raise ApiError(422, f"the window is at most {MAX_WINDOW_NS // 86_400_000_000_000} "
                       "days")
    if name not in ctx.segment:
        raise ApiError(404, f"no signal named {name[:80]!r}")
    if ctx.history_dir is None:
        raise ApiError(404, "this plant records no history (no history: section, or "
                       "Parquet is off)")
    import pyarrow as pa

    async with request.app[ONE_READ]:
        try:
            ts, v, q, truncated = await asyncio.to_thread(
                read_window, ctx.history_dir, name, start_ns, end_ns)
        except (OSError, pa.ArrowException) as exc:
            # a file removed by retention between listing and reading, or damaged
            log.warning("event=api_history_read_failed signal=%r error=%s", name[:80],
                        str(exc)[:200])
            raise ApiError(503, "cannot read the history files now (logged)") from None
    count = len(ts)
    ts, v, q = downsample(ts, v, q, start_ns=start_ns, end_ns=end_ns, max_points=max_points)
    return json_response({"signal": name, "start_ns": start_ns, "end_ns": end_ns,
                          "count": count, "downsampled": len(ts) < count,
                          "truncated": truncated, "points": points(ts, v, q)})


def add_routes(app: web.Application, prefix: str) -> None:
    app[ONE_READ] = asyncio.Semaphore(1)
    app.router.add_get(f"{prefix}/history", history)


def points(ts: npt.NDArray[np.int64], v: npt.NDArray[np.float64], q: npt.NDArray[np.uint8]
           ) -> list[list[Any]]:
    """[[ts_ns, value or None, quality name], ...] (NaN and infinities as None)."""
    vals = [None if math.isnan(x) or math.isinf(x) else x for x in v.tolist()]
    quals = [_QNAMES[c] if c < len(_QNAMES) else str(c) for c in q.tolist()]
    return [[t, x, qq] for t, x, qq in zip(ts.tolist(), vals, quals, strict=True)]
