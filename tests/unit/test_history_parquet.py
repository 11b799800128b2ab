"""Parquet destination: exactly once across crashes at every step of a flush,
partitions, retention, compaction; reading it back (query, aggregate, CLI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from petra.config._history import ParquetConfig, RetentionConfig
from petra.history import Samples, SignalTable, Wal
from petra.history import _parquet as parquet_mod
from petra.history._parquet import ParquetDestination
from petra.history._query import aggregate, parse_interval, parse_time, read_samples

NS_DAY = 86_400 * 10**9
DAY0 = 20_000 * NS_DAY  # 2024-10-04, 00:00 UTC
TABLE = SignalTable(("t.level", "t.count", "t.on"), (3, 2, 1), "x", 1)


def samples(n: int, start_ts: int, step_ns: int, base: int = 0) -> Samples:
    k = np.arange(base, base + n)
    sig = (k % 3).astype(np.uint32)
    value = np.where(sig == 0, (k * 0.5).astype(np.float64).view(np.uint64),
                     np.where(sig == 1, k.astype(np.uint64), (k % 2).astype(np.uint64)))
    ts = start_ts + np.arange(n, dtype=np.int64) * step_ns
    return Samples(sig, value.astype(np.uint64), np.full(n, 2, np.uint8),
                   np.zeros(n, np.uint8), ts, ts + 7)


def fill_wal(path: Path, batches: list[Samples]) -> Wal:
    wal = Wal(path, fsync="off")
    wal.open()
    for k, s in enumerate(batches):
        wal.append(s, TABLE, jpos=k)
    return wal


def pump(dest: ParquetDestination, wal: Wal) -> None:
    while True:
        got = wal.read(dest.read_pos, dest.want())
        if got is None:
            break
        dest.accept(got)
    dest.flush()


def all_rows(d: Path) -> Any:
    files = sorted(d.rglob("part-*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files]) if files else None


def cfg(**kw: Any) -> ParquetConfig:
    return ParquetConfig(**{"max_file_age_s": 1000.0, "compact_after_s": None, **kw})


def test_files_layout_types_and_sort_order(tmp_path: Path) -> None:
    # two days, so two partitions in one flush
    wal = fill_wal(tmp_path / "wal", [samples(300, DAY0 - 100 * 10**9, 10**9)])
    dest = ParquetDestination(tmp_path / "pq", cfg())
    assert dest.open() == 0
    pump(dest, wal)
    assert dest.confirmed == 300
    parts = sorted(p.relative_to(tmp_path / "pq").as_posix()
                   for p in (tmp_path / "pq").rglob("*.parquet"))
    assert parts == ["date=2024-10-03/part-0000000000000000-0000000000000300.parquet",
                     "date=2024-10-04/part-0000000000000000-0000000000000300.parquet"]
    t = pq.read_table(tmp_path / "pq" / parts[1])
    assert t.schema.field("ts").type == pa.timestamp("ns", tz="UTC")
    assert pa.types.is_dictionary(t.schema.field("signal").type)
    assert t.schema.metadata[b"petra.wal_end_seq"] == b"300"
    sig = t.column("signal").to_pylist()
    assert sig == sorted(sig)  # sorted by signal, then time
    lvl = t.filter(pa.compute.equal(t.column("signal"), "t.level"))
    assert lvl.column("value_i").null_count == lvl.num_rows
    assert lvl.column("value_f").to_pylist()[:2] == [51.0, 52.5]  # k = 102, 105
    md = pq.ParquetFile(tmp_path / "pq" / parts[1]).metadata
    assert md.row_group(0).column(2).compression == "ZSTD"
    assert not list((tmp_path / "pq").rglob(".*.tmp"))


@pytest.mark.parametrize("crash_at", ["write", "commit", "rename", "final_state"])
def test_a_crash_at_any_step_of_a_flush_leaves_every_sample_exactly_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash_at: str) -> None:
    wal = fill_wal(tmp_path / "wal", [samples(200, DAY0, 10**9), samples(100, DAY0 + NS_DAY,
                                                                        10**9, 200)])
    dest = ParquetDestination(tmp_path / "pq", cfg())
    dest.open()
    real_write, real_json, real_replace = (dest._write_file, parquet_mod.write_json_atomic,
                                           os.replace)
    calls = {"write": 0, "json": 0}

    class CrashError(Exception):
        pass

    def write_file(*a: Any) -> None:
        calls["write"] += 1
        if crash_at == "write" and calls["write"] == 2:
            raise CrashError  # the second partition's file
        real_write(*a)

    def write_json(path: Path, doc: Any, **kw: Any) -> None:
        calls["json"] += 1
        if crash_at == "commit" and calls["json"] == 1:
            real_json(path, doc, **kw)
            raise CrashError  # committed, then died before renaming
        if crash_at == "final_state" and calls["json"] == 2:
            raise CrashError
        real_json(path, doc, **kw)

    def replace(src: Any, dst: Any) -> None:
        if crash_at == "rename" and str(dst).endswith(".parquet"):
            real_replace(src, dst)
            raise CrashError  # one file renamed, the other not
        real_replace(src, dst)

    monkeypatch.setattr(dest, "_write_file", write_file)
    monkeypatch.setattr(parquet_mod, "write_json_atomic", write_json)
    monkeypatch.setattr(os, "replace", replace)  # what the module calls
    with pytest.raises(CrashError):
        pump(dest, wal)
    monkeypatch.undo()
    # a new process: recover, then carry on from the confirmed position
    again = ParquetDestination(tmp_path / "pq", cfg())
    confirmed = again.open()
    assert confirmed == (0 if crash_at == "write" else 300)
    pump(again, wal)
    rows = all_rows(tmp_path / "pq")
    assert rows.num_rows == 300
    ts = rows.column("ts").cast(pa.int64()).to_numpy()
    assert len(np.unique(ts)) == 300
    assert not list((tmp_path / "pq").rglob(".*.tmp"))


def test_hour_partitions_retention_and_compaction(tmp_path: Path) -> None:
    now = DAY0 + 10 * 3600 * 10**9
    dest = ParquetDestination(tmp_path / "pq", cfg(
        partition="hour", compact_after_s=3600.0,
        retention=RetentionConfig(max_age_s=5 * 3600.0)), wall_ns=lambda: now)
    dest.open()
    wal = Wal(tmp_path / "wal", fsync="off")
    wal.open()
    for h in range(8):  # hours 0..7, three flushes (files) each
        for k in range(3):
            base = (h * 3 + k) * 30
            wal.append(samples(30, DAY0 + h * 3600 * 10**9 + k * 10**9, 10**6, base),
                       TABLE, jpos=0)
            pump(dest, wal)
    hours = [p.name for p in dest.partitions()]
    assert hours == [f"hour={h:02d}" for h in range(8)]
    assert dest.apply_retention() == 5  # hours 0..4 ended 5 h or more before 10:00
    assert [p.name for p in dest.partitions()] == ["hour=05", "hour=06", "hour=07"]
    assert dest.compact() == 3  # every remaining hour closed an hour ago: merged
    for p in dest.partitions():
        files = list(p.glob("*.parquet"))
        assert len(files) == 1
        t = pq.read_table(files[0])
        assert t.num_rows == 90 and t.schema.metadata[b"petra.compacted"] == b"1"
    assert all_rows(tmp_path / "pq").num_rows == 3 * 90
    state = json.loads((tmp_path / "pq" / "_state.json").read_text())
    assert state == {"confirmed": 8 * 90}


def test_retention_by_size_keeps_the_newest_partition(tmp_path: Path) -> None:
    dest = ParquetDestination(tmp_path / "pq", cfg(retention=RetentionConfig(max_bytes=1)))
    dest.open()
    wal = Wal(tmp_path / "wal", fsync="off")
    wal.open()
    for d in range(3):
        wal.append(samples(50, DAY0 + d * NS_DAY, 10**9, d * 50), TABLE, jpos=0)
        pump(dest, wal)
    assert dest.apply_retention() == 2
    assert [p.name for p in dest.partitions()] == ["date=2024-10-06"]


def _recorded(tmp_path: Path) -> Path:
    wal = fill_wal(tmp_path / "wal", [samples(600, DAY0, 10**9)])
    dest = ParquetDestination(tmp_path / "pq", cfg())
    dest.open()
    pump(dest, wal)
    return tmp_path / "pq"


def test_query_by_signal_pattern_and_time_with_aggregation(tmp_path: Path) -> None:
    d = _recorded(tmp_path)
    t = read_samples(d, ["t.level"], DAY0, DAY0 + 60 * 10**9)
    assert t.column("signal").to_pylist() == ["t.level"] * 20
    assert t.column("value").to_pylist()[:3] == [0.0, 1.5, 3.0]
    both = read_samples(d, ["t.c*", "t.on"], DAY0, DAY0 + 30 * 10**9)
    assert sorted(set(both.column("signal").to_pylist())) == ["t.count", "t.on"]
    agg = aggregate(read_samples(d, [], DAY0, DAY0 + 600 * 10**9), parse_interval("1m"))
    lvl = agg.filter(pa.compute.equal(agg.column("signal"), "t.level"))
    assert lvl.num_rows == 10 and lvl.column("count").to_pylist() == [20] * 10
    assert lvl.column("min").to_pylist()[0] == 0.0 and lvl.column("last").to_pylist()[0] == 28.5
    assert read_samples(d, [], DAY0 + 3 * NS_DAY, DAY0 + 4 * NS_DAY).num_rows == 0


def test_time_parsing() -> None:
    now = DAY0
    assert parse_time("now", now) == now
    assert parse_time("-2h", now) == now - 7200 * 10**9
    assert parse_time("2024-10-04", now) == DAY0
    assert parse_time("2024-10-04T01:00:00+01:00", now) == DAY0
    assert parse_time("1728000000.5", now) == 1_728_000_000_500_000_000
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_time("yesterday-ish", now)


def test_cli_query_prints_rows_as_csv_and_json(tmp_path: Path) -> None:
    d = _recorded(tmp_path)
    base = [sys.executable, "-m", "petra", "history", "query", str(d), "t.level",
            "--from", "2024-10-04T00:00:00", "--to", "2024-10-04T00:00:10"]
    out = subprocess.run([*base, "--format", "csv"], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[0] == "ts,signal,value,quality,substatus"
    assert out[1] == "2024-10-04T00:00:00.000000Z,t.level,0.0,2,0"
    assert len(out) == 5  # header + samples at 0, 3, 6, 9 s
    js = json.loads(subprocess.run([*base, "--format", "json", "--agg", "10s"],
                                   capture_output=True, text=True, check=True).stdout)
    assert js == [{"ts": "2024-10-04T00:00:00.000000Z", "signal": "t.level", "min": 0.0,
                   "max": 4.5, "mean": 2.25, "last": 4.5, "count": 4}]
    png = tmp_path / "p.png"
    done = subprocess.run([sys.executable, "-m", "petra", "history", "plot", str(d),
                           "--from", "2024-10-04", "--to", "2024-10-05", "-o", str(png)],
                          capture_output=True, text=True, check=True)
    assert "600 points" in done.stdout and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
