"""Naming, creating, attaching and mapping a segment's POSIX shared-memory object.

A segment is the POSIX shared-memory object ``/petra.<instance>`` (``/dev/shm`` on
Linux), created with ``O_EXCL`` and mode 0660; when a ``petra`` group exists the object
is handed to it, so the plant's processes share it and nobody else can read it. This
module makes or opens the object, maps it, has the C core lay it out (create) or
validate it (open a handle), and turns every refusal into an error that names the
field and both values. :class:`~petra.shm.Segment` builds on it.
"""

from __future__ import annotations

import contextlib
import grp
import mmap
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import posix_ipc

from petra import _core
from petra._core import ffi, lib, raise_for
from petra.errors import (
    NoSuchSegmentError,
    SegmentExistsError,
    SegmentLayoutError,
    SegmentPermissionError,
)
from petra.shm._table import SignalArrays, check_table
from petra.types import validate_instance_name

SHM_DIR = Path("/dev/shm")
SEGMENT_MODE = 0o660


def segment_name(instance: str) -> str:
    """The POSIX shared-memory name of an instance."""
    return f"/petra.{instance}"


def list_instances() -> list[str]:
    """Instance names of the segments present on this machine, sorted."""
    if not SHM_DIR.is_dir():
        return []
    return sorted(p.name[len("petra.") :] for p in SHM_DIR.glob("petra.*"))


def unlink_instance(instance: str) -> bool:
    """Remove an instance's segment name, and its retain area (the scan's block state
    lives exactly as long as the segment); True if the segment existed. Mappings stay
    valid."""
    from petra.shm._retain import unlink_retain  # _retain imports this module

    validate_instance_name(instance)
    with contextlib.suppress(posix_ipc.PermissionsError):
        unlink_retain(instance)
    try:
        posix_ipc.unlink_shared_memory(segment_name(instance))
    except posix_ipc.ExistentialError:
        return False
    except posix_ipc.PermissionsError as exc:
        raise SegmentPermissionError(f"cannot remove segment {instance!r}: {exc}") from None
    return True


def create_mapping(instance: str, table: SignalArrays, journal_capacity: int,
                   heartbeats: int) -> tuple[mmap.mmap, int]:
    """Create ``/petra.<instance>`` (it must not exist), map it and have the C core lay
    out the directory, name index and slots from ``table`` in one pass. Nothing is
    left behind on failure; a refused entry raises with its message."""
    check_table(table)
    n_signals = len(table)
    size = int(lib.petra_segment_size(n_signals, journal_capacity, heartbeats))
    name = segment_name(instance)
    try:
        shm = posix_ipc.SharedMemory(name, posix_ipc.O_CREX, mode=SEGMENT_MODE, size=size)
    except posix_ipc.ExistentialError:
        raise SegmentExistsError(
            f"segment {name} already exists (is instance {instance!r} running? "
            "a stale one is removed by `petra run` or unlink_instance())") from None
    except posix_ipc.PermissionsError as exc:
        raise SegmentPermissionError(f"cannot create segment {name}: {exc}") from None
    try:
        os.fchmod(shm.fd, SEGMENT_MODE)
        _give_to_petra_group(shm.fd)
        mm = mmap.mmap(shm.fd, size, flags=mmap.MAP_SHARED,
                       prot=mmap.PROT_READ | mmap.PROT_WRITE)
    except BaseException:
        shm.close_fd()
        posix_ipc.unlink_shared_memory(name)
        raise
    shm.close_fd()
    # Kept alive until the call returns: cffi pointers into numpy arrays and bytes.
    cols = [np.ascontiguousarray(table.types, np.uint8),
            np.ascontiguousarray(table.flags, np.uint32),
            np.ascontiguousarray(table.initial, np.uint64),
            np.ascontiguousarray(table.initial_quality, np.uint8),
            np.ascontiguousarray(table.minimum, np.float64),
            np.ascontiguousarray(table.maximum, np.float64)]
    ct = ffi.new("petra_sigtable_t *")
    ct.n = n_signals
    keep = [ffi.from_buffer("char[]", b) for b in (table.names, table.units, table.owners)]
    ct.names, ct.units, ct.owners = keep
    ct.names_len, ct.units_len, ct.owners_len = (
        len(table.names), len(table.units), len(table.owners))
    ct.types = ffi.from_buffer("uint8_t[]", cols[0])
    ct.flags = ffi.from_buffer("uint32_t[]", cols[1])
    ct.initial = ffi.from_buffer("uint64_t[]", cols[2])
    ct.initial_quality = ffi.from_buffer("uint8_t[]", cols[3])
    ct.min = ffi.from_buffer("double[]", cols[4])
    ct.max = ffi.from_buffer("double[]", cols[5])
    bad = ffi.new("uint32_t *")
    buf = ffi.from_buffer(mm)
    try:
        rc = lib.petra_init_table(buf, size, instance.encode(), ct, journal_capacity,
                                  heartbeats, os.getpid(), bad)
    finally:
        ffi.release(buf)
    if rc < 0:
        mm.close()
        posix_ipc.unlink_shared_memory(name)
        if bad[0] != 0xFFFFFFFF:
            raise_for(rc, f"initialising segment {instance!r}: "
                          f"{_entry_problem(table, int(bad[0]))}")
        raise_for(rc, f"initialising segment {instance!r}")
    return mm, size


def _entry_problem(table: SignalArrays, index: int) -> str:
    """Why the C core refused entry ``index`` of a table, in words."""
    dup = table.duplicate_of(index)
    if dup:
        return dup
    names = table.name_list()
    name = names[index] if index < len(names) else "?"
    return f"entry {index} ({name!r}): a bad name, unit, owner, type or limits"


def map_existing(instance: str, readonly: bool) -> tuple[mmap.mmap, int]:
    """Open and map an existing instance's object (not yet validated)."""
    validate_instance_name(instance)
    name = segment_name(instance)
    try:
        shm = posix_ipc.SharedMemory(name, 0, read_only=readonly)
    except posix_ipc.ExistentialError:
        running = ", ".join(list_instances()) or "none"
        raise NoSuchSegmentError(
            f"no segment for instance {instance!r} ({name}); running: {running}") from None
    except posix_ipc.PermissionsError as exc:
        raise SegmentPermissionError(
            f"permission denied on {name} (mode 0660, group petra; "
            f"add this user to group petra): {exc}") from None
    try:
        size = os.fstat(shm.fd).st_size
        if size == 0:
            raise SegmentLayoutError(f"segment {name} is empty (still being created?)")
        prot = mmap.PROT_READ if readonly else mmap.PROT_READ | mmap.PROT_WRITE
        mm = mmap.mmap(shm.fd, size, flags=mmap.MAP_SHARED, prot=prot)
    finally:
        shm.close_fd()
    return mm, size


def open_handle(instance: str, mm: mmap.mmap, size: int, readonly: bool) -> tuple[Any, Any]:
    """Validate a mapping (C: ``petra_open``, from a private copy of the header) and
    return its buffer and C handle. On refusal the mapping is closed and the error
    says which header field differs."""
    buf = ffi.from_buffer(mm)
    handle = ffi.new("petra_seg_t **")
    rc = lib.petra_open(buf, size, int(readonly), os.getpid(), handle)
    if rc < 0:
        detail = _header_mismatch(mm, rc)
        ffi.release(buf)
        mm.close()
        if detail:
            raise SegmentLayoutError(f"segment {instance!r} ({segment_name(instance)}): "
                                     f"{detail}")
        raise_for(rc, f"segment {instance!r}")
    return buf, ffi.gc(handle[0], lib.petra_close)


_HEADER = struct.Struct("<QIIQ")  # magic, abi_version, header_size, layout_hash
_MAGIC = 0x3147455341525450


def _header_mismatch(mm: mmap.mmap, rc: int) -> str:  # noqa: PLR0911  # one case per field
    """Say which header field made the C core refuse a mapping, with both values."""
    if rc not in (_core.EMAGIC, _core.EABI, _core.ELAYOUT, _core.ESIZE):
        return ""
    if len(mm) < _HEADER.size:
        return f"mapping of {len(mm)} bytes is smaller than a segment header"
    magic, abi, header_size, layout = _HEADER.unpack_from(mm, 0)
    if rc == _core.EMAGIC:
        return (f"magic is {magic:#018x}, expected {_MAGIC:#018x}: not a Petra segment, "
                "or its creator has not finished initialising it")
    if rc == _core.EABI:
        return f"ABI version is {abi}, this build reads ABI {_core.abi_version()}"
    if rc == _core.ELAYOUT and layout != _core.layout_hash():
        return (f"layout hash is {layout:#018x}, this build's is {_core.layout_hash():#018x} "
                "(built from a different csrc/layout.h)")
    if rc == _core.ELAYOUT:
        return (f"header region table is inconsistent (header size {header_size}, "
                "offsets or counts do not match the layout): corrupt segment")
    return "mapping is smaller than the size its header records"


def _give_to_petra_group(fd: int) -> None:
    """Hand the segment to group ``petra`` when it exists and we may."""
    try:
        gid = grp.getgrnam("petra").gr_gid
    except KeyError:
        return
    with contextlib.suppress(PermissionError):
        os.fchown(fd, -1, gid)


__all__ = ["SEGMENT_MODE", "SHM_DIR", "create_mapping", "list_instances", "map_existing",
           "open_handle", "segment_name", "unlink_instance"]
