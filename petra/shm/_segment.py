"""A mapped signal table: create or attach by instance name, read and write signals.

The :class:`Segment` API. Naming and mapping live in ``_mapping.py``, the value codec
and array checks in ``_codec.py``, the records it returns in ``_records.py``.

Handles and fork
----------------
A :class:`Segment` is a private view: its own mapping, its own writer id (the pid)
and its own cached name index. After ``fork`` the child inherits the mapping and may
keep using the handle; the writer id is switched to the child's pid automatically
(``os.register_at_fork``), so lock words and the repair routine can tell the two
apart. Journal consumers are copied with their cursor: each process then reads on its
own. A handle must not be used from two threads at once (it owns scratch buffers);
open one per thread instead.

Consistency
-----------
Every read returns one consistent slot (value, quality and timestamps belong
together). A batch read is consistent per slot, not across slots: the PLC
process-image contract.
"""

from __future__ import annotations

import contextlib
import difflib
import math
import mmap
import os
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any, NoReturn, Self

import numpy as np
import numpy.typing as npt

from petra import _core
from petra._core import check, ffi, lib, raise_for
from petra.errors import (
    PetraError,
    SegmentLayoutError,
    SegmentReadOnlyError,
    SignalNotWritableError,
    SignalTypeError,
    UnknownSignalError,
    ValueOutOfRangeError,
)
from petra.shm._codec import (
    F64,
    F_SAMPLE,
    I64,
    I_SAMPLE,
    NO_INDICES,
    U8,
    U64,
    as_array,
    decode_bits,
    encode,
    format_limit,
    out_ptr,
    ptr,
)
from petra.shm._directory import check_unique, directory_entry
from petra.shm._mapping import (
    create_mapping,
    list_instances,
    map_existing,
    open_handle,
    segment_name,
    unlink_instance,
)
from petra.shm._records import (
    BatchRead,
    BatchWrite,
    LockStats,
    RepairReport,
    SegmentInfo,
    SignalInfo,
)
from petra.shm._table import SignalArrays
from petra.types import (
    QUALITIES,
    SUBSTATUSES,
    Quality,
    Sample,
    SignalDef,
    SignalType,
    Value,
    coerce_value,
    journal_capacity_for,
    validate_instance_name,
    validate_signal_name,
)

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
_live_handles: weakref.WeakSet[Segment] = weakref.WeakSet()
_ALL_WRITTEN: dict[int, BatchWrite] = {}  # shared results with nothing failed, by size
DEFAULT_WAIT_S = 1.0  # as the C core's PETRA_DEFAULT_WAIT_NS

_HOLDER_STATES = {
    int(lib.PETRA_HOLDER_ALIVE): "alive",
    int(lib.PETRA_HOLDER_STOPPED): "stopped",
    int(lib.PETRA_HOLDER_DEAD): "dead, awaiting repair",
}


def _after_fork_in_child() -> None:
    pid = os.getpid()
    for seg in list(_live_handles):
        seg._set_writer(pid)


os.register_at_fork(after_in_child=_after_fork_in_child)


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
        self._buf, self._h = open_handle(instance, mm, size, readonly)
        self._sample = ffi.new("petra_sample_t *")
        self._sbuf = ffi.buffer(self._sample)
        self._rc = ffi.new("int *")
        self._read_wait_s = DEFAULT_WAIT_S  # a busy read waits this long for a live holder
        self._busy_n = ffi.new("uint32_t *")
        self._scratch: npt.NDArray[np.uint32] = np.zeros(0, np.uint32)
        self._scratch_ptr: Any = ffi.NULL
        n = int(lib.petra_n_signals(self._h))
        self._n = n
        # The directory stays in the segment: names resolve through its C index on
        # demand (cached here as they are asked for), entries decode on first use, and
        # the full list of names is built once, only when something iterates it.
        self._index: dict[str, int] = {}
        self._info_cache: dict[int, SignalInfo] = {}
        self._all: tuple[SignalInfo, ...] | None = None
        types = np.zeros(n, np.uint8)
        try:
            if not owner:  # a creator wrote (and C checked) every entry itself
                self._check_directory()
            check(lib.petra_dir_types(self._h, ffi.from_buffer("uint8_t[]", types), n))
        except SegmentLayoutError:
            self._h = None
            ffi.release(self._buf)
            mm.close()
            raise
        self._types = types.tobytes()  # one byte a signal; indexing bytes gives an int
        _live_handles.add(self)

    # ---------------------------------------------------------------- lifecycle
    @classmethod
    def create(
        cls,
        instance: str,
        signals: Sequence[SignalDef] | SignalArrays,
        *,
        journal_capacity: int | None = None,
        heartbeats: int = DEFAULT_HEARTBEATS,
    ) -> Segment:
        """Create and initialise a new segment; fails if the instance already has one.
        ``signals`` is a sequence of :class:`SignalDef` or, the compact form, a
        :class:`SignalArrays`. ``journal_capacity`` (entries, a power of two) defaults
        to :func:`petra.types.journal_capacity_for` the number of signals."""
        validate_instance_name(instance)
        if journal_capacity is None:
            journal_capacity = journal_capacity_for(len(signals))
        if journal_capacity < 2 or journal_capacity & (journal_capacity - 1):
            raise ValueOutOfRangeError(
                f"journal_capacity must be a power of two >= 2, got {journal_capacity}")
        if not 1 <= heartbeats <= 4096:
            raise ValueOutOfRangeError(f"heartbeats must be 1..4096, got {heartbeats}")
        table = signals if isinstance(signals, SignalArrays) else SignalArrays.from_defs(signals)
        mm, size = create_mapping(instance, table, journal_capacity, heartbeats)
        return cls(instance, mm, size, readonly=False, owner=True)

    @classmethod
    def attach(cls, instance: str, *, readonly: bool = False,
               expect_directory_hash: int | None = None) -> Segment:
        """Map an existing instance's segment; values are current at once."""
        mm, size = map_existing(instance, readonly)
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
        return f"<Segment {self._instance!r} {self._n} signals {state}>"

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
        return self._n

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._lookup(name) >= 0

    @property
    def signals(self) -> Sequence[SignalInfo]:
        """Every signal's :class:`SignalInfo`, in slot order (decoded once, on first use)."""
        return self._every_info()

    @property
    def names(self) -> list[str]:
        return [info.name for info in self._every_info()]

    def index(self, name: str) -> int:
        """The slot index of a signal name (cached; raises UnknownSignalError)."""
        i = self._lookup(name) if isinstance(name, str) else -1
        if i < 0:
            raise UnknownSignalError(self._unknown(name))
        return i

    def indices(self, names: Iterable[str]) -> npt.NDArray[np.uint32]:
        return np.fromiter((self.index(n) for n in names), dtype=np.uint32)

    def info_of(self, key: str | int) -> SignalInfo:
        return self._info(self._resolve(key))

    def info(self) -> SegmentInfo:
        out = ffi.new("petra_info_t *")
        check(lib.petra_info(self._live(), out))
        return SegmentInfo(
            instance=ffi.string(out.instance).decode("utf-8", "replace"),
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
        if rc and (rc != _core.EBUSY or not self._wait_for_holder(index)):
            self._fail(rc, index)
        t = self._types[index]
        v, sts, wts, writer, _, q, sub = (F_SAMPLE if t == _FLOAT else I_SAMPLE)(self._sbuf)
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
                return self._get_slow(index, rcp[0])
            return v
        if v == _I64_MIN and rcp[0]:
            return self._get_slow(index, rcp[0])
        return v == 1 if t == _BOOL else v

    def _get_slow(self, index: int, rc: int) -> Value:
        """A failed :meth:`get_index`: a busy slot is read as :meth:`read_index` reads
        it (waiting for a live holder), any other failure raises."""
        if rc == _core.EBUSY:
            return self.read_index(index).value
        self._fail(rc, index)

    def _wait_for_holder(self, index: int) -> bool:
        """After a read found the slot busy: while its holder is alive and running (most
        likely preempted inside its few-instruction write section on a busy box), give
        it the CPU and read again, for up to the write wait (:meth:`set_write_wait`),
        as a write does. True when a read then succeeded (the sample buffer holds it);
        False for a dead or stopped holder, or one still inside at the deadline (the
        caller raises, naming it)."""
        if self._closed or self._read_wait_s <= 0:
            return False
        deadline = time.monotonic() + self._read_wait_s
        rounds = 0
        while True:
            holder = int(lib.petra_slot_holder(self._h, index))
            if holder and int(lib.petra_holder_state(holder)) != int(lib.PETRA_HOLDER_ALIVE):
                return False
            if _read(self._h, index, self._sample) == 0:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0 if rounds < 8 else 0.0002)
            rounds += 1

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
                                     encode(SignalType(t), value, self._name(index)),
                                     quality, substatus, source_ts_ns)
            elif t == _FLOAT:
                if value.__class__ is not float:
                    value = coerce_value(SignalType.FLOAT, value, name=self._name(index))
                rc = _write_f64(self._h, index, value, quality, source_ts_ns)
            else:
                if value.__class__ is not int or t != _INT:
                    value = coerce_value(SignalType(t), value, name=self._name(index))
                rc = _write_i64(self._h, index, value, quality, source_ts_ns)
        except OverflowError:
            if index.__class__ is not int or not 0 <= index < self._n:
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
            self._fail(rc, index)

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
        info = self._info(index)
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
                f"[{format_limit(info.minimum, '-inf')}, {format_limit(info.maximum, 'inf')}]")
        self.write_index(index, v, quality, source_ts_ns)

    # ---------------------------------------------------------------- batches
    def read_batch(self, indices: npt.ArrayLike | None = None, *, first: int = 0,
                   count: int | None = None, out: BatchRead | None = None) -> BatchRead:
        """Read many slots at once (the fast path). ``indices`` or a range
        ``first..first+count``. Busy slots keep the value already in ``out`` (the last
        good value) and are counted in ``busy`` and listed in ``busy_indices``. ``out``
        arrays must be uint64 / uint8 / int64, contiguous, writable and long enough."""
        idx, n = self._batch_args(indices, first, count)
        if out is None:
            out = BatchRead(np.zeros(n, np.uint64), np.zeros(n, np.uint8),
                            np.zeros(n, np.int64), 0)
        pv = out_ptr("uint64_t[]", out.values, U64, n, "out.values")
        pq = out_ptr("uint8_t[]", out.quality, U8, n, "out.quality")
        pts = out_ptr("int64_t[]", out.source_ts_ns, I64, n, "out.source_ts_ns")
        busy, busy_idx = self._busy_buffers(n)
        check(lib.petra_read_batch(self._live(), ptr("uint32_t[]", idx), first, n, pv, pq,
                                   pts, busy, busy_idx), "batch read")
        out.busy = int(busy[0])
        out.busy_indices = self._busy_list(out.busy)
        return out

    def read_batch_f64(self, indices: npt.ArrayLike | None = None, *, first: int = 0,
                       count: int | None = None,
                       values: npt.NDArray[np.float64] | None = None,
                       quality: npt.NDArray[np.uint8] | None = None,
                       ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.uint8], int]:
        """Batch read converted to float64 (bool -> 0/1); returns (values, quality, busy).
        ``values``/``quality``, when given, must be float64/uint8, contiguous, writable
        and long enough."""
        idx, n = self._batch_args(indices, first, count)
        values = np.zeros(n, np.float64) if values is None else values
        quality = np.zeros(n, np.uint8) if quality is None else quality
        pv = out_ptr("double[]", values, F64, n, "values")
        pq = out_ptr("uint8_t[]", quality, U8, n, "quality")
        busy, busy_idx = self._busy_buffers(n)
        check(lib.petra_read_batch_f64(self._live(), ptr("uint32_t[]", idx), first, n, pv, pq,
                                       busy, busy_idx), "batch read")
        return values, quality, int(busy[0])

    def write_batch(self, indices: npt.ArrayLike | None, values: npt.ArrayLike,
                    quality: npt.ArrayLike | None = None, *, first: int = 0,
                    source_ts_ns: npt.ArrayLike | None = None) -> BatchWrite:
        """Write raw 64-bit patterns (see :meth:`encode`) to many slots. Returns a
        :class:`BatchWrite`: the number written (an int) and ``failed``, the slots held
        by a dead or stopped writer. Invalid input (a bool pattern > 1, a quality > 2)
        refuses the whole batch before anything is written."""
        vals = as_array(values, np.uint64, "values")
        idx, n = self._batch_args(indices, first, len(vals))
        q = None if quality is None else as_array(quality, np.uint8, "quality", "iu")
        ts = None if source_ts_ns is None else as_array(source_ts_ns, np.int64, "source_ts",
                                                               "iu")
        self._check_lengths(n, q, ts)
        self._writable("batch write")
        failed = self._failed_buffer(n)
        written = check(lib.petra_write_batch(
            self._live(), ptr("uint32_t[]", idx), first, n, ffi.from_buffer("uint64_t[]", vals),
            ptr("uint8_t[]", q), ptr("int64_t[]", ts), failed),
            "batch write (bool must be 0/1)")
        return self._batch_result(written, n)

    def write_batch_f64(self, indices: npt.ArrayLike | None, values: npt.ArrayLike,
                        quality: npt.ArrayLike | None = None, *,
                        first: int = 0) -> BatchWrite:
        """Write float64 values converted to each slot's type; NaN, inf or out-of-range
        values for int slots are refused before anything is written. Returns a
        :class:`BatchWrite` as :meth:`write_batch` does."""
        vals = as_array(values, np.float64, "values", convert="iub")
        idx, n = self._batch_args(indices, first, len(vals))
        q = None if quality is None else as_array(quality, np.uint8, "quality", "iu")
        self._check_lengths(n, q, None)
        self._writable("batch write")
        failed = self._failed_buffer(n)
        written = check(lib.petra_write_batch_f64(
            self._live(), ptr("uint32_t[]", idx), first, n, ffi.from_buffer("double[]", vals),
            ptr("uint8_t[]", q), failed),
            "batch write (NaN/inf/out of int64 range for an int slot)")
        return self._batch_result(written, n)

    def encode(self, key: str | int, value: Value) -> int:
        """The raw 64-bit pattern a slot stores for ``value``."""
        i = self._resolve(key)
        return encode(SignalType(self._types[i]), value, self._name(i))

    def decode(self, key: str | int, bits: int) -> Value:
        """The Python value of a raw 64-bit pattern for a signal's type."""
        return decode_bits(self._types[self._resolve(key)], bits)

    # ---------------------------------------------------------------- maintenance
    def repair_dead(self, pid: int) -> RepairReport:
        """Finish everything a dead process was inside of: slots (those it died inside
        go BAD with substatus WRITER_DIED, journalled), journal entries (published as
        VOID, which consumers count lost at once), the stats block, and its heartbeat
        records (a half-claimed one included). Every such object's lock word names
        its holder, so nothing is missed. Call only for a process known to be dead:
        the supervisor calls it for every child it reaps."""
        self._writable("repair")
        if isinstance(pid, bool) or not isinstance(pid, int) or not 0 < pid < 2**31:
            raise ValueOutOfRangeError(f"repair: {pid!r} is not a pid")
        out = ffi.new("petra_repair_t *")
        check(lib.petra_repair_dead(self._live(), pid, out), "repair")
        return RepairReport(slots=int(out.slots), slots_torn=int(out.slots_torn),
                            entries=int(out.entries), stats=int(out.stats),
                            heartbeats=int(out.heartbeats))

    def repair_writer(self, writer_pid: int) -> int:
        """:meth:`repair_dead` under its older name; returns how many slots it freed."""
        return self.repair_dead(writer_pid).slots

    def slot_holder(self, key: str | int) -> int:
        """The pid whose lock word holds a slot right now, 0 when free (a snapshot)."""
        return int(lib.petra_slot_holder(self._live(), self._resolve(key)))

    def set_retry_limit(self, retries: int) -> None:
        """Bound on seqlock retries before a read reports busy (and on a writer's spin
        before it looks at the holder)."""
        lib.petra_set_retry_limit(self._live(), max(1, int(retries)))

    def set_write_wait(self, seconds: float) -> None:
        """How long a write waits for a slot held by another live, running writer
        (default 1 s). A dead or stopped holder is never waited for; 0 never waits."""
        if not seconds >= 0:
            raise ValueOutOfRangeError(f"write wait must be >= 0 s, got {seconds!r}")
        lib.petra_set_wait(self._live(), int(seconds * 1e9))
        self._read_wait_s = float(seconds)

    def lock_stats(self) -> LockStats:
        """Why this handle's writes gave up since it was opened (see :class:`LockStats`)."""
        out = ffi.new("petra_lock_stats_t *")
        lib.petra_lock_stats(self._live(), out)
        return LockStats(waits=int(out.waits), busy_dead=int(out.busy_dead),
                         busy_stopped=int(out.busy_stopped), busy_live=int(out.busy_live),
                         busy_nowait=int(out.busy_nowait))

    def _debug_begin_write(self, key: str | int) -> None:
        """Test hook: enter a slot's write section and never leave it."""
        check(lib.petra_debug_begin_write(self._live(), self._resolve(key)), "debug write")

    def _debug_stage(self, kind: int, stage: int, key: str | int = 0) -> int:
        """Test hook: stop half-way inside an object (``lib.PETRA_DBG_*``) at a stage
        (``lib.PETRA_STAGE_*``), holding its lock word. Returns the C result (the
        heartbeat record index for PETRA_DBG_HB)."""
        index = self._resolve(key) if kind == lib.PETRA_DBG_SLOT else 0
        return check(lib.petra_debug_stage(self._live(), kind, index, stage), "debug stage")

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
            i = self._index.get(key)  # inlined cache hit: by-name calls stay one dict get
            if i is None:
                i = self._lookup(key)
                if i < 0:
                    raise UnknownSignalError(self._unknown(key))
            return i
        if isinstance(key, int) and not isinstance(key, bool) and 0 <= key < self._n:
            return key
        raise UnknownSignalError(
            f"no signal at index {key!r} in segment {self._instance!r} "
            f"({self._n} signals)")

    def _lookup(self, name: str) -> int:
        """A name's slot index, or -1: the per-process cache, then the segment's own
        index (C). Only names that exist are cached, so the cache is bounded by the
        directory however many unknown names are asked for."""
        i = self._index.get(name)
        if i is not None:
            return i
        if self._all is not None or self._closed:
            return -1  # the cache is complete (or the handle is gone)
        raw = name.encode("utf-8", "surrogatepass")
        found = int(lib.petra_dir_lookup(self._h, raw, len(raw))) if raw else -1
        if found >= 0:
            self._index[name] = found
        return found

    def _info(self, index: int) -> SignalInfo:
        """Entry ``index`` of the directory, decoded (and checked) once per process."""
        if self._all is not None:
            return self._all[index]
        info = self._info_cache.get(index)
        if info is None:
            info = self._decode(index)
            self._info_cache[index] = info
        return info

    def _decode(self, index: int) -> SignalInfo:
        entry = ffi.new("petra_sigdef_t *")
        check(lib.petra_dir_get(self._live(), index, entry))
        name, typ, unit, who, lo, hi = directory_entry(
            self._instance, index, name=ffi.string(entry.name), type_code=int(entry.type),
            unit=ffi.string(entry.unit), owner=ffi.string(entry.owner),
            minimum=float(entry.min), maximum=float(entry.max))
        return SignalInfo(index=index, name=name, type=typ, unit=unit, owner=who,
                          flags=int(entry.flags), minimum=lo, maximum=hi)

    def _name(self, index: int) -> str:
        return self._info(index).name

    def _every_info(self) -> tuple[SignalInfo, ...]:
        """All entries, decoded once per process when something asks for all of them;
        the name cache is then complete and lookups no longer go to C."""
        if self._all is None:
            cache = self._info_cache
            infos = tuple(cache.get(i) or self._decode(i) for i in range(self._n))
            self._index = {info.name: info.index for info in infos}
            self._info_cache = {}
            self._all = infos
        return self._all

    def _check_directory(self) -> None:
        """Check every directory entry and the name index before the handle is used.

        C checks what it can (the index, ASCII names against the name rule, units,
        owners, type codes, limits) at a few ns an entry; an entry it cannot judge
        alone (non-ASCII text) or finds bad is decoded here, which raises the precise
        :class:`SegmentLayoutError`. If the index disagrees with the directory, every
        entry is decoded and the names compared in Python, so the error names the
        first bad entry, or the two entries sharing a name, as it always did."""
        kind = ffi.new("int *")
        start = 0
        while True:
            at = int(lib.petra_dir_check(self._h, start, kind))
            if at >= self._n and kind[0] == 0:
                return
            if kind[0] == lib.PETRA_DIRCHK_LOOK:
                self._decode(at)  # raises for a bad entry; a valid non-ASCII one passes
                start = at + 1
                continue
            names = [self._decode(i).name for i in range(self._n)]
            check_unique(self._instance, names)
            name = names[at] if at < len(names) else ""
            raise SegmentLayoutError(
                f"segment {self._instance!r}: directory entry {at} ({name!r}) does not "
                "match the segment's name index; the segment was damaged or not written "
                "by Petra (restart the plant to make a new one)")

    def _unknown(self, name: object) -> str:
        if not isinstance(name, str):
            return f"a signal name is a str, got {type(name).__name__} {name!r}"
        # Suggestions compare against every name: an error path, so the full list is
        # fine, but not at any size (1M names take seconds).
        pool = [info.name for info in self._every_info()] if self._n <= 200_000 else []
        close = difflib.get_close_matches(name, pool, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        return f"no signal named {name!r} in segment {self._instance!r}{hint}"

    def _label(self, index: int) -> str:
        if 0 <= index < self._n:
            return f"signal {self._name(index)!r}"
        return f"index {index}"

    def _fail(self, rc: int, index: int) -> NoReturn:
        """Raise for a failed single read or write; a busy slot names its holder (the
        lock word says who) and what state that process is in."""
        what = self._label(index)
        if rc == _core.EBUSY and not self._closed:
            holder = int(lib.petra_slot_holder(self._h, index))
            if holder:
                state = _HOLDER_STATES.get(int(lib.petra_holder_state(holder)), "?")
                what += f" (held by pid {holder}, {state})"
        raise_for(rc, what)

    def _bad_index(self, index: object) -> NoReturn:
        self._live()
        self._resolve(index)  # type: ignore[arg-type]  # raises the precise error
        raise UnknownSignalError(f"bad signal index {index!r}")

    def _batch_args(self, indices: npt.ArrayLike | None, first: int,
                    count: int | None) -> tuple[npt.NDArray[np.uint32] | None, int]:
        if first.__class__ is not int or not (count is None or count.__class__ is int):
            for what, v in (("first", first), ("count", count)):
                if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
                    raise SignalTypeError(f"{what} must be an int, got {type(v).__name__}")
        if indices is None:
            n = self._n - first if count is None else count
            if first < 0 or n < 0 or first + n > self._n:
                raise UnknownSignalError(
                    f"range {first}..{first + n} outside {self._n} signals")
            return None, n
        if not isinstance(indices, np.ndarray) or indices.dtype != np.uint32:
            ints = np.asarray(indices)
            if ints.size and ints.dtype.kind in "iu" and int(ints.min()) < 0:
                raise UnknownSignalError(f"negative index {int(ints.min())}")
        idx = as_array(indices, np.uint32, "indices", convert="iu")
        if len(idx) and int(idx.max()) >= self._n:
            raise UnknownSignalError(
                f"index {int(idx.max())} outside {self._n} signals")
        if count is not None and count != len(idx):
            raise ValueOutOfRangeError(f"{count} values for {len(idx)} indices")
        return idx, len(idx)

    def _busy_buffers(self, n: int) -> tuple[Any, Any]:
        """The busy counter and a scratch list of busy slot indices (per handle)."""
        if len(self._scratch) < n:
            self._scratch = np.zeros(n, np.uint32)
            self._scratch_ptr = ffi.from_buffer("uint32_t[]", self._scratch)
        return self._busy_n, self._scratch_ptr

    def _busy_list(self, busy: int) -> npt.NDArray[np.uint32]:
        return self._scratch[:busy].copy() if busy else NO_INDICES

    def _failed_buffer(self, n: int) -> Any:
        return self._busy_buffers(n)[1]

    def _batch_result(self, written: int, n: int) -> BatchWrite:
        if written == n:  # the common case: one shared result per size, failed empty
            ok = _ALL_WRITTEN.get(n)
            if ok is None:
                ok = BatchWrite(n, NO_INDICES)
                if len(_ALL_WRITTEN) < 1024:
                    _ALL_WRITTEN[n] = ok
            return ok
        return BatchWrite(written, self._busy_list(n - written))

    @staticmethod
    def _check_lengths(n: int, q: npt.NDArray[Any] | None, ts: npt.NDArray[Any] | None) -> None:
        for arr, what in ((q, "quality"), (ts, "source_ts")):
            if arr is not None and len(arr) != n:
                raise ValueOutOfRangeError(f"{what} has {len(arr)} entries, expected {n}")
        if q is not None and len(q) and int(q.max()) > int(Quality.GOOD):
            raise ValueOutOfRangeError(f"quality values must be 0..2, got {int(q.max())}")

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)


__all__ = [
    "BatchRead",
    "BatchWrite",
    "LockStats",
    "RepairReport",
    "Segment",
    "SegmentInfo",
    "SignalInfo",
    "decode_bits",
    "list_instances",
    "segment_name",
    "unlink_instance",
    "validate_signal_name",
]
