"""Benchmark of the history: WAL appends, journal -> WAL -> Parquet sustained, Parquet bytes
per sample, ClickHouse inserts (chdb, in process) and replay speed.

    python bench/history.py [--reps 3] [--seconds 6] [--rate 1200000] [--json PATH]

Figures (medians of ``--reps``):

- ``wal_append_samples_per_s``: ``Wal.append`` of 65,536-sample batches, fsync every
  100 ms on a worker thread (the sink's policy).
- ``history_parquet_samples_per_s``: the whole sink (journal -> recorder -> WAL with
  fsync every 100 ms -> Parquet files) in this process, while a writer process changes
  10,000 float signals at ``--rate`` changes/s through the journal; the figure is the
  samples Parquet confirmed per second of the run (``journal_lost`` says whether the sink
  kept up: it must be 0 for the figure to count as sustained).
- ``parquet_bytes_per_float_sample``: file bytes per sample for 1,000 slowly changing
  float signals (a random walk in steps of 0.01, one sample a second each).
- ``clickhouse_rows_per_s``: ``ClickHouseDestination`` inserting 2 M WAL samples in
  100 k-row batches into chdb (MergeTree with the codecs of the DDL).
- ``replay_speedup`` / ``replay_rows_per_s``: ``petra replay`` of the demo plant over 10
  minutes of recorded operator inputs: plant time / wall time, and output values
  produced per second.

Goals (docs/history.md): >= 1 M samples/s to Parquet with the WAL on; >= 500 k rows/s to
ClickHouse; <= 4 bytes per slowly changing float sample; replay >= 100x real time.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, median, print_table, write_json

from petra.config._history import ClickHouseConfig, HistoryConfig, ParquetConfig, WalConfig
from petra.history import Samples, SignalTable, Wal
from petra.history._parquet import ParquetDestination

SCHEMA = 1
ROOT = Path(__file__).resolve().parents[1]
CTX = mp.get_context("fork")


def _samples(n: int, n_sig: int, base: int) -> Samples:
    k = np.arange(base, base + n, dtype=np.int64)
    return Samples((k % n_sig).astype(np.uint32), (k * 0.5).astype(np.float64).view(np.uint64),
                   np.full(n, 2, np.uint8), np.zeros(n, np.uint8), k * 1000, k * 1000)


def bench_wal(tmp: Path, total: int = 4_000_000) -> float:
    d = tmp / "wal"
    shutil.rmtree(d, ignore_errors=True)
    wal = Wal(d, fsync="interval", segment_bytes=64 << 20, quota_bytes=1 << 40)
    wal.open()
    table = SignalTable(tuple(f"s{i}" for i in range(10_000)), (3,) * 10_000)
    batch = 65_536
    parts = [_samples(batch, 10_000, i * batch) for i in range(total // batch)]
    stop = threading.Event()

    def fsyncer() -> None:
        while not stop.wait(0.1):
            wal.sync()

    t = threading.Thread(target=fsyncer)
    t.start()
    t0 = time.perf_counter()
    for p in parts:
        wal.append(p, table, jpos=0)
    wal.sync()
    dt = time.perf_counter() - t0
    stop.set()
    t.join()
    wal.close()
    return len(parts) * batch / dt


def _writer(instance: str, rate: float, seconds: float, n_sig: int) -> None:
    from petra.shm import Segment

    seg = Segment.attach(instance)
    idx = np.arange(n_sig, dtype=np.uint32)
    k = 0
    t0 = time.perf_counter()
    while True:
        el = time.perf_counter() - t0
        if el >= seconds:
            break
        due = int(el * rate / n_sig)
        while k < due:
            k += 1
            seg.write_batch_f64(idx, np.full(n_sig, float(k)) + idx * 1e-3)
        time.sleep(0.0005)
    seg.close()


def bench_sink(tmp: Path, rate: float, seconds: float, n_sig: int = 10_000) -> dict[str, float]:
    from petra.history._sink import HistorySink
    from petra.shm import Segment, SignalDef, SignalType

    instance = f"hb-{uuid.uuid4().hex[:8]}"
    seg = Segment.create(instance, [SignalDef(f"s.{i}", SignalType.FLOAT) for i in range(n_sig)],
                         journal_capacity=1 << 22)
    d = tmp / instance
    cfg = HistoryConfig(dir=str(d), wal=WalConfig(fsync="interval", fsync_interval_s=0.1,
                                                  quota_bytes=8 << 30),
                        parquet=ParquetConfig(max_file_age_s=2.0, compact_after_s=None))
    try:
        sink = HistorySink(cfg, seg, d)

        async def run() -> dict[str, float]:
            stop = asyncio.Event()
            task = asyncio.create_task(sink.run(stop))
            while not sink._wal_open.is_set():
                await asyncio.sleep(0.01)
            base = sink.wal.next_seq
            proc = CTX.Process(target=_writer, args=(instance, rate, seconds, n_sig))
            t0 = time.perf_counter()
            proc.start()
            while proc.is_alive():
                await asyncio.sleep(0.05)
            proc.join()
            written_s = time.perf_counter() - t0
            # drain: the journal read to its end, then a stop (which flushes the last,
            # partial file at once instead of waiting for max_file_age_s)
            while sink.consumer is not None and sink.consumer.count_pending() > 0 and (
                    time.perf_counter() - t0 < seconds * 6 + 30):
                await asyncio.sleep(0.02)
            stop.set()
            await task
            elapsed = time.perf_counter() - t0
            rows = sink.dests[0].dest.rows_written
            out = {"offered_per_s": (sink.wal.next_seq - base) / written_s,
                   "parquet_per_s": rows / elapsed, "journal_lost": float(sink._lost_seen),
                   "recorded": float(sink.wal.next_seq - base), "parquet_rows": float(rows),
                   "elapsed_s": elapsed, "write_s": written_s}
            return out

        return asyncio.run(run())
    finally:
        seg.close()
        seg.unlink()


def bench_bytes(tmp: Path, n_sig: int = 1000, per: int = 1000) -> float:
    rng = np.random.default_rng(1)
    d = tmp / "bytes"
    shutil.rmtree(d, ignore_errors=True)
    wal = Wal(d / "wal", fsync="off")
    wal.open()
    table = SignalTable(tuple(f"area{i // 100}.unit{i % 100}.temp" for i in range(n_sig)),
                        (3,) * n_sig)
    t0 = 1_760_000_000 * 10**9
    sig = np.repeat(np.arange(n_sig, dtype=np.uint32), per)
    ts = (t0 + np.cumsum(rng.integers(900, 1100, (n_sig, per)) * 10**6, axis=1)).ravel()
    vals = np.round(50 + np.cumsum(rng.choice([-0.01, 0.0, 0.01], (n_sig, per)), axis=1), 2)
    order = np.argsort(ts, kind="stable")  # as the journal delivers them: by time
    s = Samples(sig[order], vals.ravel()[order].view(np.uint64), np.full(n_sig * per, 2,
                                                                      np.uint8),
                np.zeros(n_sig * per, np.uint8), ts[order].astype(np.int64),
                ts[order].astype(np.int64))
    wal.append(s, table, jpos=0)
    dest = ParquetDestination(d / "pq", ParquetConfig(max_file_rows=n_sig * per,
                                                      compact_after_s=None))
    dest.open()
    while (got := wal.read(dest.read_pos, dest.want())) is not None:
        dest.accept(got)
    dest.flush()
    size = sum(f.stat().st_size for f in (d / "pq").rglob("*.parquet"))
    return size / (n_sig * per)


def bench_clickhouse(tmp: Path, total: int = 2_000_000) -> float:
    import clickhouse_connect

    from petra.history._clickhouse import ClickHouseDestination

    path = tmp / "chdb"
    client = clickhouse_connect.get_client(interface="chdb", path=str(path))
    wal = Wal(tmp / "chwal", fsync="off", segment_bytes=256 << 20, quota_bytes=1 << 40)
    wal.open()
    table = SignalTable(tuple(f"s{i}" for i in range(10_000)), (3,) * 10_000)
    for i in range(total // 100_000):
        wal.append(_samples(100_000, 10_000, i * 100_000), table, jpos=0)
    db = f"b{uuid.uuid4().hex[:6]}"
    dest = ClickHouseDestination(
        ClickHouseConfig(url="chdb:", database=db, batch_rows=100_000), tmp / "chstate",
        site="bench", instance="bench", epoch="e", client_factory=lambda _c: client)
    dest.open()
    dest.connect()
    t0 = time.perf_counter()
    while True:
        got = wal.read(dest.read_pos, dest.want())
        if got is not None:
            dest.accept(got)
        if dest.due(force=got is None):
            dest.flush()
        elif got is None:
            break
    dt = time.perf_counter() - t0
    n = int(str(client.command(f"SELECT count() FROM {db}.history")))
    client.command(f"DROP DATABASE {db}")
    assert n == total, n
    return total / dt


def bench_replay(tmp: Path, minutes: float = 10.0) -> dict[str, float]:
    import pyarrow as pa

    from petra.cli.replay import replay
    from petra.config import load_plant

    plant = load_plant(ROOT / "examples" / "demo-plant.yaml")
    t0 = 1_760_000_000 * 10**9
    end = t0 + int(minutes * 60e9)
    # the operator's inputs over the window: start, setpoint moves, a stop and restart
    ev = [("tank.level_sp", t0, 2.5), ("plant.start", t0 + 10**9, 1.0),
          ("plant.start", t0 + 2 * 10**9, 0.0)]
    for k in range(1, int(minutes)):
        ev.append(("tank.level_sp", t0 + k * 60 * 10**9, 2.0 + (k % 4) * 0.5))
    ev += [("plant.stop", end - 120 * 10**9, 1.0), ("plant.stop", end - 119 * 10**9, 0.0),
           ("plant.start", end - 60 * 10**9, 1.0), ("plant.start", end - 59 * 10**9, 0.0)]
    rec = pa.table({"ts": pa.array([e[1] for e in ev], pa.timestamp("ns", tz="UTC")),
                    "signal": pa.array([e[0] for e in ev]),
                    "value": pa.array([e[2] for e in ev], pa.float64())})
    result, _ = replay(plant, rec, t0, end)
    n_out = len(result.outputs)
    return {"replay_speedup": result.speedup,
            "replay_rows_per_s": result.cycles * n_out / result.wall_s,
            "replay_cycles": float(result.cycles)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=6.0, help="sink run length")
    ap.add_argument("--rate", type=float, default=1_200_000, help="offered changes/s")
    ap.add_argument("--json", default=None)
    ap.add_argument("--skip-clickhouse", action="store_true")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="petra-bench-history-"))
    reps: dict[str, list[float]] = {}
    sink_runs: list[dict[str, float]] = []
    try:
        for _ in range(args.reps):
            reps.setdefault("wal_append_samples_per_s", []).append(bench_wal(tmp))
            run = bench_sink(tmp, args.rate, args.seconds)
            sink_runs.append(run)
            reps.setdefault("history_parquet_samples_per_s", []).append(run["parquet_per_s"])
            reps.setdefault("parquet_bytes_per_float_sample", []).append(bench_bytes(tmp))
            if not args.skip_clickhouse:
                reps.setdefault("clickhouse_rows_per_s", []).append(bench_clickhouse(tmp))
            r = bench_replay(tmp)
            reps.setdefault("replay_speedup", []).append(r["replay_speedup"])
            reps.setdefault("replay_rows_per_s", []).append(r["replay_rows_per_s"])
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    figures = {k: median(v) for k, v in reps.items()}
    goals = {"history_parquet_samples_per_s": (">=", 1e6),
             "wal_append_samples_per_s": (">=", 1e6),
             "clickhouse_rows_per_s": (">=", 5e5),
             "parquet_bytes_per_float_sample": ("<=", 4.0),
             "replay_speedup": (">=", 100.0)}
    rows = []
    for k, v in figures.items():
        op, goal = goals.get(k, ("", float("nan")))
        ok = "" if not op else ("yes" if (v >= goal if op == ">=" else v <= goal) else "NO")
        rows.append((k, v, f"{op} {goal:g}" if op else "", ok))
    print_table(rows, ["figure", "median", "goal", "met"])
    lost = [r["journal_lost"] for r in sink_runs]
    offered = median(r["offered_per_s"] for r in sink_runs)
    print(f"sink runs: offered {offered:,.0f} changes/s; journal entries lost per run: {lost}")
    if args.json:
        write_json(args.json, {"schema": SCHEMA, "machine": machine_info(),
                               "load": os.getloadavg(), **figures,
                               "sink_runs": sink_runs, "reps": reps,
                               "params": vars(args)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
