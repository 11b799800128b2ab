"""Warm restart and retain: the scan's block state across restarts and power loss.

Three places hold block state, from the fastest to the most durable:

1. ``Program.state`` in the scan's memory, changed every cycle;
2. the **retain area** (``/petra-retain.<instance>``, :mod:`petra.shm._retain`): the
   state of the last complete cycle, committed after copy-out (one memcpy). It lives
   in RAM and outlives the scan process, so a scan killed with ``kill -9`` and
   restarted by the supervisor resumes every built-in block from it (warm restart);
3. the **retain file** (``<dir>/retain.bin``), for the blocks marked ``retain: true``:
   written from the retain area every ``interval`` seconds by a thread of its own,
   and once more on a clean stop; read at a cold start (no retain area: the plant was
   stopped, or the box lost power).

Time while the scan is down
---------------------------
A timer's state is its elapsed time, advanced by each cycle's ``dt``. A restarted
scan's first cycle counts one period, so the time the scan was down does not count:
a TON at 3 s of 5 s resumes at 3 s. That is the IEC 61131-3 reading of a retained
timer (the elapsed time ET is what is retained, as a CODESYS RETAIN timer instance
keeps ET) and it is the same for a warm restart and a cold start from the file, so
the two never disagree. A plant that needs wall-clock time across an outage uses
its own timestamps.

The file format
---------------
``PTRRETN1`` (8 bytes), then little-endian u32 version, u32 table length, u64 number
of state values, u32 CRC-32 of the table and the state, u32 zero; the table (JSON, see
:mod:`petra.blocks._retain`); the state as float64. Written atomically: a temporary
file in the same directory, fsync, rename, fsync of the directory. A file that is
short, has another magic, version or CRC, a malformed table or another instance's
name is refused with one ``event=retain_file_refused`` line, and the scan starts cold.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from petra.blocks._retain import RetainRow, decode_meta, encode_meta, restore, retain_rows
from petra.errors import PetraError
from petra.scan._plant import RetainSettings
from petra.shm import RetainArea, RetainSnapshot

log = logging.getLogger("petra.scan")

FILE_MAGIC = b"PTRRETN1"
FILE_VERSION = 1
FILE_NAME = "retain.bin"
_HEAD = struct.Struct("<8sIIQII")
FILE_MAX_BYTES = 1 << 30
ERROR_REPEAT_S = 600.0


# ---------------------------------------------------------------------- the file
def encode_file(meta: bytes, state: npt.NDArray[np.float64]) -> bytes:
    body = state.astype("<f8", copy=False).tobytes()
    crc = zlib.crc32(body, zlib.crc32(meta))
    return _HEAD.pack(FILE_MAGIC, FILE_VERSION, len(meta), len(state), crc, 0) + meta + body


def decode_file(raw: bytes) -> tuple[bytes, npt.NDArray[np.float64]]:
    """``(table, state)`` of a retain file; ValueError saying what is wrong."""
    if len(raw) < _HEAD.size:
        raise ValueError(f"{len(raw)} bytes: shorter than the header")
    magic, version, meta_len, n_state, crc, _ = _HEAD.unpack_from(raw)
    if magic != FILE_MAGIC:
        raise ValueError("not a Petra retain file (magic)")
    if version != FILE_VERSION:
        raise ValueError(f"format version {version}, this build reads {FILE_VERSION}")
    if len(raw) != _HEAD.size + meta_len + 8 * n_state:
        raise ValueError(f"{len(raw)} bytes, the header says "
                         f"{_HEAD.size + meta_len + 8 * n_state}")
    meta = raw[_HEAD.size: _HEAD.size + meta_len]
    body = raw[_HEAD.size + meta_len:]
    if zlib.crc32(body, zlib.crc32(meta)) != crc:
        raise ValueError("CRC mismatch (torn or altered)")
    return meta, np.frombuffer(body, dtype="<f8").astype(np.float64)


def write_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def read_file(path: Path, instance: str) -> tuple[list[RetainRow], npt.NDArray[np.float64]] | None:
    """The table and state of a retain file; None (logged) when there is none or it
    is refused."""
    try:
        with path.open("rb") as f:
            raw = f.read(FILE_MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.error("event=retain_file_refused path=%s reason=%r action=cold_start", path,
                  str(exc))
        return None
    try:
        if len(raw) > FILE_MAX_BYTES:
            raise ValueError("larger than 1 GiB")
        meta, state = decode_file(raw)
        owner, rows = decode_meta(meta, len(state))
        if owner != instance:
            raise ValueError(f"written by instance {owner!r}, not {instance!r}")
    except ValueError as exc:
        log.error("event=retain_file_refused path=%s reason=%r action=cold_start", path,
                  str(exc))
        return None
    return rows, state


def select_blocks(rows: Sequence[RetainRow], state: npt.NDArray[np.float64],
           names: set[str], instance: str) -> bytes:
    """A retain file holding only the blocks in ``names``, their slices packed."""
    kept, parts, off = [], [], 0
    for r in rows:
        if r.name in names:
            kept.append(RetainRow(r.name, r.type, r.layout, off, r.size, r.wiring, r.params))
            parts.append(state[r.offset: r.offset + r.size])
            off += r.size
    packed = np.concatenate(parts) if parts else np.zeros(0, np.float64)
    return encode_file(encode_meta(kept, instance), packed)


# ---------------------------------------------------------------------- the keeper
class RetainKeeper:
    """The scan's side of retain: restores at start, binds each program to the retain
    area (the engine's ``retain`` hook), persists the ``retain: true`` blocks.

    ``names`` are the segment's signal names by index (the table names signals, not
    indices). Every failure of the retain machinery is logged and degrades to a cold
    start or to no persistence: it never stops the scan."""

    def __init__(self, instance: str, names: Sequence[str],
                 settings: RetainSettings | None, avoid_cpu: int | None = None) -> None:
        self.instance = instance
        self.names = list(names)
        self.settings = settings
        self.path = Path(settings.dir) / FILE_NAME if settings is not None else None
        self.area: RetainArea | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.file_writes = 0
        self.avoid_cpu = avoid_cpu
        self._table: tuple[Any, bytes] | None = None
        self._last_error: tuple[str, float] | None = None

    # ------------------------------------------------------------ start-up
    def restore(self, program: Any) -> str:
        """Restore ``program``'s block state: from the retain area when one is there
        ("warm"), else from the retain file ("file"), else nothing ("cold"). Opens or
        creates the retain area for the run either way."""
        source = "cold"
        try:
            self.area = RetainArea.open(self.instance)
        except (PetraError, OSError) as exc:
            log.error("event=retain_area_refused reason=%r action=cold_start", str(exc))
            self.area = None
        snap: RetainSnapshot | None = None
        if self.area is not None:
            try:
                snap = self.area.read()
            except (PetraError, OSError) as exc:
                log.error("event=retain_area_refused reason=%r action=cold_start", str(exc))
        if snap is not None:
            try:
                owner, rows = decode_meta(snap.meta, len(snap.state))
                if owner != self.instance:
                    raise ValueError(f"written by instance {owner!r}")
            except ValueError as exc:
                log.error("event=retain_area_refused reason=%r action=cold_start", str(exc))
            else:
                report = restore(program, self.names, rows, snap.state, source="area")
                log.info("event=retain_warm_start kept=%d params_changed=%d reset=%d new=%d "
                         "cycles=%d", len(report.kept), len(report.params_changed),
                         len(report.reset), len(report.new), snap.cycles)
                source = "warm"
        if source == "cold" and self.path is not None and self.settings is not None:
            got = read_file(self.path, self.instance)
            if got is not None:
                rows, state = got
                report = restore(program, self.names, rows, state,
                                 only=set(self.settings.blocks), source="file")
                log.info("event=retain_file_restored path=%s kept=%d params_changed=%d "
                         "reset=%d", self.path, len(report.kept), len(report.params_changed),
                         len(report.reset))
                source = "file"
        if self.area is None or snap is None:
            self._create()
        return source

    def _create(self) -> None:
        if self.area is not None:
            self.area.close()
            self.area = None
        try:
            self.area = RetainArea.create(self.instance)
        except (PetraError, OSError) as exc:  # no shm for it: no warm restart, said
            log.error("event=retain_area_unavailable reason=%r", str(exc))

    # ------------------------------------------------------------ the engine's hook
    def precompute(self, program: Any) -> None:
        """Build ``program``'s table now (the reload worker calls this before asking
        for the swap): hashing 10k blocks takes ~0.1 s, which must not be spent in
        the swap cycle."""
        self._table = (program, encode_meta(retain_rows(program, self.names), self.instance))

    def bind(self, program: Any) -> tuple[Any, ...] | None:
        """Bind ``program`` to the retain area (a new table generation, committed at
        once) and return the per-cycle commit arguments."""
        if self.area is None:
            return None
        table = self._table
        self._table = None
        if table is not None and table[0] is program:
            meta = table[1]
        else:
            meta = encode_meta(retain_rows(program, self.names), self.instance)
        try:
            self.area.prepare(meta, program.state)
        except (OSError, PetraError) as exc:  # e.g. /dev/shm full: run on, without
            log.error("event=retain_area_unavailable reason=%r action=no_warm_restart",
                      str(exc))
            return None
        return self.area.commit_args(program.state)

    # ------------------------------------------------------------ persistence
    def start_persisting(self) -> None:
        """Start the file writer (only when some block is ``retain: true``)."""
        if self.settings is None or self.area is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._persist_loop, name="petra-retain",
                                        daemon=True)
        self._thread.start()

    def set_settings(self, settings: RetainSettings | None) -> None:
        """A reload changed ``retain:`` (the thread reads the settings each time)."""
        self.settings = settings
        self.path = Path(settings.dir) / FILE_NAME if settings is not None else None
        self.start_persisting()

    def _persist_loop(self) -> None:
        cpus = set(range(os.cpu_count() or 1))
        if self.avoid_cpu is not None and len(cpus) > 1:  # never on the scan's CPU
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, cpus - {self.avoid_cpu})
        while True:
            settings = self.settings
            if self._stop.wait(settings.interval_s if settings is not None else 1.0):
                return
            self.persist()

    def persist(self) -> bool:
        """Write the retained blocks of the last complete commit to the file; False
        (logged) when it could not."""
        if self.area is None or self.path is None or self.settings is None:
            return False
        try:
            snap = self._read_own_mapping()
            if snap is None:
                return False
            _, rows = decode_meta(snap.meta, len(snap.state))
            data = select_blocks(rows, snap.state, set(self.settings.blocks), self.instance)
            write_file(self.path, data)
        except (OSError, PetraError, ValueError) as exc:
            # Once per distinct error, then every ERROR_REPEAT_S while it lasts.
            now = time.monotonic()
            last = self._last_error
            if last is None or last[0] != str(exc) or now - last[1] >= ERROR_REPEAT_S:
                self._last_error = (str(exc), now)
                log.error("event=retain_file_write_failed path=%s error=%r", self.path,
                          str(exc))
            return False
        if self._last_error is not None:
            self._last_error = None
            log.info("event=retain_file_write_ok path=%s", self.path)
        self.file_writes += 1
        return True

    def _read_own_mapping(self) -> RetainSnapshot | None:
        """The last complete commit, through a mapping of this thread's own: the loop
        thread remaps its own when a reload grows the area, and a mapping shared with it
        could vanish under this read. Retried once when the area grew meanwhile."""
        for attempt in range(2):
            reader = RetainArea.open(self.instance)
            if reader is None:
                return None
            try:
                return reader.read()
            except PetraError:
                if attempt:
                    raise
            finally:
                reader.close()
        return None

    def stop(self, *, final_write: bool) -> None:
        """Stop the file writer, write once more on a clean stop, unmap."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if final_write and self.persist():
            log.info("event=retain_file_written path=%s reason=stop", self.path)
        if self.area is not None:
            with contextlib.suppress(BufferError):
                self.area.close()
            self.area = None
