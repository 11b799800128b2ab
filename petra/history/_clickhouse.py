"""The ClickHouse destination: batched, idempotent inserts through clickhouse-connect.

Transport: HTTP(S) to a server or cluster (``url: https://host:8443``, the production
path), or ``chdb:PATH``, ClickHouse's engine inside this process (tests, and a box that
wants SQL over its own history without a server). Both go through the same client
library and the same SQL.

Idempotence
-----------
Each insert carries ``insert_deduplication_token = <site>/<instance>/<epoch>/<first>-<end>``:
the WAL range it holds (``epoch`` is a random id made once per history directory, so a
box whose WAL was wiped never reuses a token). ClickHouse drops an insert whose token
it has seen among the table's recent inserts (replicated tables always; a plain
MergeTree with ``non_replicated_deduplication_window``, which the DDL sets). Before
inserting, the destination writes the range it is about to insert to its state file
(fsynced); after a crash or an outage it inserts *exactly that range again* first, with
the same token, so ClickHouse either has it already (and drops the copy) or gets it now.
A replay therefore neither loses nor doubles rows.

Secrets: the password comes from ``password_file`` or ``password_env`` and is never
logged. TLS: an ``https`` URL verifies the server against ``ca_file`` (or the system
store) unless ``verify: false``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import numpy.typing as npt

from petra.config._history import ClickHouseConfig
from petra.errors import ConfigError
from petra.history._parquet import write_json_atomic
from petra.history._samples import Samples, SignalTable
from petra.history._wal import WalRead
from petra.types import SignalType

log = logging.getLogger("petra.history.clickhouse")

STATE = "clickhouse.json"
DEDUP_WINDOW = 1000

ClientFactory = Callable[[ClickHouseConfig], Any]


def table_ddl(database: str, table: str, *, cluster: str | None = None) -> list[str]:
    """The statements that create the history table (and its database).

    MergeTree partitioned by month, ordered by site, instance, signal and time: a query
    for one signal over a day reads a contiguous range. Codecs: DoubleDelta for the
    (mostly regular) timestamps, Gorilla for floats, Delta for sequence numbers, ZSTD
    after each. ``cluster`` gives the ``ON CLUSTER`` form for a ReplicatedMergeTree
    fleet setup (see docs/history.md for the Distributed table on top)."""
    on = f" ON CLUSTER {cluster}" if cluster else ""
    engine = ("ReplicatedMergeTree" if cluster else "MergeTree")
    settings = "" if cluster else f" SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}"
    return [
        f"CREATE DATABASE IF NOT EXISTS {database}{on}",
        f"""CREATE TABLE IF NOT EXISTS {database}.{table}{on} (
    site LowCardinality(String),
    instance LowCardinality(String),
    signal LowCardinality(String),
    ts DateTime64(9, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    value Float64 CODEC(Gorilla, ZSTD(1)),
    value_int Int64 CODEC(Delta, ZSTD(1)),
    quality UInt8 CODEC(ZSTD(1)),
    substatus UInt8 CODEC(ZSTD(1)),
    write_ts DateTime64(9, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    seq UInt64 CODEC(Delta, ZSTD(1))
) ENGINE = {engine}
PARTITION BY toYYYYMM(ts)
ORDER BY (site, instance, signal, ts){settings}""",
    ]


def rollup_ddl(database: str, table: str) -> list[str]:
    """A per-minute rollup (min, max, sum and count for the average, last value), kept
    by a materialized view as rows are inserted. A deduplicated insert must not reach
    the view either: the rollup table deduplicates too, and inserts set
    ``deduplicate_blocks_in_dependent_materialized_views``."""
    settings = f" SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}"
    return [
        f"""CREATE TABLE IF NOT EXISTS {database}.{table}_1m (
    site LowCardinality(String),
    instance LowCardinality(String),
    signal LowCardinality(String),
    minute DateTime('UTC'),
    min_value SimpleAggregateFunction(min, Float64),
    max_value SimpleAggregateFunction(max, Float64),
    sum_value SimpleAggregateFunction(sum, Float64),
    samples SimpleAggregateFunction(sum, UInt64),
    last_value AggregateFunction(argMax, Float64, DateTime64(9, 'UTC'))
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (site, instance, signal, minute){settings}""",
        f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.{table}_1m_mv
TO {database}.{table}_1m AS
SELECT site, instance, signal, toStartOfMinute(ts) AS minute,
       min(value) AS min_value, max(value) AS max_value, sum(value) AS sum_value,
       count() AS samples, argMaxState(value, ts) AS last_value
FROM {database}.{table}
GROUP BY site, instance, signal, minute""",
    ]


def read_secret(cfg: ClickHouseConfig) -> str:
    """The password from ``password_file`` or ``password_env``; empty when neither."""
    if cfg.password_file:
        try:
            return Path(cfg.password_file).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(f"cannot read password_file: {exc.strerror}",
                              key_path="history.clickhouse.password_file") from None
    if cfg.password_env:
        value = os.environ.get(cfg.password_env)
        if value is None:
            raise ConfigError(f"environment variable {cfg.password_env} is not set",
                              key_path="history.clickhouse.password_env")
        return value
    return ""


def make_client(cfg: ClickHouseConfig) -> Any:
    """A clickhouse-connect client for ``cfg.url`` (http, https or chdb)."""
    import clickhouse_connect

    if cfg.url.startswith("chdb:"):
        return clickhouse_connect.get_client(interface="chdb", path=cfg.url[5:] or None)
    u = urlsplit(cfg.url)
    secure = u.scheme == "https"
    return clickhouse_connect.get_client(
        host=u.hostname, port=u.port or (8443 if secure else 8123), username=cfg.username,
        password=read_secret(cfg), secure=secure, verify=cfg.verify, ca_cert=cfg.ca_file,
        connect_timeout=max(1, round(cfg.timeout_s)),
        send_receive_timeout=max(1, round(cfg.timeout_s)), client_name="petra-history",
        compress="zstd" if secure or u.scheme == "http" else True)


class ClickHouseDestination:
    """Buffers WAL samples into batches and inserts them with deduplication tokens."""

    name = "clickhouse"

    def __init__(self, cfg: ClickHouseConfig, state_dir: Path, *, site: str, instance: str,
                 epoch: str, client_factory: ClientFactory = make_client,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.state_path = state_dir / STATE
        self.site = site
        self.instance = instance
        self.epoch = epoch
        self.client_factory = client_factory
        self.clock = clock
        self.client: Any = None
        self.confirmed = 0
        self.read_pos = 0
        self.lost = 0
        self.rows_written = 0
        self.inserts = 0
        self._inflight: tuple[int, int] | None = None
        self._parts: list[tuple[npt.NDArray[Any], ...]] = []
        self._names: list[SignalTable] = []
        self._cache: dict[int, tuple[SignalTable, Any, Any]] = {}
        self._buffered = 0
        self._first_seq = 0
        self._since = 0.0

    @property
    def table(self) -> str:
        return f"{self.cfg.database}.{self.cfg.table}"

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> int:
        try:
            doc = json.loads(self.state_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            doc = {}
        self.confirmed = int(doc.get("confirmed", 0))
        inflight = doc.get("inflight")
        self._inflight = (int(inflight[0]), int(inflight[1])) if inflight else None
        self.reset()
        return self.confirmed

    def connect(self) -> None:
        """Make a client, check the server answers, create the schema if asked."""
        self.close()
        client = self.client_factory(self.cfg)
        try:
            client.command("SELECT 1")
            if self.cfg.create_table:
                for stmt in table_ddl(self.cfg.database, self.cfg.table):
                    client.command(stmt)
                if self.cfg.rollup:
                    for stmt in rollup_ddl(self.cfg.database, self.cfg.table):
                        client.command(stmt)
        except BaseException:
            _close_quietly(client)
            raise
        self.client = client

    def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            _close_quietly(client)

    def reset(self) -> None:
        self._parts = []
        self._names = []
        self._buffered = 0
        self.read_pos = self.confirmed
        self._first_seq = self.confirmed

    # ------------------------------------------------------------------ samples in
    @property
    def buffered(self) -> int:
        return self._buffered

    def want(self) -> int:
        """Samples the next read may bring: up to a batch, and after a crash exactly up
        to the end of the range that was in flight (it is inserted again unchanged)."""
        room = self.cfg.batch_rows - self._buffered
        if self._inflight is not None and self._inflight[0] == self._first_seq:
            room = min(room, self._inflight[1] - self.read_pos)
        return max(0, room)

    def accept(self, batch: WalRead) -> None:
        if batch.first_seq > self.read_pos:
            gap = batch.first_seq - self.read_pos
            self.lost += gap
            log.error("event=clickhouse_samples_lost count=%d from_seq=%d", gap, self.read_pos)
            if self._buffered == 0:
                self._first_seq = batch.first_seq
        s: Samples = batch.samples
        if self._buffered == 0:
            self._since = self.clock()
        types = self._types(batch.table)[s.sig]
        is_f = types == int(SignalType.FLOAT)
        ints = s.value.view(np.int64)
        value = np.where(is_f, s.value.view(np.float64), ints.astype(np.float64))
        seq = np.arange(batch.first_seq, batch.end_seq, dtype=np.uint64)
        self._parts.append((s.sig.astype(np.int32), s.ts, value, np.where(is_f, 0, ints),
                            s.quality, s.substatus, s.wts, seq))
        self._names.append(batch.table)
        self._buffered += len(s)
        self.read_pos = batch.end_seq

    def due(self, *, force: bool = False) -> bool:
        if self._buffered == 0:
            return False
        if self._inflight is not None and self._inflight[0] == self._first_seq:
            return self.read_pos >= self._inflight[1]
        return force or self._buffered >= self.cfg.batch_rows or (
            self.clock() - self._since >= self.cfg.max_delay_s)

    # ------------------------------------------------------------------ flush
    def token(self, first: int, end: int) -> str:
        return f"{self.site}/{self.instance}/{self.epoch}/{first}-{end}"

    def flush(self) -> int:
        """Insert the buffer as one batch; returns the new confirmed position."""
        if self._buffered == 0:
            return self.confirmed
        if self.client is None:
            raise ConnectionError("not connected")
        import pyarrow as pa

        first, end = self._first_seq, self.read_pos
        if self._inflight != (first, end):
            self._save({"confirmed": self.confirmed, "inflight": [first, end]}, durable=True)
            self._inflight = (first, end)
        table = self._arrow(pa)
        self.client.insert_arrow(self.table, table, settings={
            "insert_deduplication_token": self.token(first, end),
            "deduplicate_blocks_in_dependent_materialized_views": 1})
        n = table.num_rows
        self.inserts += 1
        self.rows_written += n
        self.confirmed = end
        self._inflight = None
        self._save({"confirmed": end}, durable=False)
        self._parts = []
        self._names = []
        self._buffered = 0
        self._first_seq = end
        return end

    def _arrow(self, pa: Any) -> Any:
        """The buffer as an Arrow table; names go as dictionaries (LowCardinality)."""
        cols = [np.concatenate([p[k] for p in self._parts]) for k in range(1, 8)]
        n = len(cols[0])
        ts_type = pa.timestamp("ns", tz="UTC")
        zeros = pa.array(np.zeros(n, np.int32))
        signal = pa.chunked_array([
            pa.DictionaryArray.from_arrays(pa.array(p[0]), self._dictionary(table, pa))
            for p, table in zip(self._parts, self._names, strict=True)])
        return pa.table({
            "site": pa.DictionaryArray.from_arrays(zeros, pa.array([self.site])),
            "instance": pa.DictionaryArray.from_arrays(zeros, pa.array([self.instance])),
            "signal": signal,
            "ts": pa.array(cols[0], ts_type),
            "value": pa.array(cols[1], pa.float64()),
            "value_int": pa.array(cols[2], pa.int64()),
            "quality": pa.array(cols[3], pa.uint8()),
            "substatus": pa.array(cols[4], pa.uint8()),
            "write_ts": pa.array(cols[5], ts_type),
            "seq": pa.array(cols[6], pa.uint64()),
        })

    def _entry(self, table: SignalTable) -> tuple[SignalTable, Any, Any]:
        hit = self._cache.get(id(table))
        if hit is None or hit[0] is not table:
            hit = (table, table.type_array(), None)
            self._cache[id(table)] = hit
        return hit

    def _types(self, table: SignalTable) -> Any:
        return self._entry(table)[1]

    def _dictionary(self, table: SignalTable, pa: Any) -> Any:
        """The table's names as an Arrow array, built once per table."""
        t, types, names = self._entry(table)
        if names is None:
            names = pa.array(table.names, pa.string())
            self._cache[id(table)] = (t, types, names)
        return names

    def _save(self, doc: dict[str, Any], *, durable: bool) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.state_path, doc, durable=durable)


def _close_quietly(client: Any) -> None:
    try:
        client.close()
    except Exception as exc:
        log.debug("event=clickhouse_close_failed error=%s", exc)
