"""GET /history's pieces: reading the Parquet layout the history sink writes, and the
min/max downsampling (a spike survives, the bound holds, BAD shows)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from petra.api._history import downsample, points, read_window

NS = 1_000_000_000
T0 = 1_764_633_600 * NS  # 2025-12-02T00:00:00Z


def _write(path: Path, rows: list[tuple[int, str, float | None, int | None, int]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({
        "ts": pa.array([r[0] for r in rows], pa.timestamp("ns", tz="UTC")),
        "signal": pa.array([r[1] for r in rows], pa.string()).dictionary_encode(),
        "value_f": pa.array([r[2] for r in rows], pa.float64()),
        "value_i": pa.array([r[3] for r in rows], pa.int64()),
        "value_b": pa.array([None] * len(rows), pa.bool_()),
        "quality": pa.array([r[4] for r in rows], pa.uint8()),
        "substatus": pa.array([0] * len(rows), pa.uint8()),
    }), path)


def test_read_window_takes_one_signal_in_the_window_across_partitions(tmp_path: Path
                                                                      ) -> None:
    day1 = tmp_path / "date=2025-12-02" / "part-0-3.parquet"
    day2 = tmp_path / "date=2025-12-03" / "part-3-6.parquet"
    _write(day1, [(T0 + 10 * NS, "a", 1.0, None, 2), (T0 + 20 * NS, "b", 9.0, None, 2),
                  (T0 + 30 * NS, "a", None, None, 0)])
    _write(day2, [(T0 + 86_400 * NS, "a", 3.0, None, 2), (T0 + 86_401 * NS, "n", None, 7, 2),
                  (T0 + 90_000 * NS, "a", 4.0, None, 1)])
    # a flush in progress: a temporary name the dataset must not read
    (tmp_path / "date=2025-12-03" / ".part-6-9.parquet.tmp").write_bytes(b"half a file")
    ts, v, q, truncated = read_window(tmp_path, "a", T0, T0 + 90_000 * NS)
    assert ts.tolist() == [T0 + 10 * NS, T0 + 30 * NS, T0 + 86_400 * NS]
    assert v[0] == 1.0 and np.isnan(v[1]) and v[2] == 3.0
    assert q.tolist() == [2, 0, 2] and not truncated
    ts, v, _, _ = read_window(tmp_path, "n", T0, T0 + 2 * 86_400 * NS)
    assert v.tolist() == [7.0]
    assert len(read_window(tmp_path / "none", "a", T0, T0 + NS)[0]) == 0
    assert len(read_window(tmp_path, "zzz", T0, T0 + 2 * 86_400 * NS)[0]) == 0


def test_downsampling_keeps_the_extremes_and_the_bound() -> None:
    n = 100_000
    ts = T0 + np.arange(n, dtype=np.int64) * 1_000_000
    v = np.sin(np.arange(n) / 1000.0)
    v[54_321] = 50.0  # one spike
    v[70_000] = -50.0
    q = np.full(n, 2, np.uint8)
    q[80_000] = 0
    v[80_000] = np.nan  # a BAD sample with no value
    ots, ov, oq = downsample(ts, v, q, start_ns=T0, end_ns=int(ts[-1]) + 1, max_points=500)
    assert len(ots) <= 500
    assert 50.0 in ov.tolist() and -50.0 in ov.tolist()
    assert 0 in oq.tolist()  # the bucket with the BAD sample says so
    assert np.all(np.diff(ots) > 0)  # time order
    assert not np.isnan(ov).any()  # the NaN never wins min or max over real values
    same = downsample(ts[:10], v[:10], q[:10], start_ns=T0, end_ns=T0 + NS, max_points=500)
    assert same[0].tolist() == ts[:10].tolist()


def test_points_spell_quality_and_null_for_nan() -> None:
    out = points(np.array([1, 2], np.int64), np.array([1.5, np.nan]), np.array([2, 0], np.uint8))
    assert out == [[1, 1.5, "GOOD"], [2, None, "BAD"]]


def test_a_damaged_file_is_an_arrow_error_the_endpoint_answers_503_for(tmp_path: Path
                                                                        ) -> None:
    (tmp_path / "date=2025-12-02").mkdir()
    (tmp_path / "date=2025-12-02" / "part-0-1.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises((OSError, pa.ArrowException)):
        read_window(tmp_path, "a", T0, T0 + NS)
