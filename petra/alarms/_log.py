"""The alarm manager's event log: a JSONL journal of every event, and snapshots of the
state it implies, so the state survives kill -9 and a power cut.

Files in the alarm directory::

    events.jsonl        one JSON object per line, in order; "seq" counts from 1
    events.jsonl.N      older, rotated logs (kept for people and history, not needed
                        for recovery once a snapshot covers them)
    snapshot.json       the whole state as of one seq (written to a temporary file,
                        fsynced, renamed)

Each line is an event as people read it (time, alarm, transition, user, reason ...)
plus ``put``: the state it leaves behind, as ``{bucket: {key: value or null}}`` (an
alarm's whole record after a transition, a notification job after an attempt, ...).
Recovery is therefore a fold: start from the snapshot, apply the ``put`` of every
later line in order, last writer wins. Nothing has to be recomputed, so a replay gives
exactly the state the process had when it wrote its last line.

Write-ahead rule: the process appends the lines of a pass, calls :meth:`EventLog.flush`
(one ``write``, one ``fsync``) and only then acts on them outside (answers an operator,
sends an SMS, publishes on MQTT). A kill -9 can lose only lines not yet flushed, whose
effects nobody outside has seen.

A torn last line (the process died inside the write, or the disk filled) is cut off on
open; a damaged line in the middle is skipped and counted (it cannot be repaired, and
the lines after it are still good).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger("petra.alarms")

LOG_FILE = "events.jsonl"
SNAPSHOT_FILE = "snapshot.json"
SNAPSHOT_VERSION = 1


def iso(ns: int) -> str:
    """ns since the epoch as ISO 8601 UTC with milliseconds."""
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="milliseconds"
                                                           ).replace("+00:00", "Z")


@dataclass
class Replay:
    """What :meth:`EventLog.open` found."""

    state: dict[str, dict[str, Any]] = field(default_factory=dict)
    seq: int = 0
    snapshot_seq: int = 0
    lines: int = 0
    torn_bytes: int = 0
    bad_lines: int = 0
    tail: list[dict[str, Any]] = field(default_factory=list)
    """The lines replayed after the snapshot (metrics are rebuilt from them)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Anything else the snapshot held beside the buckets (metrics)."""


@dataclass(frozen=True, slots=True)
class Chunk:
    """Lines taken from the queue to be written together: the bytes, how many lines,
    and the seq of the last."""

    data: bytes
    lines: int
    seq: int


def fold(state: dict[str, dict[str, Any]], put: Any) -> None:
    """Apply one line's ``put`` to ``state``."""
    if not isinstance(put, dict):
        return
    for bucket, entries in put.items():
        if not isinstance(entries, dict):
            continue
        b = state.setdefault(bucket, {})
        for key, value in entries.items():
            if value is None:
                b.pop(key, None)
            else:
                b[key] = value


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class EventLog:
    """Appends events durably; snapshots and rotates; replays on open."""

    def __init__(self, directory: Path, *, fsync: bool = True,
                 rotate_bytes: int = 16 * 2**20, keep: int = 5) -> None:
        self.dir = directory
        self.path = directory / LOG_FILE
        self.fsync = fsync
        self.rotate_bytes = rotate_bytes
        self.keep = keep
        self.seq = 0  # last seq handed out
        self.flushed_seq = 0
        self.size = 0
        self._buf: list[bytes] = []
        self._fd = -1

    # ------------------------------------------------------------------ open / replay
    def open(self) -> Replay:
        """Create the directory if needed, recover, and be ready to append."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self._buf.clear()  # lines a failed flush left were never durable: the disk rules
        rep = Replay()
        snap = self._read_snapshot()
        if snap is not None:
            rep.snapshot_seq = rep.seq = int(snap.get("seq", 0))
            for bucket, entries in (snap.get("state") or {}).items():
                if isinstance(entries, dict):
                    rep.state[bucket] = dict(entries)
            rep.extra = {k: v for k, v in snap.items() if k not in ("seq", "state",
                                                                    "version")}
        for path in self._files_to_replay(rep.snapshot_seq):
            self._replay_file(path, rep, cut_torn=path == self.path)
        self.seq = self.flushed_seq = rep.seq
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                           0o640)
        self.size = os.fstat(self._fd).st_size
        return rep

    def _read_snapshot(self) -> dict[str, Any] | None:
        try:
            doc = json.loads((self.dir / SNAPSHOT_FILE).read_bytes())
        except FileNotFoundError:
            return None
        except ValueError:
            log.error("event=alarm_snapshot_unreadable path=%s action=replay_logs",
                      self.dir / SNAPSHOT_FILE)
            return None
        return doc if isinstance(doc, dict) else None

    def _files_to_replay(self, snapshot_seq: int) -> list[Path]:
        """The current log, preceded by rotated ones as far back as the snapshot
        does not reach (all of them without a snapshot)."""
        out = [self.path]
        for n in range(1, self.keep + 1):
            if _first_seq(out[0]) <= snapshot_seq + 1:
                break
            older = self.dir / f"{LOG_FILE}.{n}"
            if not older.exists():
                break
            out.insert(0, older)
        return out

    def _replay_file(self, path: Path, rep: Replay, *, cut_torn: bool) -> None:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1
        if end < len(data):
            rep.torn_bytes += len(data) - end
            if cut_torn:
                with open(path, "r+b") as fh:
                    fh.truncate(end)
                    fh.flush()
                    os.fsync(fh.fileno())
                log.warning("event=alarm_log_torn_tail path=%s cut_bytes=%d", path,
                            len(data) - end)
        for line in data[:end].splitlines():
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
                seq = int(doc["seq"])
            except (ValueError, KeyError, TypeError):
                rep.bad_lines += 1
                continue
            if seq <= rep.seq:
                continue
            rep.seq = seq
            rep.lines += 1
            fold(rep.state, doc.get("put"))
            rep.tail.append(doc)
        if rep.bad_lines:
            log.error("event=alarm_log_bad_lines path=%s count=%d", path, rep.bad_lines)

    # ------------------------------------------------------------------ append
    def append(self, doc: dict[str, Any]) -> int:
        """Queue one line (``seq`` and ``time`` filled in); durable after :meth:`flush`."""
        self.seq += 1
        doc["seq"] = self.seq
        if "time_ns" in doc and "time" not in doc:
            doc["time"] = iso(int(doc["time_ns"]))
        self._buf.append(json.dumps(doc, separators=(",", ":"), allow_nan=False,
                                    default=str).encode() + b"\n")
        return self.seq

    @property
    def is_open(self) -> bool:
        return self._fd >= 0

    @property
    def pending(self) -> int:
        return len(self._buf)

    def flush(self) -> int:
        """Write the queued lines (one write) and fsync; the number of lines written.
        Raises OSError (disk full...) with the lines still queued."""
        if not self._buf:
            return 0
        if self._fd < 0:
            raise OSError("the event log is not open")
        chunk = Chunk(b"".join(self._buf), len(self._buf), self.seq)
        self.write_chunk(chunk)
        self._buf.clear()
        self.written(chunk)
        return chunk.lines

    # The same in three steps, so the write and fsync can run on a worker thread while
    # the owner goes on evaluating: take() and written() on the owner's thread,
    # write_chunk() on one worker at a time, chunks in the order they were taken. A
    # chunk whose write failed is lost with the connection; open() replays the disk.
    def take(self) -> Chunk | None:
        """The queued lines as one chunk, out of the queue (None when there are none)."""
        if not self._buf:
            return None
        chunk = Chunk(b"".join(self._buf), len(self._buf), self.seq)
        self._buf.clear()
        return chunk

    def write_chunk(self, chunk: Chunk) -> None:
        """Write and fsync one chunk (any thread; one at a time)."""
        fd = self._fd
        if fd < 0:
            raise OSError("the event log is not open")
        view = memoryview(chunk.data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        if self.fsync:
            os.fsync(fd)

    def written(self, chunk: Chunk) -> None:
        """Record that ``chunk`` is durable."""
        self.size += len(chunk.data)
        self.flushed_seq = max(self.flushed_seq, chunk.seq)

    # ------------------------------------------------------------------ snapshot
    def snapshot(self, state: dict[str, dict[str, Any]], extra: dict[str, Any] | None = None
                 ) -> None:
        """Write the state as of the last flushed line, durably; rotate the log when it
        has grown past ``rotate_bytes`` (the snapshot now covers it)."""
        self.flush()
        doc = {"version": SNAPSHOT_VERSION, "seq": self.flushed_seq, "time_ns": time.time_ns(),
               **(extra or {}), "state": state}
        path = self.dir / SNAPSHOT_FILE
        tmp = path.with_name(f".{SNAPSHOT_FILE}.tmp")
        with open(tmp, "wb") as fh:
            fh.write(json.dumps(doc, separators=(",", ":"), allow_nan=False,
                                default=str).encode())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(self.dir)
        if self.size > self.rotate_bytes:
            self._rotate()

    def _rotate(self) -> None:
        os.close(self._fd)
        self._fd = -1
        oldest = self.dir / f"{LOG_FILE}.{self.keep}"
        with contextlib.suppress(FileNotFoundError):
            oldest.unlink()
        for n in range(self.keep - 1, 0, -1):
            src = self.dir / f"{LOG_FILE}.{n}"
            if src.exists():
                os.replace(src, self.dir / f"{LOG_FILE}.{n + 1}")
        os.replace(self.path, self.dir / f"{LOG_FILE}.1")
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                           0o640)
        _fsync_dir(self.dir)
        self.size = 0
        log.info("event=alarm_log_rotated seq=%d", self.flushed_seq)

    def close(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                self.flush()
            os.close(self._fd)
            self._fd = -1


def _first_seq(path: Path) -> int:
    """The seq of the first line of ``path`` (a large number when there is none)."""
    try:
        with open(path, "rb") as fh:
            line = fh.readline()
        return int(json.loads(line)["seq"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return 1 << 62


def read_events(directory: Path, *, since_seq: int = 0, limit: int | None = None
                ) -> list[dict[str, Any]]:
    """Events from the logs in ``directory`` (rotated ones first), for tools."""
    files = sorted(directory.glob(f"{LOG_FILE}.*"),
                   key=lambda p: -int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0)
    files.append(directory / LOG_FILE)
    out: list[dict[str, Any]] = []
    for path in files:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        for line in data.splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if isinstance(doc, dict) and int(doc.get("seq", 0)) > since_seq:
                out.append(doc)
    if limit is not None:
        out = out[-limit:]
    return out
