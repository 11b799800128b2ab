"""The Parquet destination: columnar files on the box, one directory per date (and hour).

Layout: ``<dir>/date=2026-12-01/hour=13/part-<first_seq>-<end_seq>.parquet`` (hive
partitioning, so ``pyarrow.dataset`` prunes by date without opening files). Columns:
``ts`` (timestamp[ns, UTC]), ``signal`` (dictionary-encoded string), ``value_f``
(float64), ``value_i`` (int64), ``value_b`` (bool): one of the three set per row, by
the signal's type; ``quality`` and ``substatus`` (uint8), and ``write_ts`` when
configured. Rows are sorted by signal, then time, inside a file: with dictionary
encoding and zstd a slowly changing float costs a byte or two per sample.

Exactly once, across crashes
----------------------------
A flush writes one file per partition under a temporary name (``.part-*.tmp``) and
fsyncs each; then it commits by replacing ``_state.json`` (write, fsync, rename, fsync
the directory) with the new confirmed WAL position *and the list of files to rename*;
then renames the files and fsyncs their directories. On start, :meth:`open` rolls a
committed flush forward (renames what is still under its temporary name) and deletes
every other temporary file (an uncommitted flush: its samples are still in the WAL
and are written again). So a file appears under its final name only when complete,
and a sample is in exactly one final file whatever instant the process died at.

Retention and compaction run after flushes: partitions older than ``max_age_s`` and,
past ``max_bytes``, the oldest partitions are deleted; a partition closed for
``compact_after_s`` with several files is merged into one (the merge is committed the
same way, through ``_state.json``, so a crash never leaves both the parts and the
merged file visible after recovery).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from petra.config._history import ParquetConfig
from petra.history._samples import SignalTable
from petra.history._wal import WalRead
from petra.types import SignalType

log = logging.getLogger("petra.history.parquet")

STATE = "_state.json"
NS_DAY = 86_400 * 1_000_000_000
NS_HOUR = 3_600 * 1_000_000_000


def _fsync_path(path: Path, *, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, doc: Any, *, durable: bool = True) -> None:
    """Replace ``path`` with ``doc`` as JSON: write a temporary file, (fsync,) rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, separators=(",", ":"))
        fh.flush()
        if durable:
            os.fsync(fh.fileno())
    os.replace(tmp, path)
    if durable:
        _fsync_path(path.parent, directory=True)


def encodings(columns: list[str]) -> dict[str, Any]:
    """Timestamps delta-encoded (within a signal they rise by similar steps: this halves
    their size against dictionary + zstd); every other column dictionary-encoded."""
    times = [c for c in columns if c in ("ts", "write_ts")]
    return {"use_dictionary": [c for c in columns if c not in times],
            "column_encoding": dict.fromkeys(times, "DELTA_BINARY_PACKED")}


def partition_of(ts_ns: int, hourly: bool) -> str:
    """``date=YYYY-MM-DD`` (``/hour=HH``) of a UTC timestamp in ns."""
    day = ts_ns // NS_DAY
    date = np.datetime64(int(day), "D").astype(str)
    if not hourly:
        return f"date={date}"
    return f"date={date}/hour={(ts_ns % NS_DAY) // NS_HOUR:02d}"


@dataclass
class _Part:
    """Buffered samples of one partition, columns with global signal ids."""

    gid: list[npt.NDArray[np.uint32]] = field(default_factory=list)
    value: list[npt.NDArray[np.uint64]] = field(default_factory=list)
    quality: list[npt.NDArray[np.uint8]] = field(default_factory=list)
    substatus: list[npt.NDArray[np.uint8]] = field(default_factory=list)
    ts: list[npt.NDArray[np.int64]] = field(default_factory=list)
    wts: list[npt.NDArray[np.int64]] = field(default_factory=list)
    rows: int = 0


class ParquetDestination:
    """Buffers WAL samples and writes them as Parquet files, exactly once."""

    name = "parquet"

    def __init__(self, directory: Path, cfg: ParquetConfig, *,
                 clock: Callable[[], float] = time.monotonic,
                 wall_ns: Callable[[], int] = time.time_ns) -> None:
        self.dir = directory
        self.cfg = cfg
        self.clock = clock
        self.wall_ns = wall_ns
        self.confirmed = 0
        self.read_pos = 0
        self.lost = 0
        self.rows_written = 0
        self.files_written = 0
        self._parts: dict[str, _Part] = {}
        self._buffered = 0
        self._first_seq = 0
        self._since = 0.0
        self._names: list[str] = []
        self._types: list[int] = []
        self._gid: dict[str, int] = {}
        self._last_maintenance = -1e18
        self._gmaps: dict[int, tuple[SignalTable, npt.NDArray[np.uint32]]] = {}

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> int:
        """Recover the directory (finish or undo an interrupted flush or merge) and
        return the confirmed WAL position."""
        self.dir.mkdir(parents=True, exist_ok=True)
        state = self._read_state()
        for tmp, final in state.get("pending", []):
            t, f = self.dir / tmp, self.dir / final
            if t.exists():
                os.replace(t, f)
                _fsync_path(f.parent, directory=True)
                log.info("event=parquet_roll_forward file=%s", final)
        for old in state.get("delete", []):
            with contextlib.suppress(FileNotFoundError):
                (self.dir / old).unlink()
        for tmp in self.dir.rglob(".*.tmp"):
            tmp.unlink()
            log.info("event=parquet_roll_back file=%s", tmp.relative_to(self.dir))
        self.confirmed = int(state.get("confirmed", 0))
        if state.get("pending") or state.get("delete"):
            write_json_atomic(self.dir / STATE, {"confirmed": self.confirmed})
        self.reset()
        return self.confirmed

    def connect(self) -> None:
        """Nothing to connect to: make sure the directory is there."""
        self.dir.mkdir(parents=True, exist_ok=True)

    def _read_state(self) -> dict[str, Any]:
        try:
            doc = json.loads((self.dir / STATE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        if not isinstance(doc, dict):
            raise ValueError(f"{self.dir / STATE} is not a JSON object")
        return doc

    def reset(self) -> None:
        """Forget what is buffered: reading starts again at the confirmed position."""
        self._parts = {}
        self._buffered = 0
        self.read_pos = self.confirmed
        self._first_seq = self.confirmed

    def close(self) -> None:
        self.reset()

    # ------------------------------------------------------------------ samples in
    @property
    def buffered(self) -> int:
        return self._buffered

    def want(self) -> int:
        """How many samples the next read may bring."""
        return max(1024, self.cfg.max_file_rows - self._buffered)

    def accept(self, batch: WalRead) -> None:
        """Buffer a WAL read (which starts at or after ``read_pos``)."""
        if batch.first_seq > self.read_pos:
            gap = batch.first_seq - self.read_pos
            self.lost += gap
            log.error("event=parquet_samples_lost count=%d from_seq=%d (not in the WAL "
                      "any more: quota or a lost WAL tail)", gap, self.read_pos)
        s = batch.samples
        if self._buffered == 0:
            self._since = self.clock()
            self._first_seq = batch.first_seq if batch.first_seq > self.read_pos \
                else self.read_pos
        gmap = self._gmap(batch.table)
        gid = gmap[s.sig] if len(gmap) else s.sig
        hourly = self.cfg.partition == "hour"
        unit = NS_HOUR if hourly else NS_DAY
        key = s.ts // unit
        lo, hi = int(key.min()), int(key.max())
        keys = np.array([lo]) if lo == hi else np.unique(key)  # nearly always one
        for k in keys.tolist():
            sel = slice(None) if len(keys) == 1 else np.flatnonzero(key == k)
            name = partition_of(int(k) * unit, hourly)
            part = self._parts.setdefault(name, _Part())
            sub = s if isinstance(sel, slice) else s.take(sel)
            part.gid.append(gid if isinstance(sel, slice) else gid[sel])
            part.value.append(sub.value)
            part.quality.append(sub.quality)
            part.substatus.append(sub.substatus)
            part.ts.append(sub.ts)
            part.wts.append(sub.wts)
            part.rows += len(sub)
        self._buffered += len(s)
        self.read_pos = batch.end_seq

    def _gmap(self, table: SignalTable) -> npt.NDArray[np.uint32]:
        """Table index -> global signal id (cached per table: a WAL read must not cost
        a Python loop over every signal)."""
        cached = self._gmaps.get(id(table))
        if cached is not None and cached[0] is table:
            return cached[1]
        gmap = np.fromiter((self._global_id(n, t) for n, t in
                            zip(table.names, table.types, strict=True)),
                           np.uint32, len(table.names))
        self._gmaps[id(table)] = (table, gmap)
        return gmap

    def _global_id(self, name: str, typ: int) -> int:
        key = f"{name}\x00{typ}"
        gid = self._gid.get(key)
        if gid is None:
            gid = self._gid[key] = len(self._names)
            self._names.append(name)
            self._types.append(typ)
        return gid

    def due(self, *, force: bool = False) -> bool:
        if self._buffered == 0:
            return False
        return force or self._buffered >= self.cfg.max_file_rows or (
            self.clock() - self._since >= self.cfg.max_file_age_s)

    # ------------------------------------------------------------------ flush
    def flush(self) -> int:
        """Write the buffer as one file per partition, commit, and return the new
        confirmed position. Raises OSError (a full disk) with nothing committed."""
        if self._buffered == 0:
            return self.confirmed
        first, end = self._first_seq, self.read_pos
        fname = f"part-{first:016d}-{end:016d}.parquet"
        pending: list[tuple[str, str]] = []
        try:
            for part_name, part in sorted(self._parts.items()):
                pdir = self.dir / part_name
                pdir.mkdir(parents=True, exist_ok=True)
                tmp = pdir / f".{fname}.tmp"
                pending.append((str(tmp.relative_to(self.dir)),
                                str((pdir / fname).relative_to(self.dir))))
                self._write_file(part, tmp, first, end)
            for pdir in {(self.dir / f).parent for _, f in pending}:
                _fsync_path(pdir, directory=True)  # the temporary names survive a power cut
            # commit point: the state names the new position and the files
            write_json_atomic(self.dir / STATE, {"confirmed": end, "pending": pending})
        except BaseException:
            if int(self._read_state().get("confirmed", -1)) != end:  # not committed
                for tmp_rel, _ in pending:
                    with contextlib.suppress(OSError):
                        (self.dir / tmp_rel).unlink()
            raise
        for tmp_rel, final_rel in pending:
            os.replace(self.dir / tmp_rel, self.dir / final_rel)
        for pdir in {(self.dir / f).parent for _, f in pending}:
            _fsync_path(pdir, directory=True)
        write_json_atomic(self.dir / STATE, {"confirmed": end})
        self.rows_written += self._buffered
        self.files_written += len(pending)
        self.confirmed = end
        self._parts = {}
        self._buffered = 0
        self._first_seq = end
        return end

    def _table(self, part: _Part) -> Any:
        import pyarrow as pa

        gid = np.concatenate(part.gid)
        value = np.concatenate(part.value)
        ts = np.concatenate(part.ts)
        quality = np.concatenate(part.quality)
        substatus = np.concatenate(part.substatus)
        names = np.asarray(self._names, dtype=object)
        # sort by signal name, then time: dictionary + zstd compress such runs best,
        # and row-group statistics on signal let readers skip groups
        rank = np.empty(len(names), np.uint32)
        rank[np.argsort(names, kind="stable")] = np.arange(len(names), dtype=np.uint32)
        order = np.lexsort((ts, rank[gid]))
        gid = gid[order]
        value = value[order]
        types = np.asarray(self._types, np.uint8)[gid]
        is_f = types == int(SignalType.FLOAT)
        is_i = types == int(SignalType.INT)
        is_b = types == int(SignalType.BOOL)
        ints = value.view(np.int64)
        cols: dict[str, Any] = {
            "ts": pa.array(ts[order], pa.timestamp("ns", tz="UTC")),
            "signal": pa.DictionaryArray.from_arrays(
                pa.array(gid.astype(np.int32)), pa.array(self._names, pa.string())),
            "value_f": pa.array(value.view(np.float64), pa.float64(), mask=~is_f),
            "value_i": pa.array(ints, pa.int64(), mask=~is_i),
            "value_b": pa.array(ints == 1, pa.bool_(), mask=~is_b),
            "quality": pa.array(quality[order], pa.uint8()),
            "substatus": pa.array(substatus[order], pa.uint8()),
        }
        if self.cfg.write_ts:
            cols["write_ts"] = pa.array(np.concatenate(part.wts)[order],
                                        pa.timestamp("ns", tz="UTC"))
        return pa.table(cols)

    def _write_file(self, part: _Part, path: Path, first: int, end: int) -> None:
        import pyarrow.parquet as pq

        table = self._table(part)
        table = table.replace_schema_metadata({
            b"petra.wal_first_seq": str(first).encode(),
            b"petra.wal_end_seq": str(end).encode()})
        with open(path, "wb") as fh:
            pq.write_table(table, fh, row_group_size=self.cfg.row_group_rows,
                           compression="zstd", compression_level=self.cfg.compression_level,
                           **encodings(table.column_names))
            fh.flush()
            os.fsync(fh.fileno())

    # ------------------------------------------------------------------ retention
    def partitions(self) -> list[Path]:
        """Leaf partition directories, oldest first."""
        out: list[Path] = []
        for d in sorted(self.dir.glob("date=*")):
            if not d.is_dir():
                continue
            hours = sorted(h for h in d.glob("hour=*") if h.is_dir())
            out.extend(hours if hours else [d])
        return out

    @staticmethod
    def partition_start_ns(path: Path) -> int:
        """UTC start of a partition directory (``date=..[/hour=..]``)."""
        parts = {p.split("=", 1)[0]: p.split("=", 1)[1] for p in path.parts if "=" in p}
        day = int(np.datetime64(parts["date"], "D").astype(np.int64))
        return day * NS_DAY + int(parts.get("hour", 0)) * NS_HOUR

    def maintain(self, *, every_s: float = 60.0) -> dict[str, int]:
        """Retention and compaction, at most every ``every_s`` (monotonic clock)."""
        now = self.clock()
        if now - self._last_maintenance < every_s:
            return {}
        self._last_maintenance = now
        return {"deleted": self.apply_retention(), "compacted": self.compact()}

    def apply_retention(self) -> int:
        """Delete partitions past ``max_age_s``, then the oldest past ``max_bytes``."""
        ret = self.cfg.retention
        deleted = 0
        now = self.wall_ns()
        span = NS_HOUR if self.cfg.partition == "hour" else NS_DAY
        parts = self.partitions()
        if ret.max_age_s is not None:
            horizon = now - int(ret.max_age_s * 1e9)
            keep = []
            for p in parts:
                if self.partition_start_ns(p) + span <= horizon:
                    self._remove_partition(p, "age")
                    deleted += 1
                else:
                    keep.append(p)
            parts = keep
        if ret.max_bytes is not None:
            sizes = [(p, sum(f.stat().st_size for f in p.glob("*.parquet"))) for p in parts]
            total = sum(s for _, s in sizes)
            for p, size in sizes[:-1]:  # never the newest partition
                if total <= ret.max_bytes:
                    break
                self._remove_partition(p, "size")
                total -= size
                deleted += 1
        return deleted

    def _remove_partition(self, path: Path, why: str) -> None:
        shutil.rmtree(path, ignore_errors=True)
        parent = path.parent
        if parent != self.dir and parent.name.startswith("date=") and not any(parent.iterdir()):
            parent.rmdir()
        log.info("event=parquet_retention partition=%s reason=%s",
                 path.relative_to(self.dir), why)

    def compact(self) -> int:
        """Merge the files of each partition closed for ``compact_after_s`` into one."""
        after = self.cfg.compact_after_s
        if after is None:
            return 0
        import pyarrow.parquet as pq

        now = self.wall_ns()
        span = NS_HOUR if self.cfg.partition == "hour" else NS_DAY
        merged = 0
        for p in self.partitions():
            if self.partition_start_ns(p) + span + int(after * 1e9) > now:
                continue
            files = sorted(p.glob("part-*.parquet"))
            if len(files) < 2:
                continue
            tables = [pq.read_table(f) for f in files]
            import pyarrow as pa
            import pyarrow.compute as pc

            table = pa.concat_tables(tables, promote_options="permissive")
            # keep the sort order (signal, then time) and one dictionary for the names
            col = table.schema.get_field_index("signal")
            table = table.set_column(col, "signal", pc.cast(table.column(col), pa.string()))
            table = table.sort_by([("signal", "ascending"), ("ts", "ascending")])
            table = table.combine_chunks()
            table = table.set_column(col, "signal", pc.dictionary_encode(table.column(col)))
            first = min(int(t.schema.metadata[b"petra.wal_first_seq"]) for t in tables)
            end = max(int(t.schema.metadata[b"petra.wal_end_seq"]) for t in tables)
            name = f"part-{first:016d}-{end:016d}.parquet"
            tmp = p / f".{name}.tmp"
            table = table.replace_schema_metadata({
                b"petra.wal_first_seq": str(first).encode(),
                b"petra.wal_end_seq": str(end).encode(), b"petra.compacted": b"1"})
            with open(tmp, "wb") as fh:
                pq.write_table(table, fh, row_group_size=self.cfg.row_group_rows,
                               compression="zstd",
                               compression_level=self.cfg.compression_level,
                               **encodings(table.column_names))
                fh.flush()
                os.fsync(fh.fileno())
            rel = [str(f.relative_to(self.dir)) for f in files]
            final = p / name
            # commit: rename the merged file in, delete the parts (rolled forward on start)
            write_json_atomic(self.dir / STATE, {
                "confirmed": self.confirmed,
                "pending": [[str(tmp.relative_to(self.dir)), str(final.relative_to(self.dir))]],
                "delete": [r for r in rel if r != str(final.relative_to(self.dir))]})
            os.replace(tmp, final)
            for f in files:
                if f != final:
                    f.unlink()
            _fsync_path(p, directory=True)
            write_json_atomic(self.dir / STATE, {"confirmed": self.confirmed})
            merged += 1
            log.info("event=parquet_compacted partition=%s files=%d rows=%d",
                     p.relative_to(self.dir), len(files), table.num_rows)
        return merged
