"""A durable request spool: one JSON request per file, answered with a result file.

Why files and not a socket
--------------------------
Operator actions (acknowledge an alarm, shelve it) come from several front ends (the
CLI, the HTTP API, MQTT commands) and go to one process that may be restarting at that
moment. A request written here survives that: it waits in the directory until the
process reads it, in order, and the answer is a file the front end can wait for. No
process holds a socket to another on the hot path, and the protocol is plain enough to
be driven by hand (``ls``, ``cat``) when something is stuck.

Protocol
--------
``<dir>/tmp/``      a client writes ``<id>.json`` here and ``fsync``s it,
``<dir>/incoming/`` then renames it here (atomic: a reader sees all of it or nothing);
``<dir>/results/``  the server writes ``<id>.json`` (tmp + rename) after handling it,
                    then removes the request.

Ids are ``<20-digit wall-clock ns>-<pid>-<8 hex>``: sorted by name they are in the order
they were submitted (clients on one box share the clock), and unique without
coordination. The server handles requests strictly in name order. A server killed
between acting on a request and answering it sees the request again on restart: the
server must recognise ids it has acted on (it logs them with what it did) and answer
from its log instead of acting twice. Results are removed by the client that reads
them, or after ``result_max_age_s``.

Garbage (not JSON, nested too deep, not an object, too large, a stray file name) is
answered with an error result where there is an id to answer, and removed either way:
a bad file can never wedge the queue. Requests are parsed with the bounded
:func:`petra.io.parse_json`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from petra.io._input import InputError, parse_json

MAX_REQUEST_BYTES = 64 * 1024
RESULT_MAX_AGE_S = 3600.0
TMP_MAX_AGE_S = 600.0
_ID_RE = re.compile(r"^[0-9]{20}-[0-9]{1,10}-[0-9a-f]{8}$")
DIR_MODE = 0o770


def new_id(now_ns: int | None = None) -> str:
    """A fresh request id, ordered by submission time."""
    ns = time.time_ns() if now_ns is None else now_ns
    return f"{ns:020d}-{os.getpid()}-{secrets.token_hex(4)}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes, *, fsync: bool) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o660)
    try:
        os.write(fd, data)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


@dataclass(frozen=True, slots=True)
class Request:
    """One request as the server sees it: its id and body, or why it is unreadable."""

    id: str
    body: dict[str, Any] | None
    error: str = ""


class RequestSpool:
    """Both sides of the spool in ``directory`` (created on first use)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)
        self.incoming = self.dir / "incoming"
        self.results = self.dir / "results"
        self.tmp = self.dir / "tmp"

    def ensure(self) -> None:
        for d in (self.dir, self.incoming, self.results, self.tmp):
            d.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)

    # ------------------------------------------------------------------ client side
    def submit(self, body: dict[str, Any], *, request_id: str | None = None) -> str:
        """Write ``body`` (its ``id`` set to the new id) durably into the queue."""
        self.ensure()
        rid = request_id or new_id()
        if not _ID_RE.match(rid):
            raise ValueError(f"bad request id {rid!r}")
        data = json.dumps({**body, "id": rid}, separators=(",", ":"),
                          allow_nan=False).encode()
        if len(data) > MAX_REQUEST_BYTES:
            raise ValueError(f"request larger than {MAX_REQUEST_BYTES} bytes")
        tmp = self.tmp / f"{rid}.json"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o660)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, self.incoming / f"{rid}.json")
        _fsync_dir(self.incoming)
        return rid

    def result(self, request_id: str, *, remove: bool = True) -> dict[str, Any] | None:
        """The answer to ``request_id``, or None while there is none."""
        path = self.results / f"{request_id}.json"
        try:
            doc = json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except ValueError:
            return {"id": request_id, "ok": False, "error": "unreadable result file"}
        if remove:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        return doc if isinstance(doc, dict) else {"id": request_id, "ok": False,
                                                  "error": "result is not an object"}

    def wait(self, request_id: str, timeout_s: float, *, poll_s: float = 0.02,
             sleep: Callable[[float], None] = time.sleep,
             clock: Callable[[], float] = time.monotonic) -> dict[str, Any] | None:
        """Wait up to ``timeout_s`` for the answer; None if it has not come."""
        deadline = clock() + timeout_s
        while True:
            doc = self.result(request_id)
            if doc is not None:
                return doc
            if clock() >= deadline:
                return None
            sleep(poll_s)

    def pending_ids(self) -> list[str]:
        """Ids still waiting in the queue (not yet handled)."""
        try:
            names = os.listdir(self.incoming)
        except FileNotFoundError:
            return []
        return sorted(n[:-5] for n in names if n.endswith(".json") and _ID_RE.match(n[:-5]))

    # ------------------------------------------------------------------ server side
    def pending(self, limit: int = 256) -> list[Request]:
        """Up to ``limit`` waiting requests, oldest first. Stray files are removed."""
        try:
            names = sorted(os.listdir(self.incoming))
        except FileNotFoundError:
            return []
        out: list[Request] = []
        for name in names:
            if len(out) >= limit:
                break
            path = self.incoming / name
            rid = name[:-5] if name.endswith(".json") else ""
            if not _ID_RE.match(rid):
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            out.append(self._load(rid, path))
        return out

    @staticmethod
    def _load(rid: str, path: Path) -> Request:
        try:
            with open(path, "rb") as fh:
                data = fh.read(MAX_REQUEST_BYTES + 1)
        except OSError as exc:
            return Request(rid, None, f"cannot read the request: {exc.strerror}")
        if len(data) > MAX_REQUEST_BYTES:
            return Request(rid, None, f"request larger than {MAX_REQUEST_BYTES} bytes")
        try:  # bounded: depth, number lengths (a hostile file cannot wedge the reader)
            body = parse_json(data, max_bytes=MAX_REQUEST_BYTES)
        except InputError as exc:
            return Request(rid, None, f"bad request: {exc}")
        if not isinstance(body, dict):
            return Request(rid, None, "request must be a JSON object")
        return Request(rid, body)

    def answer(self, request_id: str, result: dict[str, Any], *, fsync: bool = False) -> None:
        """Write the result, then take the request out of the queue."""
        self.ensure()
        data = json.dumps({**result, "id": request_id}, separators=(",", ":"),
                          default=str).encode()
        _write_atomic(self.results / f"{request_id}.json", data, fsync=fsync)
        with contextlib.suppress(FileNotFoundError):
            (self.incoming / f"{request_id}.json").unlink()

    def prune(self, now: float | None = None, *,
              result_max_age_s: float = RESULT_MAX_AGE_S) -> int:
        """Remove results nobody collected and abandoned temporary files; how many."""
        now = time.time() if now is None else now
        n = 0
        for d, age in ((self.results, result_max_age_s), (self.tmp, TMP_MAX_AGE_S)):
            try:
                entries = list(os.scandir(d))
            except FileNotFoundError:
                continue
            for e in entries:
                with contextlib.suppress(OSError):
                    if now - e.stat().st_mtime > age:
                        os.unlink(e.path)
                        n += 1
        return n
