"""The ClickHouse destination against a real ClickHouse engine (chdb, in process),
through the same client library and SQL as the HTTP path.

chdb opens one database directory per process, so every test here shares one engine
and uses its own database. Outages are injected at the client boundary: a wrapper
whose calls fail while the test says the server is down.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("chdb", reason="chdb is installed by the test extra")

import clickhouse_connect

from petra.config._history import ClickHouseConfig, HistoryConfig, ParquetConfig
from petra.history import Samples, SignalTable, Wal
from petra.history._clickhouse import ClickHouseDestination

TABLE = SignalTable(("tank.level", "pump.count", "pump.on"), (3, 2, 1), "inst", 1)
T0 = 1_760_000_000 * 10**9
_db = itertools.count()


@pytest.fixture(scope="session")
def chdb_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("chdb"))


@pytest.fixture
def engine(chdb_path: str) -> Any:
    client = clickhouse_connect.get_client(interface="chdb", path=chdb_path)
    yield client
    client.close()


class FlakyClient:
    """Passes calls to a real client unless ``down`` is set; records inserts."""

    def __init__(self, real: Any, state: dict[str, Any]) -> None:
        self.real = real
        self.state = state

    def _check(self) -> None:
        if self.state.get("down"):
            raise ConnectionError("injected outage: server unreachable")

    def command(self, *a: Any, **kw: Any) -> Any:
        self._check()
        return self.real.command(*a, **kw)

    def insert_arrow(self, table: str, data: Any, settings: dict[str, Any]) -> Any:
        self._check()
        seq = data.column("seq").to_numpy()
        self.state.setdefault("inserts", []).append(
            (int(seq.min()), int(seq.max()), settings["insert_deduplication_token"]))
        return self.real.insert_arrow(table, data, settings=settings)

    def close(self) -> None:
        pass


def ch_cfg(db: str, **kw: Any) -> ClickHouseConfig:
    return ClickHouseConfig(url="chdb:", database=db, batch_rows=1000, max_delay_s=0.05, **kw)


def samples(n: int, base: int = 0) -> Samples:
    k = np.arange(base, base + n)
    sig = (k % 3).astype(np.uint32)
    value = np.where(sig == 0, (k * 0.25).astype(np.float64).view(np.uint64),
                     np.where(sig == 1, k.astype(np.uint64), (k % 2).astype(np.uint64)))
    ts = T0 + k.astype(np.int64) * 10**6
    return Samples(sig, value.astype(np.uint64), np.full(n, 2, np.uint8),
                   np.zeros(n, np.uint8), ts, ts + 5)


def pump(dest: ClickHouseDestination, wal: Wal) -> None:
    while True:
        want = dest.want()
        got = wal.read(dest.read_pos, want) if want else None
        if got is not None:
            dest.accept(got)
        if dest.due(force=got is None):
            dest.flush()
        elif got is None:
            break


def make_dest(tmp_path: Path, db: str, engine: Any, state: dict[str, Any] | None = None,
              **kw: Any) -> ClickHouseDestination:
    st = state if state is not None else {}
    return ClickHouseDestination(ch_cfg(db, **kw), tmp_path / "state", site="plant-a",
                                 instance="inst", epoch="e1",
                                 client_factory=lambda _cfg: FlakyClient(engine, st))


def test_schema_is_created_with_time_series_codecs(tmp_path: Path, engine: Any) -> None:
    db = f"h{next(_db)}"
    dest = make_dest(tmp_path, db, engine, rollup=True)
    dest.open()
    dest.connect()
    cols = {r[0]: (r[1], r[2]) for r in engine.query(
        "SELECT name, type, compression_codec FROM system.columns "
        f"WHERE database = '{db}' AND table = 'history'").result_rows}
    assert cols["ts"] == ("DateTime64(9, 'UTC')", "CODEC(DoubleDelta, ZSTD(1))")
    assert cols["value"] == ("Float64", "CODEC(Gorilla(8), ZSTD(1))")
    assert cols["signal"][0] == cols["site"][0] == "LowCardinality(String)"
    assert cols["seq"] == ("UInt64", "CODEC(Delta(8), ZSTD(1))")
    eng = engine.query(f"SELECT engine, partition_key, sorting_key FROM system.tables "
                       f"WHERE database = '{db}' AND name = 'history'").result_rows[0]
    assert eng == ("MergeTree", "toYYYYMM(ts)", "site, instance, signal, ts")
    views = engine.command(f"SELECT count() FROM system.tables WHERE database = '{db}' "
                           "AND name IN ('history_1m', 'history_1m_mv')")
    assert int(views) == 2
    dest.connect()  # idempotent: IF NOT EXISTS


def test_rows_land_with_types_and_a_replay_inserts_nothing_twice(
        tmp_path: Path, engine: Any) -> None:
    db = f"h{next(_db)}"
    wal = Wal(tmp_path / "wal", fsync="off")
    wal.open()
    wal.append(samples(2500), TABLE, jpos=1)
    state: dict[str, Any] = {}
    dest = make_dest(tmp_path, db, engine, state, rollup=True)
    dest.open()
    dest.connect()
    pump(dest, wal)
    assert dest.confirmed == 2500 and len(state["inserts"]) == 3
    rows = engine.query(f"SELECT signal, ts, value, value_int, quality, seq, site, instance "
                        f"FROM {db}.history ORDER BY seq LIMIT 3").result_rows
    assert [r[0] for r in rows] == ["tank.level", "pump.count", "pump.on"]
    assert rows[0][2] == 0.0 and rows[1][2] == 1.0 and rows[1][3] == 1
    assert rows[2][2] == 0.0 and rows[0][5:] == (0, "plant-a", "inst")
    assert rows[0][1].timestamp() == pytest.approx(T0 / 1e9)
    types = engine.query(f"SELECT toTypeName(ts), toTypeName(value_int) FROM {db}.history "
                         "LIMIT 1").result_rows[0]
    assert types == ("DateTime64(9, 'UTC')", "Int64")
    # a crash after the insert, before the confirmation: the state still says in flight
    (tmp_path / "state" / "clickhouse.json").write_text(
        json.dumps({"confirmed": 2000, "inflight": [2000, 2500]}))
    again = make_dest(tmp_path, db, engine, state)
    assert again.open() == 2000
    again.connect()
    pump(again, wal)
    assert state["inserts"][-1][2] == "plant-a/inst/e1/2000-2500"  # the same range again
    # and a replay of the whole log from scratch forms the same batches
    (tmp_path / "state" / "clickhouse.json").unlink()
    scratch = make_dest(tmp_path, db, engine, state)
    scratch.open()
    scratch.connect()
    pump(scratch, wal)
    got = engine.query(f"SELECT count(), uniqExact(seq) FROM {db}.history").result_rows[0]
    assert got == (2500, 2500)
    rolled = engine.command(f"SELECT sum(samples) FROM {db}.history_1m")
    assert int(rolled) == 2500  # the rollup view was not fed the duplicates either


def test_an_outage_keeps_the_backlog_and_drains_it_in_order(
        tmp_path: Path, engine: Any) -> None:
    """The real sink process loop (in this process), a real segment and engine; the
    ClickHouse client fails for a while. Parquet goes on meanwhile; afterwards every
    sample is in ClickHouse exactly once, inserted in WAL order."""
    from petra.history._sink import HistorySink
    from petra.shm import Segment, SignalDef, SignalType

    db = f"h{next(_db)}"
    instance = f"hch{next(_db)}-{int(time.time()) % 100000}"
    seg = Segment.create(instance, [SignalDef("x", SignalType.FLOAT),
                                    SignalDef("n", SignalType.INT)], journal_capacity=1 << 16)
    state: dict[str, Any] = {}
    cfg = HistoryConfig(dir=str(tmp_path / "hist"),
                        parquet=ParquetConfig(max_file_age_s=0.2, compact_after_s=None),
                        clickhouse=ch_cfg(db, max_rows_per_s=20_000))
    def factory(c: ClickHouseConfig) -> Any:
        return FlakyClient(engine, state)

    try:
        sink = HistorySink(cfg, seg, tmp_path / "hist", client_factory=factory)

        async def scenario() -> dict[str, Any]:
            stop = asyncio.Event()
            task = asyncio.create_task(sink.run(stop))
            for i in range(300):
                seg.write("x", float(i))
                await asyncio.sleep(0.001)
            await asyncio.sleep(0.5)
            state["down"] = True
            for i in range(300, 3000):
                seg.write("x", float(i))
                if i % 10 == 0:
                    seg.write("n", i)
                await asyncio.sleep(0.0002)
            await asyncio.sleep(1.0)
            during = sink.status()
            state["down"] = False
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                st = sink.status()["destinations"]
                if st["clickhouse"]["lag_samples"] == 0 and st["parquet"]["lag_samples"] == 0:
                    break
            stop.set()
            await task
            return during

        during = asyncio.run(scenario())
    finally:
        seg.close()
        seg.unlink()
    ch = during["destinations"]["clickhouse"]
    assert ch["state"] == "backoff" and ch["errors"] >= 1 and ch["lag_samples"] > 1000
    assert ch["backlog_bytes"] > 0 and "destination_down" in during["alarms"]
    assert during["destinations"]["parquet"]["lag_samples"] < ch["lag_samples"]
    total = sink.wal.next_seq
    got = engine.query(f"SELECT count(), uniqExact(seq), min(seq), max(seq) "
                       f"FROM {db}.history").result_rows[0]
    assert got == (total, total, 0, total - 1)
    inserts = state["inserts"]
    assert all(a[1] < b[0] for a, b in itertools.pairwise(inserts))  # in WAL order
    xs = engine.query(f"SELECT value FROM {db}.history WHERE signal = 'x' "
                      f"ORDER BY seq").result_rows
    assert [r[0] for r in xs] == [float(i) for i in range(3000)]  # each change, once
