"""A mapped signal table: create or attach by instance name, read and write signals.

Naming and permissions
----------------------
A segment is the POSIX shared-memory object ``/petra.<instance>`` (``/dev/shm`` on
Linux), created with ``O_EXCL`` and mode 0660; when a ``petra`` group exists the object
is handed to it, so the plant's processes share it and nobody else can read it.

Handles and fork
----------------
A :class:`Segment` is a private view: its own mapping, its own writer id (the pid)
and its own cached name index. After ``fork`` the child inherits the mapping and may
keep using the handle; the writer id is switched to the child's pid automatically
(``os.register_at_fork``), so the repair routine can tell the two apart. Journal
consumers are copied with their cursor: each process then reads on its own. A handle
must not be used from two threads at once (it owns scratch buffers); open one per
thread instead.

Consistency
-----------
Every read returns one consistent slot (value, quality and timestamps belong
together). A batch read is consistent per slot, not across slots: the PLC
process-image contract.
"""

from __future__ import annotations

import contextlib
import difflib
import grp
import math
import mmap
import os
import struct
import weakref
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn, Self

import numpy as np
import numpy.typing as npt
import posix_ipc

from petra import _core
from petra._core import check, ffi, lib, raise_for
from petra.errors import (
    NoSuchSegmentError,
    PetraError,
    SegmentExistsError,
    SegmentLayoutError,
    SegmentPermissionError,
    SegmentReadOnlyError,
    SignalNotWritableError,
    SignalTypeError,
    UnknownSignalError,
    ValueOutOfRangeError,
)
from petra.types import (
    FLAG_NONFINITE,
    FLAG_WRITABLE,
    QUALITIES,
    SUBSTATUSES,
    Quality,
    Sample,
    SignalDef,
    SignalType,
    Value,
    coerce_value,
    validate_instance_name,
    validate_signal_name,
)

SHM_DIR = Path("/dev/shm")
SEGMENT_MODE = 0o660
DEFAULT_JOURNAL_CAPACITY = 1 << 16
DEFAULT_HEARTBEATS = 64

_FLOAT = int(SignalType.FLOAT)
_INT = int(SignalType.INT)
_BOOL = int(SignalType.BOOL)
_GOOD = int(Quality.GOOD)
# Hot-path bindings: one global lookup instead of an attribute chain per call.
_read = lib.petra_read
_get_f64 = lib.petra_get_f64
_get_i64 = lib.petra_get_i64
_write_f64 = lib.petra_write_f64
_write_i64 = lib.petra_write_i64
_new_tuple = tuple.__new__
_I64_MIN = -(2**63)
# petra_sample_t unpacked in one call: value, source_ts, write_ts, writer, type,
# quality, substatus (layout checked against cffi's offsets at import below).
_F_SAMPLE = struct.Struct("=dqqIBBB").unpack_from
_I_SAMPLE = struct.Struct("=qqqIBBB").unpack_from
_live_handles: weakref.WeakSet[Segment] = weakref.WeakSet()


def segment_name(instance: str) -> str:
    """The POSIX shared-memory name of an instance."""
    return f"/petra.{instance}"


def list_instances() -> list[str]:
    """Instance names of the segments present on this machine, sorted."""
    if not SHM_DIR.is_dir():
        return []
    return sorted(p.name[len("petra.") :] for p in SHM_DIR.glob("petra.*"))


def unlink_instance(instance: str) -> bool:
    """Remove an instance's segment name; True if it existed. Mappings stay valid."""
    validate_instance_name(instance)
    try:
        posix_ipc.unlink_shared_memory(segment_name(instance))
    except posix_ipc.ExistentialError:
        return False
    except posix_ipc.PermissionsError as exc:
        raise SegmentPermissionError(f"cannot remove segment {instance!r}: {exc}") from None
    return True


@dataclass(frozen=True, slots=True)
class SignalInfo:
    """A directory entry: what any process can learn about a signal without the config.

    ``minimum``/``maximum`` are the signal's configured limits (None: no limit); with
    ``writable`` and ``allow_nonfinite`` they are what :meth:`Segment.write_checked`
    enforces."""

    index: int
    name: str
    type: SignalType
    unit: str
    owner: str
    flags: int
    minimum: float | None = None
    maximum: float | None = None

    @property
    def writable(self) -> bool:
        """Operators, commands and tools may write it (directory flag WRITABLE)."""
        return bool(self.flags & FLAG_WRITABLE)

    @property
    def allow_nonfinite(self) -> bool:
        """NaN and +-inf are valid values (directory flag NONFINITE)."""
        return bool(self.flags & FLAG_NONFINITE)


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """The header of a segment, plus the journal head at the time of reading."""

    instance: str
    abi_version: int
    layout_hash: int
    directory_hash: int
    created_ns: int
    total_size: int
    n_signals: int
    n_heartbeats: int
    journal_capacity: int
    journal_head: int
    producer_drops: int
    creator_pid: int


@dataclass(slots=True)
class BatchRead:
    """The result of a batch read. ``values`` holds raw 64-bit patterns; see
    :meth:`Segment.decode` or use :meth:`Segment.read_batch_f64` for floats."""

    values: npt.NDArray[np.uint64]
    quality: npt.NDArray[np.uint8]
    source_ts_ns: npt.NDArray[np.int64]
    busy: int


if (ffi.offsetof("petra_sample_t", "writer"), ffi.offsetof("petra_sample_t", "quality")) != (
    24, 29):  # pragma: no cover - a build whose struct layout moved
    raise ImportError("petra_sample_t layout differs from the unpack format in _segment.py")


def _after_fork_in_child() -> None:
    pid = os.getpid()
    for seg in list(_live_handles):
        seg._set_writer(pid)


os.register_at_fork(after_in_child=_after_fork_in_child)


def _as_array(arr: Any, dtype: type[np.generic], what: str,
              convert: str = "") -> npt.NDArray[Any]:
    """``arr`` as a contiguous 1-D array of ``dtype``. Arrays of another dtype are refused
    (a silent reinterpretation of bits would be worse than an error) unless their kind
    is in ``convert`` and every element survives the conversion unchanged; sequences
    (lists, tuples) are converted the same way."""
    a = np.asarray(arr)
    if a.dtype != dtype:
        if a.size == 0:
            a = a.astype(dtype)
        elif a.dtype.kind in convert:
            conv = a.astype(dtype)
            if not np.array_equal(conv.astype(a.dtype), a, equal_nan=a.dtype.kind == "f"):
                raise ValueOutOfRangeError(f"{what} do not fit {np.dtype(dtype).name}")
            a = conv
        else:
            raise SignalTypeError(f"{what} must be a numpy array of {np.dtype(dtype).name}, "
                                  f"got {a.dtype}")
    if a.ndim != 1:
        raise SignalTypeError(f"{what} must be one-dimensional")
    return np.ascontiguousarray(a)


class Segment:
    """A process's handle on one instance's shared segment."""

    def __init__(self, instance: str, mm: mmap.mmap, size: int, readonly: bool,
                 owner: bool) -> None:
        self._instance = instance
        self._mm = mm
        self._size = size
        self._readonly = readonly
        self._owner = owner
        self._closed = False
        self._buf = ffi.from_buffer(mm)
        handle = ffi.new("petra_seg_t **")
        rc = lib.petra_open(self._buf, size, int(readonly), os.getpid(), handle)
        if rc < 0:
            detail = _header_mismatch(mm, rc)
            ffi.release(self._buf)
            mm.close()
            if detail:
                raise SegmentLayoutError(f"segment {instance!r} ({segment_name(instance)}): "
                                         f"{detail}")
            raise_for(rc, f"segment {instance!r}")
        self._h = ffi.gc(handle[0], lib.petra_close)
        self._sample = ffi.new("petra_sample_t *")
        self._sbuf = ffi.buffer(self._sample)
        self._rc = ffi.new("int *")
        n = int(lib.petra_n_signals(self._h))
        self._infos: list[SignalInfo] = []
        entry = ffi.new("petra_sigdef_t *")
        for i in range(n):
            check(lib.petra_dir_get(self._h, i, entry))
            self._infos.append(
                SignalInfo(
                    index=i,
                    name=ffi.string(entry.name).decode("utf-8"),
                    type=SignalType(entry.type),
                    unit=ffi.string(entry.unit).decode("utf-8"),
                    owner=ffi.string(entry.owner).decode("utf-8"),
                    flags=int(entry.flags),
                    minimum=_limit(float(entry.min)),
                    maximum=_limit(float(entry.max)),
                )
            )
        self._index = {info.name: info.index for info in self._infos}
        self._types = [int(info.type) for info in self._infos]
        _live_handles.add(self)

    # ---------------------------------------------------------------- lifecycle
    @classmethod
    def create(
        cls,
        instance: str,
        signals: Sequence[SignalDef],
        *,
        journal_capacity: int = DEFAULT_JOURNAL_CAPACITY,
        heartbeats: int = DEFAULT_HEARTBEATS,
    ) -> Segment:
        """Create and initialise a new segment; fails if the instance already has one."""
        validate_instance_name(instance)
        if journal_capacity < 2 or journal_capacity & (journal_capacity - 1):
            raise ValueOutOfRangeError(
                f"journal_capacity must be a power of two >= 2, got {journal_capacity}")
        if not 1 <= heartbeats <= 4096:
            raise ValueOutOfRangeError(f"heartbeats must be 1..4096, got {heartbeats}")
        defs = ffi.new("petra_sigdef_t[]", max(len(signals), 1))
        seen: dict[str, int] = {}
        for i, sig in enumerate(signals):
            if sig.name in seen:
                raise PetraError(f"signal {sig.name!r} is defined twice "
                                 f"(entries {seen[sig.name]} and {i})")
            seen[sig.name] = i
            d = defs[i]
            d.name = sig.name.encode("utf-8")
            d.unit = sig.unit.encode("utf-8")
            d.owner = sig.owner.encode("utf-8")
            d.type = int(sig.type)
            d.flags = sig.flags
            d.initial = _encode(sig.type, _initial(sig), sig.name)
            d.initial_quality = int(sig.initial_quality)
            d.min = math.nan if sig.minimum is None else sig.minimum
            d.max = math.nan if sig.maximum is None else sig.maximum
        size = int(lib.petra_segment_size(len(signals), journal_capacity, heartbeats))
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
        buf = ffi.from_buffer(mm)
        try:
            rc = lib.petra_init(buf, size, instance.encode(), defs, len(signals),
                                journal_capacity, heartbeats, os.getpid())
        finally:
            ffi.release(buf)
        if rc < 0:
            mm.close()
            posix_ipc.unlink_shared_memory(name)
            raise_for(rc, f"initialising segment {instance!r}")
        return cls(instance, mm, size, readonly=False, owner=True)

    @classmethod
    def attach(cls, instance: str, *, readonly: bool = False,
               expect_directory_hash: int | None = None) -> Segment:
        """Map an existing instance's segment; values are current at once."""
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
        seg = cls(instance, mm, size, readonly=readonly, owner=False)
        found = seg.directory_hash
        if expect_directory_hash is not None and found != expect_directory_hash:
            seg.close()
            raise SegmentLayoutError(
                f"segment {instance!r} holds another signal directory "
                f"({found:#x}, expected {expect_directory_hash:#x}): "
                "it was created from a different config")
        return seg

    def close(self) -> None:
        """Unmap this handle. Idempotent. Other processes are unaffected."""
        if self._closed:
            return
        self._closed = True
        _live_handles.discard(self)
        self._h = None
        ffi.release(self._buf)
        with contextlib.suppress(BufferError):
            self._mm.close()

    def unlink(self) -> None:
        """Remove the segment's name; processes that mapped it keep their mapping."""
        unlink_instance(self._instance)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("ro" if self._readonly else "rw")
        return f"<Segment {self._instance!r} {len(self._infos)} signals {state}>"

    # ---------------------------------------------------------------- directory
    @property
    def instance(self) -> str:
        return self._instance

    @property
    def readonly(self) -> bool:
        return self._readonly

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def size(self) -> int:
        """Bytes of shared memory the segment occupies."""
        return self._size

    def __len__(self) -> int:
        return len(self._infos)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    @property
    def signals(self) -> Sequence[SignalInfo]:
        return tuple(self._infos)

    @property
    def names(self) -> list[str]:
        return [info.name for info in self._infos]

    def index(self, name: str) -> int:
        """The slot index of a signal name (cached; raises UnknownSignalError)."""
        try:
            return self._index[name]
        except KeyError:
            raise UnknownSignalError(self._unknown(name)) from None

    def indices(self, names: Iterable[str]) -> npt.NDArray[np.uint32]:
        return np.fromiter((self.index(n) for n in names), dtype=np.uint32)

    def info_of(self, key: str | int) -> SignalInfo:
        return self._infos[self._resolve(key)]

    def info(self) -> SegmentInfo:
        out = ffi.new("petra_info_t *")
        check(lib.petra_info(self._live(), out))
        return SegmentInfo(
            instance=ffi.string(out.instance).decode(),
            abi_version=int(out.abi_version),
            layout_hash=int(out.layout_hash),
            directory_hash=int(out.directory_hash),
            created_ns=int(out.created_ns),
            total_size=int(out.total_size),
            n_signals=int(out.n_signals),
            n_heartbeats=int(out.n_heartbeats),
            journal_capacity=int(out.journal_capacity),
            journal_head=int(out.journal_head),
            producer_drops=int(out.producer_drops),
            creator_pid=int(out.creator_pid),
        )

    @property
    def directory_hash(self) -> int:
        return self.info().directory_hash

    # ---------------------------------------------------------------- single signal
    def read(self, key: str | int) -> Sample:
        """Read one signal by name or index: value, quality, timestamps, writer."""
        return self.read_index(self._resolve(key))

    def read_index(self, index: int) -> Sample:
        try:
            rc = _read(self._h, index, self._sample)
        except (TypeError, OverflowError):
            self._bad_index(index)
        if rc:
            raise_for(rc, self._label(index))
        t = self._types[index]
        v, sts, wts, writer, _, q, sub = (_F_SAMPLE if t == _FLOAT else _I_SAMPLE)(self._sbuf)
        if t == _BOOL:
            v = v == 1
        return _new_tuple(Sample, (v, QUALITIES[q], sts, wts, writer, SUBSTATUSES[sub]))

    def get(self, key: str | int) -> Value:
        """Read only the value of one signal (the cheapest single read)."""
        return self.get_index(self._resolve(key))

    def get_index(self, index: int) -> Value:
        """Read only the value of one signal by index (the hot path).

        The C getter returns a sentinel (NaN or INT64_MIN) on failure, so the error
        code is looked at only when the value equals the sentinel: one cdata index
        fewer per call. A stored NaN or INT64_MIN just takes the look."""
        rcp = self._rc
        try:
            t = self._types[index]
            v: Value = (_get_f64 if t == _FLOAT else _get_i64)(self._h, index, rcp)
        except (TypeError, IndexError, OverflowError):
            self._bad_index(index)
        if t == _FLOAT:
            if v != v and rcp[0]:  # noqa: PLR0124  # NaN test, cheaper than isnan
                raise_for(rcp[0], self._label(index))
            return v
        if v == _I64_MIN and rcp[0]:
            raise_for(rcp[0], self._label(index))
        return v == 1 if t == _BOOL else v

    def write(self, key: str | int, value: Value, quality: int = _GOOD,
              source_ts_ns: int = 0, substatus: int = 0) -> None:
        """Write one signal by name or index; the change goes to the journal.
        ``substatus`` (a :class:`Substatus`) says why, e.g. NOT_CONNECTED with BAD."""
        self.write_index(self._resolve(key), value, quality, source_ts_ns, substatus)

    def write_index(  # noqa: PLR0912  # one flat fast path per type, errors mapped once
        self, index: int, value: Value, quality: int = _GOOD, source_ts_ns: int = 0,
        substatus: int = 0,
    ) -> None:
        """Write one signal by index. ``quality`` is a :class:`Quality` (or its int)."""
        try:
            t = self._types[index]
        except (TypeError, IndexError):
            self._bad_index(index)
        try:
            if substatus:
                rc = lib.petra_write(self._h, index, t,
                                     _encode(SignalType(t), value, self._infos[index].name),
                                     quality, substatus, source_ts_ns)
            elif t == _FLOAT:
                if value.__class__ is not float:
                    value = coerce_value(SignalType.FLOAT, value, name=self._infos[index].name)
                rc = _write_f64(self._h, index, value, quality, source_ts_ns)
            else:
                if value.__class__ is not int or t != _INT:
                    value = coerce_value(SignalType(t), value, name=self._infos[index].name)
                rc = _write_i64(self._h, index, value, quality, source_ts_ns)
        except OverflowError:
            if index.__class__ is not int or not 0 <= index < len(self._infos):
                self._bad_index(index)
            raise ValueOutOfRangeError(
                f"{self._label(index)}: {value!r} does not fit int64, or bad "
                f"quality/timestamp ({quality!r}, {source_ts_ns!r})") from None
        except SignalTypeError:
            raise
        except TypeError:
            if self._closed:
                self._live()
            raise SignalTypeError(
                f"{self._label(index)}: bad quality or timestamp "
                f"({quality!r}, {source_ts_ns!r})") from None
        if rc:
            if self._readonly:
                raise SegmentReadOnlyError(f"{self._label(index)}: segment attached read-only")
            raise_for(rc, self._label(index))

    def write_checked(self, key: str | int, value: object, *, quality: int = _GOOD,
                      source_ts_ns: int = 0) -> None:
        """Write one signal on behalf of someone outside the plant's own logic: an
        operator command, an MQTT or API request, ``petra write``, a driver passing a
        command on. This is the one path that enforces what the directory says about
        a signal, so every caller refuses the same values with the same errors:

        - :class:`~petra.errors.SignalNotWritableError` unless the signal is marked
          writable;
        - :class:`~petra.errors.SignalTypeError` for a value of the wrong type (a str,
          a bool for a number, a non-integral float for an int);
        - :class:`~petra.errors.ValueOutOfRangeError` for NaN or +-inf (unless the
          signal allows non-finite values), a value outside the signal's min/max
          (the message names the signal and both limits), an int beyond int64, or a
          quality that is not a :class:`Quality`.

        Nothing is written when a check fails. :meth:`write` stays the unchecked path
        for the plant's own writers (the scan, a driver's inputs)."""
        index = self._resolve(key)
        info = self._infos[index]
        label = f"signal {info.name!r}"
        if not info.writable:
            raise SignalNotWritableError(f"{label} is not writable (mark it writable: true "
                                         "in the plant to allow commands)")
        if isinstance(quality, bool) or quality not in (0, 1, 2):
            raise ValueOutOfRangeError(f"{label}: quality must be 0..2, got {quality!r}")
        if isinstance(value, float) and not math.isfinite(value) and not (
                info.type is SignalType.FLOAT and info.allow_nonfinite):
            raise ValueOutOfRangeError(f"{label}: {value!r} is not a finite number"
                                       + ("" if info.type is not SignalType.FLOAT else
                                          " and the signal does not allow non-finite values"))
        v = coerce_value(info.type, value, name=info.name)
        if info.type is not SignalType.BOOL and v == v and (  # noqa: PLR0124  # NaN passes
                (info.minimum is not None and v < info.minimum)
                or (info.maximum is not None and v > info.maximum)):
            raise ValueOutOfRangeError(
                f"{label}: {v!r} is outside its limits "
                f"[{_format_limit(info.minimum, '-inf')}, {_format_limit(info.maximum, 'inf')}]")
        self.write_index(index, v, quality, source_ts_ns)

    # ---------------------------------------------------------------- batches
    def read_batch(self, indices: npt.ArrayLike | None = None, *, first: int = 0,
                   count: int | None = None, out: BatchRead | None = None) -> BatchRead:
        """Read many slots at once (the fast path). ``indices`` or a range
        ``first..first+count``. Busy slots keep the value already in ``out`` (the last
        good value) and are counted in ``busy``."""
        idx, n = self._batch_args(indices, first, count)
        if out is None:
            out = BatchRead(np.zeros(n, np.uint64), np.zeros(n, np.uint8),
                            np.zeros(n, np.int64), 0)
        elif len(out.values) < n or len(out.quality) < n or len(out.source_ts_ns) < n:
            raise ValueOutOfRangeError(f"output arrays hold fewer than {n} entries")
        busy = ffi.new("uint32_t *")
        check(lib.petra_read_batch(
            self._live(), _ptr("uint32_t[]", idx), first, n,
            ffi.from_buffer("uint64_t[]", out.values, require_writable=True),
            ffi.from_buffer("uint8_t[]", out.quality, require_writable=True),
            ffi.from_buffer("int64_t[]", out.source_ts_ns, require_writable=True), busy),
            "batch read")
        out.busy = int(busy[0])
        return out

    def read_batch_f64(self, indices: npt.ArrayLike | None = None, *, first: int = 0,
                       count: int | None = None,
                       values: npt.NDArray[np.float64] | None = None,
                       quality: npt.NDArray[np.uint8] | None = None,
                       ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.uint8], int]:
        """Batch read converted to float64 (bool -> 0/1); returns (values, quality, busy)."""
        idx, n = self._batch_args(indices, first, count)
        values = np.zeros(n, np.float64) if values is None else values
        quality = np.zeros(n, np.uint8) if quality is None else quality
        if len(values) < n or len(quality) < n:
            raise ValueOutOfRangeError(f"output arrays hold fewer than {n} entries")
        busy = ffi.new("uint32_t *")
        check(lib.petra_read_batch_f64(
            self._live(), _ptr("uint32_t[]", idx), first, n,
            ffi.from_buffer("double[]", values, require_writable=True),
            ffi.from_buffer("uint8_t[]", quality, require_writable=True), busy),
            "batch read")
        return values, quality, int(busy[0])

    def write_batch(self, indices: npt.ArrayLike | None, values: npt.ArrayLike,
                    quality: npt.ArrayLike | None = None, *, first: int = 0,
                    source_ts_ns: npt.ArrayLike | None = None) -> int:
        """Write raw 64-bit patterns (see :meth:`encode`) to many slots; returns how many
        were written (a slot held by a stuck writer is skipped)."""
        vals = _as_array(values, np.uint64, "values")
        idx, n = self._batch_args(indices, first, len(vals))
        q = None if quality is None else _as_array(quality, np.uint8, "quality", "iu")
        ts = None if source_ts_ns is None else _as_array(source_ts_ns, np.int64, "source_ts",
                                                               "iu")
        self._check_lengths(n, q, ts)
        self._writable("batch write")
        return check(lib.petra_write_batch(
            self._live(), _ptr("uint32_t[]", idx), first, n, ffi.from_buffer("uint64_t[]", vals),
            _ptr("uint8_t[]", q), _ptr("int64_t[]", ts)), "batch write (bool must be 0/1)")

    def write_batch_f64(self, indices: npt.ArrayLike | None, values: npt.ArrayLike,
                        quality: npt.ArrayLike | None = None, *, first: int = 0) -> int:
        """Write float64 values converted to each slot's type; NaN, inf or out-of-range
        values for int slots are refused before anything is written."""
        vals = _as_array(values, np.float64, "values", convert="iub")
        idx, n = self._batch_args(indices, first, len(vals))
        q = None if quality is None else _as_array(quality, np.uint8, "quality", "iu")
        self._check_lengths(n, q, None)
        self._writable("batch write")
        return check(lib.petra_write_batch_f64(
            self._live(), _ptr("uint32_t[]", idx), first, n, ffi.from_buffer("double[]", vals),
            _ptr("uint8_t[]", q)), "batch write (NaN/inf/out of int64 range for an int slot)")

    def encode(self, key: str | int, value: Value) -> int:
        """The raw 64-bit pattern a slot stores for ``value``."""
        i = self._resolve(key)
        return _encode(self._infos[i].type, value, self._infos[i].name)

    def decode(self, key: str | int, bits: int) -> Value:
        """The Python value of a raw 64-bit pattern for a signal's type."""
        return decode_bits(self._infos[self._resolve(key)].type, bits)

    # ---------------------------------------------------------------- maintenance
    def repair_writer(self, writer_pid: int) -> int:
        """Finish the write sections a dead writer left open (slots go BAD with
        substatus WRITER_DIED); returns how many slots were repaired. Call only for a
        process known to be dead."""
        self._writable("repair")
        return check(lib.petra_repair_writer(self._live(), writer_pid), "repair")

    def set_retry_limit(self, retries: int) -> None:
        """Bound on seqlock retries before a read or write reports busy."""
        lib.petra_set_retry_limit(self._live(), max(1, int(retries)))

    def _debug_begin_write(self, key: str | int) -> None:
        """Test hook: enter a slot's write section and never leave it."""
        check(lib.petra_debug_begin_write(self._live(), self._resolve(key)), "debug write")

    # ---------------------------------------------------------------- internals
    @property
    def handle(self) -> Any:
        """The C handle, for the modules of this package."""
        return self._live()

    def _live(self) -> Any:
        if self._closed:
            raise PetraError(f"segment {self._instance!r} handle is closed")
        return self._h

    def _writable(self, what: str) -> None:
        if self._readonly:
            raise SegmentReadOnlyError(f"{what}: segment {self._instance!r} attached read-only")

    def _set_writer(self, pid: int) -> None:
        if not self._closed:
            lib.petra_set_writer(self._h, pid)

    def _resolve(self, key: str | int) -> int:
        if isinstance(key, str):
            try:
                return self._index[key]
            except KeyError:
                raise UnknownSignalError(self._unknown(key)) from None
        if isinstance(key, int) and not isinstance(key, bool) and 0 <= key < len(self._infos):
            return key
        raise UnknownSignalError(
            f"no signal at index {key!r} in segment {self._instance!r} "
            f"({len(self._infos)} signals)")

    def _unknown(self, name: str) -> str:
        close = difflib.get_close_matches(str(name), self._index, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        return f"no signal named {name!r} in segment {self._instance!r}{hint}"

    def _label(self, index: int) -> str:
        if 0 <= index < len(self._infos):
            return f"signal {self._infos[index].name!r}"
        return f"index {index}"

    def _bad_index(self, index: object) -> NoReturn:
        self._live()
        self._resolve(index)  # type: ignore[arg-type]  # raises the precise error
        raise UnknownSignalError(f"bad signal index {index!r}")

    def _batch_args(self, indices: npt.ArrayLike | None, first: int,
                    count: int | None) -> tuple[npt.NDArray[np.uint32] | None, int]:
        if indices is None:
            n = len(self._infos) - first if count is None else count
            if first < 0 or n < 0 or first + n > len(self._infos):
                raise UnknownSignalError(
                    f"range {first}..{first + n} outside {len(self._infos)} signals")
            return None, n
        if not isinstance(indices, np.ndarray) or indices.dtype != np.uint32:
            ints = np.asarray(indices)
            if ints.size and ints.dtype.kind in "iu" and int(ints.min()) < 0:
                raise UnknownSignalError(f"negative index {int(ints.min())}")
        idx = _as_array(indices, np.uint32, "indices", convert="iu")
        if len(idx) and int(idx.max()) >= len(self._infos):
            raise UnknownSignalError(
                f"index {int(idx.max())} outside {len(self._infos)} signals")
        if count is not None and count != len(idx):
            raise ValueOutOfRangeError(f"{count} values for {len(idx)} indices")
        return idx, len(idx)

    @staticmethod
    def _check_lengths(n: int, q: npt.NDArray[Any] | None, ts: npt.NDArray[Any] | None) -> None:
        for arr, what in ((q, "quality"), (ts, "source_ts")):
            if arr is not None and len(arr) != n:
                raise ValueOutOfRangeError(f"{what} has {len(arr)} entries, expected {n}")
        if q is not None and len(q) and int(q.max()) > int(Quality.GOOD):
            raise ValueOutOfRangeError(f"quality values must be 0..2, got {int(q.max())}")

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)


def _ptr(ctype: str, arr: npt.NDArray[Any] | None) -> Any:
    return ffi.NULL if arr is None else ffi.from_buffer(ctype, arr)


def _limit(x: float) -> float | None:
    """A directory limit as Python sees it: NaN (no limit) becomes None."""
    return None if math.isnan(x) else x


def _format_limit(x: float | None, unbounded: str) -> str:
    return unbounded if x is None else f"{x:g}"


def _initial(sig: SignalDef) -> Value:
    if sig.initial is not None:
        return sig.initial
    return {SignalType.BOOL: False, SignalType.INT: 0, SignalType.FLOAT: 0.0}[sig.type]


def _encode(sig_type: SignalType, value: Value, name: str) -> int:
    v = coerce_value(sig_type, value, name=name)
    if sig_type is SignalType.FLOAT:
        return int(np.array([v], dtype=np.float64).view(np.uint64)[0])
    return int(v) & 0xFFFFFFFFFFFFFFFF


def decode_bits(sig_type: SignalType | int, bits: int) -> Value:
    """The Python value of a slot's raw 64-bit pattern."""
    if sig_type == SignalType.FLOAT:
        return float(np.array([bits], dtype=np.uint64).view(np.float64)[0])
    signed = bits - (1 << 64) if bits >= 1 << 63 else bits
    return signed if sig_type == SignalType.INT else signed == 1


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


__all__ = [
    "BatchRead",
    "Segment",
    "SegmentInfo",
    "SignalInfo",
    "decode_bits",
    "list_instances",
    "segment_name",
    "unlink_instance",
    "validate_signal_name",
]
