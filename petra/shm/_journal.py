"""Consuming the change journal: every write to the table, in batches, with loss counted.

Each consumer has a private cursor (in its own memory, not the segment), so any number
of sinks read the same ring without coordinating and without slowing a producer. A
consumer that falls more than the ring's capacity behind is *lapped*: it jumps to the
oldest entry still held, counts every skipped position in :attr:`lost`, and may call
:meth:`JournalConsumer.resync` to rebuild its view from the slots. An entry whose
producer never published it (dropped on a full lap, or died mid-append) is skipped
after ``stall_timeout_s`` and counted lost too: received + lost always equals the
positions passed. A VOID entry (a producer killed inside it, published by the
supervisor's repair) is counted lost at once.

Resynchronising without a gap: :meth:`JournalConsumer.resync` moves the cursor to the
head and reads every slot. A slot a writer holds at that moment may have its newest
entry below the new cursor, so resync waits for live holders (bounded by the segment's
write wait); a slot still busy after that (its holder is stopped, or dead and not yet
repaired) stays *pending*: :meth:`JournalConsumer.read` keeps trying it and delivers
its value as one more entry of a batch as soon as it can be read. At worst a
duplicate, never a gap.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from petra._core import ffi, lib, now_mono_ns
from petra.errors import ValueOutOfRangeError
from petra.shm._segment import BatchRead, Segment
from petra.types import SignalType

DEFAULT_BATCH = 8192


@dataclass(slots=True)
class JournalBatch:
    """Entries from one :meth:`JournalConsumer.read`. The arrays are views into the
    consumer's buffers and are overwritten by its next read: :meth:`copy` to keep."""

    slot: npt.NDArray[np.uint32]
    value: npt.NDArray[np.uint64]
    type: npt.NDArray[np.uint8]
    quality: npt.NDArray[np.uint8]
    substatus: npt.NDArray[np.uint8]  # written with the value (not read from the slot)
    source_ts_ns: npt.NDArray[np.int64]
    write_ts_ns: npt.NDArray[np.int64]
    writer: npt.NDArray[np.uint32]

    def __len__(self) -> int:
        return len(self.slot)

    def copy(self) -> JournalBatch:
        return JournalBatch(self.slot.copy(), self.value.copy(), self.type.copy(),
                            self.quality.copy(), self.substatus.copy(),
                            self.source_ts_ns.copy(),
                            self.write_ts_ns.copy(), self.writer.copy())

    def values_f64(self) -> npt.NDArray[np.float64]:
        """Values as float64 (bool and int converted), for numeric sinks."""
        as_float = self.value.view(np.float64)
        as_int = self.value.view(np.int64).astype(np.float64)
        return np.where(self.type == int(SignalType.FLOAT), as_float, as_int)

    def decoded(self) -> list[bool | int | float]:
        """Values as Python objects of their signal type (slower; for small batches)."""
        f = self.value.view(np.float64)
        i = self.value.view(np.int64)
        out: list[bool | int | float] = []
        for k, t in enumerate(self.type.tolist()):
            if t == SignalType.FLOAT:
                out.append(float(f[k]))
            elif t == SignalType.INT:
                out.append(int(i[k]))
            else:
                out.append(bool(i[k] == 1))
        return out


class JournalConsumer:
    """A private cursor on a segment's change journal."""

    def __init__(self, segment: Segment, *, from_start: bool = False,
                 batch: int = DEFAULT_BATCH, stall_timeout_s: float = 0.25) -> None:
        if batch < 1:
            raise ValueOutOfRangeError(f"batch must be >= 1, got {batch}")
        self._seg = segment
        self._cur = ffi.new("petra_cursor_t *")
        lib.petra_cursor_init(segment.handle, self._cur, int(from_start),
                              int(stall_timeout_s * 1e9))
        self._batch = batch
        self._slot = np.zeros(batch, np.uint32)
        self._value = np.zeros(batch, np.uint64)
        self._type = np.zeros(batch, np.uint8)
        self._quality = np.zeros(batch, np.uint8)
        self._sub = np.zeros(batch, np.uint8)
        self._sts = np.zeros(batch, np.int64)
        self._wts = np.zeros(batch, np.int64)
        self._writer = np.zeros(batch, np.uint32)
        self._ptrs: tuple[Any, ...] = (
            ffi.from_buffer("uint32_t[]", self._slot),
            ffi.from_buffer("uint64_t[]", self._value),
            ffi.from_buffer("uint8_t[]", self._type),
            ffi.from_buffer("uint8_t[]", self._quality),
            ffi.from_buffer("uint8_t[]", self._sub),
            ffi.from_buffer("int64_t[]", self._sts),
            ffi.from_buffer("int64_t[]", self._wts),
            ffi.from_buffer("uint32_t[]", self._writer),
        )
        self._pending: list[int] = []
        self._sample = ffi.new("petra_sample_t *")

    def read(self, max_entries: int | None = None) -> JournalBatch:
        """Take up to ``max_entries`` (default: the batch size) new entries; never blocks.
        Slots left pending by :meth:`resync` that can now be read come last, as entries
        holding their current value (they are not counted in :attr:`received`)."""
        n_max = self._batch if max_entries is None else min(max_entries, self._batch)
        if n_max < 1:
            raise ValueOutOfRangeError(f"max_entries must be >= 1, got {max_entries}")
        reserve = min(len(self._pending), n_max - 1) if self._pending else 0
        n = int(lib.petra_journal_read_sub(self._seg.handle, self._cur, n_max - reserve,
                                           *self._ptrs))
        if self._pending:
            n += self._deliver_pending(n, n_max - n)
        return JournalBatch(self._slot[:n], self._value[:n], self._type[:n],
                            self._quality[:n], self._sub[:n], self._sts[:n], self._wts[:n],
                            self._writer[:n])

    def _deliver_pending(self, at: int, room: int) -> int:
        """Append pending slots that read now (after the ring entries: their value is at
        least as new as any entry of theirs delivered before it)."""
        got = 0
        still: list[int] = []
        h, sample = self._seg.handle, self._sample
        for k in self._pending:
            if got < room and lib.petra_read(h, k, sample) == 0:
                i = at + got
                self._slot[i], self._value[i], self._type[i] = k, sample.u, sample.type
                self._quality[i], self._sub[i] = sample.quality, sample.substatus
                self._sts[i] = sample.source_ts_ns
                self._wts[i], self._writer[i] = sample.write_ts_ns, sample.writer
                got += 1
            else:
                still.append(k)
        self._pending = still
        return got

    @property
    def pending(self) -> tuple[int, ...]:
        """Slots :meth:`resync` could not read yet; :meth:`read` delivers them."""
        return tuple(self._pending)

    def count_pending(self) -> int:
        """Positions between this cursor and the journal head (the consumer's lag)."""
        return max(0, int(lib.petra_journal_head(self._seg.handle)) - int(self._cur.next))

    def resync(self, wait_s: float | None = None) -> BatchRead:
        """Skip to the head and return a snapshot of every slot.

        The cursor moves first, then the slots are read, so a change that lands in
        between is both in the snapshot and delivered again: at worst a duplicate,
        never a gap. A slot held by a live writer is read again until it comes free
        (up to ``wait_s``, default the segment's write wait of 1 s); one still busy
        after that, or held by a stopped or dead writer, is listed in the snapshot's
        ``busy_indices`` (its entries there are not values) and in :attr:`pending`,
        and :meth:`read` delivers it once it can be read."""
        h = self._seg.handle
        self._cur.next = lib.petra_journal_head(h)
        self._cur.stall_since_ns = 0
        snap = self._seg.read_batch()
        deadline = now_mono_ns() + int((1.0 if wait_s is None else wait_s) * 1e9)
        while snap.busy:
            live = [int(k) for k in snap.busy_indices
                    if lib.petra_holder_state(lib.petra_slot_holder(h, int(k)))
                    == lib.PETRA_HOLDER_ALIVE]
            if not live or now_mono_ns() >= deadline:
                break
            time.sleep(0.0005)
            self._reread(snap)
        self._pending = sorted(set(self._pending) | {int(k) for k in snap.busy_indices})
        return snap

    def _reread(self, snap: BatchRead) -> None:
        """Read the snapshot's busy slots again, filling in those that come free."""
        idx = snap.busy_indices
        part = self._seg.read_batch(idx)
        ok = np.ones(len(idx), bool)
        ok[np.searchsorted(idx, part.busy_indices)] = False
        snap.values[idx[ok]] = part.values[ok]
        snap.quality[idx[ok]] = part.quality[ok]
        snap.source_ts_ns[idx[ok]] = part.source_ts_ns[ok]
        snap.busy_indices = part.busy_indices
        snap.busy = part.busy

    def seek(self, position: int) -> None:
        """Continue from ``position``, a :attr:`position` saved earlier (a sink that
        restarted resumes where its log says it stopped). Entries the ring no longer
        holds are counted lost by the next :meth:`read`, as for a lapped consumer."""
        head = int(lib.petra_journal_head(self._seg.handle))
        if not 0 <= position <= head:
            raise ValueOutOfRangeError(f"journal position {position} is not in 0..{head}")
        self._cur.next = position
        self._cur.stall_since_ns = 0

    @property
    def position(self) -> int:
        return int(self._cur.next)

    @property
    def received(self) -> int:
        return int(self._cur.received)

    @property
    def lost(self) -> int:
        """Positions this consumer skipped: lapped, dropped by a producer, or stalled."""
        return int(self._cur.lost)

    @property
    def overruns(self) -> int:
        """How many times the ring lapped this consumer."""
        return int(self._cur.overruns)
