"""The audit log: one JSON line per action, each line chained to the one before.

Every action (a login, failed or not; a signal write with the value before and after;
an alarm action; a reload; a change to a user) is appended as one line::

    {"action":"signal.write","after":3.0,"before":2.5,"hash":"9f..","instance":"demo",
     "outcome":"ok","prev":"41..","role":"operator","seq":17,"source":"10.0.0.7",
     "target":"tank.level_sp","time":"2026-12-01T10:02:03.123Z","user":"alice","via":"api"}

``hash`` is SHA-256 of the line's canonical JSON without ``hash`` (keys sorted, no
spaces, ASCII); ``prev`` is the hash of the line before (64 zeros before the first);
``seq`` counts from 1. Changing, removing, inserting or reordering a line breaks the
chain at that point, and :func:`verify_audit` says where.

The chain alone cannot see lines cut off its end, so a small *head* file
(``audit.log.head``: the last seq, hash and file size) is rewritten after every
append; a log that ends before its head is truncated. Whoever can rewrite both files
and recompute every hash can forge history: the chain is evidence against partial
edits and loss, and every append is also logged (``event=audit seq=.. hash=..``) to
the process log (journald), a second witness outside these files.

Several processes append (the API, a sink, ``petra write``, petra-top): each append
takes an ``flock`` on ``audit.log.lock``, reads the head, writes its line with one
``write`` on an ``O_APPEND`` descriptor, ``fsync``s and replaces the head. A writer
killed between its line and its head leaves a line the next writer adopts (it chains)
or cuts off (a torn, partial line): an append is all or nothing.

Rotation keeps the chain: when the file would grow past ``rotate_bytes`` it becomes
``audit.log.1`` (older ones shift to ``.2`` ... up to ``keep``; the oldest is deleted)
and the first line of the new file carries the hash of the last line of the old one.
Verification walks the files oldest first as one chain.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from petra.security._errors import AuditError
from petra.security._paths import AUDIT_MODE, give_to_group, make_dir
from petra.security._roles import Principal

log = logging.getLogger("petra.audit")

GENESIS = "0" * 64
DEFAULT_ROTATE_BYTES = 16 * 1024 * 1024
DEFAULT_KEEP = 10
MAX_FIELD_CHARS = 512  # a reason or target longer than this is cut (with "...")
_TAIL_CHUNK = 64 * 1024


def canonical(record: dict[str, Any]) -> bytes:
    """The bytes a record's hash is taken over: every field but ``hash``."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode()


def record_hash(record: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(record)).hexdigest()


def json_safe(value: object) -> object:
    """A value as JSON can hold it: NaN and infinities as strings, the rest unchanged
    when it is a JSON scalar, else its (cut) ``repr``."""
    if value is None or isinstance(value, bool | int | str):
        return _cut(value) if isinstance(value, str) else value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value][:100]
    if isinstance(value, dict):
        return {str(k)[:100]: json_safe(v) for k, v in list(value.items())[:100]}
    return _cut(repr(value))


def _cut(text: str) -> str:
    return text if len(text) <= MAX_FIELD_CHARS else text[:MAX_FIELD_CHARS] + "..."


def _iso(ns: int) -> str:
    secs, rem = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{rem // 1_000_000:03d}Z"


@dataclass(frozen=True, slots=True)
class Head:
    seq: int
    hash: str
    size: int


def audit_files(path: Path) -> list[Path]:
    """The files of one log, oldest first: ``path.N`` ... ``path.1``, ``path``."""
    rotated = []
    for p in path.parent.glob(path.name + ".*"):
        suffix = p.name[len(path.name) + 1:]
        if suffix.isdigit():
            rotated.append((int(suffix), p))
    return [p for _, p in sorted(rotated, reverse=True)] + ([path] if path.exists() else [])


def _read_head(path: Path) -> Head | None:
    try:
        data = json.loads(path.read_bytes())
        return Head(int(data["seq"]), str(data["hash"]), int(data["size"]))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError, OSError):
        log.error("event=audit_head_unreadable path=%s", path)
        return None


def _last_line(path: Path) -> bytes:
    """The last complete line of a file (b"" when there is none)."""
    try:
        with path.open("rb") as f:
            end = f.seek(0, os.SEEK_END)
            pos, tail = end, b""
            while pos > 0:
                step = min(_TAIL_CHUNK, pos)
                pos -= step
                f.seek(pos)
                tail = f.read(step) + tail
                lines = tail.split(b"\n")
                # lines[-1] is what follows the last newline (b"" for a clean end)
                if len(lines) >= 3 or (pos == 0 and len(lines) >= 2):
                    return lines[-2]
            return b""
    except FileNotFoundError:
        return b""


class AuditLog:
    """Appends records to one hash-chained audit log (safe across processes)."""

    def __init__(self, path: str | os.PathLike[str], *, instance: str = "",
                 rotate_bytes: int = DEFAULT_ROTATE_BYTES, keep: int = DEFAULT_KEEP,
                 fsync: bool = True) -> None:
        if rotate_bytes < 4096 or keep < 1:
            raise AuditError("audit rotation needs rotate_bytes >= 4096 and keep >= 1")
        self.path = Path(path)
        self.instance = instance
        self.rotate_bytes = rotate_bytes
        self.keep = keep
        self.fsync = fsync
        self.head_path = self.path.with_name(self.path.name + ".head")
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    def check_writable(self) -> None:
        """Raise :class:`AuditError` now unless an append could succeed (directory and
        files writable): a tool checks before it acts, not after."""
        try:
            make_dir(self.path.parent)
            with self._locked():
                pass
            for p in (self.path, self.head_path):
                if p.exists() and not os.access(p, os.W_OK):
                    raise PermissionError(13, "Permission denied", str(p))
        except OSError as exc:
            raise AuditError(f"cannot write the audit log {self.path}: "
                             f"{exc.strerror or exc}") from None

    # ------------------------------------------------------------------ append
    def append(self, principal: Principal | None, action: str, target: str = "", *,
               outcome: str = "ok", reason: str = "", before: object = None,
               after: object = None, extra: dict[str, Any] | None = None,
               user: str | None = None, source: str | None = None,
               via: str = "") -> dict[str, Any]:
        """Append one record and return it (with seq, prev and hash). ``user``,
        ``source`` and ``via`` stand in when there is no principal (a failed login)."""
        record: dict[str, Any] = {
            "time": "", "instance": self.instance,
            "user": principal.name if principal else (user or ""),
            "role": principal.role.label if principal else "",
            "via": principal.via if principal else via,
            "source": source if source is not None else (principal.source if principal
                                                         else ""),
            "action": action, "target": _cut(target), "outcome": outcome,
        }
        if reason:
            record["reason"] = _cut(reason)
        if before is not None or after is not None:
            record["before"] = json_safe(before)
            record["after"] = json_safe(after)
        if extra:
            record.update({k: json_safe(v) for k, v in extra.items() if k not in record})
        try:
            make_dir(self.path.parent)
            with self._locked():
                return self._append_locked(record)
        except OSError as exc:
            log.error("event=audit_failed path=%s action=%s error=%r", self.path, action,
                      exc.strerror or str(exc))
            raise AuditError(f"cannot append to the audit log {self.path}: "
                             f"{exc.strerror or exc}") from None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, AUDIT_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _append_locked(self, record: dict[str, Any]) -> dict[str, Any]:
        head = self._current_head()
        record["seq"] = head.seq + 1
        record["prev"] = head.hash
        record["time"] = _iso(time.time_ns())
        record["hash"] = record_hash(record)
        line = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                          allow_nan=False).encode() + b"\n"
        if head.size and head.size + len(line) > self.rotate_bytes:
            self._rotate()
        fd = self._open_log()
        try:
            os.write(fd, line)
            if self.fsync:
                os.fsync(fd)
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        self._write_head(Head(record["seq"], record["hash"], size))
        log.info("event=audit seq=%d hash=%s action=%s user=%s outcome=%s", record["seq"],
                 record["hash"][:16], record["action"], record["user"], record["outcome"])
        return record

    def _open_log(self) -> int:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                     AUDIT_MODE)
        if os.fstat(fd).st_size == 0:
            give_to_group(fd, AUDIT_MODE)
        return fd

    def _write_head(self, head: Head) -> None:
        tmp = self.head_path.with_name(self.head_path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, AUDIT_MODE)
        try:
            give_to_group(fd, AUDIT_MODE)
            os.write(fd, json.dumps({"seq": head.seq, "hash": head.hash,
                                     "size": head.size}).encode())
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.head_path)

    def _current_head(self) -> Head:
        """The head, reconciled with the file: adopt a complete line a killed writer
        left after its head, cut a torn one, report a file shorter than its head."""
        head = _read_head(self.head_path)
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            size = 0
        if head is None:
            return self._recover_head(size)
        if size == head.size:
            return head
        if size > head.size:
            with self.path.open("rb") as f:
                f.seek(head.size)
                tail = f.read()
            adopted = _adopt(tail, head)
            if adopted is not None:
                head = Head(adopted[0], adopted[1], size)
                self._write_head(head)
                return head
            log.warning("event=audit_torn_tail path=%s bytes=%d detail='a writer died "
                        "mid-append; its partial line is cut'", self.path, size - head.size)
            os.truncate(self.path, head.size)
            return head
        # Shorter than its head: someone cut the log. Record it, then chain on from
        # the head, so verification shows the gap where it happened.
        log.error("event=audit_truncated path=%s size=%d head_size=%d head_seq=%d",
                  self.path, size, head.size, head.seq)
        rec: dict[str, Any] = {
            "time": "", "instance": self.instance, "user": "", "role": "", "via": "",
            "source": "", "action": "audit.truncation_detected", "target": str(self.path),
            "outcome": "failed",
            "reason": f"the log was {size} bytes where its head recorded {head.size}"}
        self._write_head(Head(head.seq, head.hash, size))
        self._append_locked(rec)
        return _read_head(self.head_path) or head

    def _recover_head(self, size: int) -> Head:
        """No head file: take seq and hash from the last complete line (of this file,
        or of the newest rotated one when this one is empty)."""
        if size:
            with self.path.open("rb") as f:
                data = f.read()
            if not data.endswith(b"\n"):
                cut = data.rfind(b"\n") + 1
                log.warning("event=audit_torn_tail path=%s bytes=%d", self.path,
                            len(data) - cut)
                os.truncate(self.path, cut)
                size = cut
        for p in reversed(audit_files(self.path)):
            line = _last_line(p)
            if line:
                try:
                    rec = json.loads(line)
                    return Head(int(rec["seq"]), str(rec["hash"]), size)
                except (ValueError, KeyError, TypeError):
                    raise AuditError(f"the last line of {p} is not an audit record; run "
                                     "`petra audit verify`") from None
        return Head(0, GENESIS, size)

    def _rotate(self) -> None:
        oldest = self.path.with_name(f"{self.path.name}.{self.keep}")
        with contextlib.suppress(FileNotFoundError):
            oldest.unlink()
        for k in range(self.keep - 1, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{k}")
            if src.exists():
                src.replace(self.path.with_name(f"{self.path.name}.{k + 1}"))
        if self.path.exists():
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        log.info("event=audit_rotated path=%s keep=%d", self.path, self.keep)

    # ------------------------------------------------------------------ read
    def read(self, after_seq: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        """Up to ``limit`` records with seq > ``after_seq``, oldest first."""
        out: list[dict[str, Any]] = []
        for p in audit_files(self.path):
            last = _last_line(p)
            with contextlib.suppress(ValueError, KeyError, TypeError):
                if last and int(json.loads(last)["seq"]) <= after_seq:
                    continue  # nothing new in this whole file
            with p.open("rb") as f:
                for raw in f:
                    try:
                        rec = json.loads(raw)
                    except ValueError:
                        continue
                    if isinstance(rec, dict) and int(rec.get("seq", 0)) > after_seq:
                        out.append(rec)
                        if len(out) >= limit:
                            return out
        return out


def plant_audit_log(api: Any, base: Path | None, instance: str) -> AuditLog:
    """The audit log a plant's processes append to: the plant's ``api.audit_file``
    (relative to ``base``, the plant file's directory) with its rotation settings, or
    the box's default. ``api`` is the plant's ``api:`` section or None (duck-typed:
    this package does not import the config)."""
    from petra.security._paths import default_audit_file, resolve

    if api is None:
        return AuditLog(default_audit_file(), instance=instance)
    path = resolve(api.audit_file, base) if api.audit_file else default_audit_file()
    return AuditLog(path, instance=instance, rotate_bytes=int(api.audit_rotate_bytes),
                    keep=int(api.audit_keep))


def _adopt(tail: bytes, head: Head) -> tuple[int, str] | None:
    """(seq, hash) when ``tail`` is exactly one complete, chained record after head."""
    if not tail.endswith(b"\n") or tail.count(b"\n") != 1:
        return None
    try:
        rec = json.loads(tail)
    except ValueError:
        return None
    if (isinstance(rec, dict) and rec.get("seq") == head.seq + 1
            and rec.get("prev") == head.hash and rec.get("hash") == record_hash(rec)):
        return int(rec["seq"]), str(rec["hash"])
    return None


# ---------------------------------------------------------------------- verify
@dataclass(slots=True)
class VerifyReport:
    """What :func:`verify_audit` found. ``ok`` is False when any problem was found."""

    files: list[str] = field(default_factory=list)
    records: int = 0
    first_seq: int = 0
    last_seq: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and self.records > 0


def verify_audit(path: str | os.PathLike[str], *, max_problems: int = 50) -> VerifyReport:
    """Walk the log (rotated files oldest first) and check every line: JSON, its own
    hash, its link to the line before, consecutive seq; then the end against the head."""
    path = Path(path)
    report = VerifyReport()
    files = audit_files(path)
    report.files = [str(p) for p in files]
    if not files:
        report.problems.append(f"no audit log at {path}")
        return report
    prev_hash: str | None = None
    prev_seq: int | None = None

    def problem(text: str) -> None:
        if len(report.problems) < max_problems:
            report.problems.append(text)

    for p in files:
        with p.open("rb") as f:
            for lineno, raw in enumerate(f, 1):
                where = f"{p.name}:{lineno}"
                if not raw.endswith(b"\n"):
                    problem(f"{where}: the last line is incomplete (torn write or cut file)")
                    break
                try:
                    rec = json.loads(raw)
                    seq, prev, digest = int(rec["seq"]), str(rec["prev"]), str(rec["hash"])
                except (ValueError, KeyError, TypeError):
                    problem(f"{where}: not an audit record (edited or corrupt)")
                    prev_hash = None
                    continue
                if record_hash(rec) != digest:
                    problem(f"{where}: seq {seq}: the record does not match its hash "
                            "(it was edited)")
                if prev_hash is None and prev_seq is None:
                    report.first_seq = seq
                    if seq != 1 or prev != GENESIS:
                        report.notes.append(
                            f"the log starts at seq {seq}: older records were rotated away "
                            "(or removed)")
                elif prev_hash is not None and prev != prev_hash:
                    problem(f"{where}: seq {seq}: the chain is broken here (a record "
                            "before it was removed, changed or reordered)")
                if prev_seq is not None and seq != prev_seq + 1:
                    problem(f"{where}: seq jumps from {prev_seq} to {seq} "
                            f"({'records removed' if seq > prev_seq else 'out of order'})")
                prev_hash, prev_seq = digest, seq
                report.records += 1
    report.last_seq = prev_seq or 0
    _check_head(report, _read_head(path.with_name(path.name + ".head")), prev_hash, problem)
    return report


def _check_head(report: VerifyReport, head: Head | None, last_hash: str | None,
                problem: Callable[[str], None]) -> None:
    """The end of the chain against the head: lines cut from the end show here."""
    if head is None:
        report.notes.append("no head file: lines cut from the end cannot be detected")
    elif head.seq > report.last_seq:
        problem(f"the log is truncated: it ends at seq {report.last_seq} but its head "
                f"recorded seq {head.seq}")
    elif head.seq == report.last_seq and head.hash != last_hash:
        problem(f"the last record (seq {report.last_seq}) is not the one the head recorded")
    elif head.seq < report.last_seq:
        report.notes.append(f"{report.last_seq - head.seq} record(s) after the head (an "
                            "append in progress, adopted by the next writer)")
