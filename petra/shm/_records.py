"""What the segment API hands back: directory entries, header snapshots, batch results,
repair reports and lock statistics. Plain values, no C."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from petra.shm._codec import NO_INDICES
from petra.types import FLAG_NONFINITE, FLAG_WRITABLE, SignalType


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
    :meth:`Segment.decode` or use :meth:`Segment.read_batch_f64` for floats.
    ``busy_indices`` lists the slot indices counted in ``busy`` (their entries in the
    arrays were left as they were)."""

    values: npt.NDArray[np.uint64]
    quality: npt.NDArray[np.uint8]
    source_ts_ns: npt.NDArray[np.int64]
    busy: int
    busy_indices: npt.NDArray[np.uint32] = field(default_factory=lambda: NO_INDICES)


class BatchWrite(int):
    """The result of a batch write: an ``int``, the number of slots written (so
    ``seg.write_batch(...) == n`` reads as before), with ``failed``: the slot indices
    that were not written, because their lock was held by a dead or stopped writer
    (or a live one past the wait budget; see :meth:`Segment.lock_stats`)."""

    _failed: npt.NDArray[np.uint32]

    def __new__(cls, written: int, failed: npt.NDArray[np.uint32]) -> BatchWrite:
        self = super().__new__(cls, written)
        self._failed = failed
        return self

    @property
    def failed(self) -> npt.NDArray[np.uint32]:
        return self._failed

    @property
    def written(self) -> int:
        return int(self)


@dataclass(frozen=True, slots=True)
class RepairReport:
    """What :meth:`Segment.repair_dead` found a dead writer holding and finished."""

    slots: int  # slot locks freed
    slots_torn: int  # of those, slots it died inside: now BAD/WRITER_DIED, journalled
    entries: int  # journal entries freed (ones it died inside published as VOID: lost)
    stats: int  # 1 when it held the stats block
    heartbeats: int  # heartbeat records freed (CLAIMING ones included)

    @property
    def total(self) -> int:
        return self.slots + self.entries + self.stats + self.heartbeats


@dataclass(frozen=True, slots=True)
class LockStats:
    """Why this handle's writes gave up (each a :class:`~petra.errors.SignalBusyError`
    or a slot in :attr:`BatchWrite.failed`), and how often a write had to wait for a
    live holder. ``busy_live`` is the one that should stay 0: a live, running holder
    outlasting the wait budget."""

    waits: int
    busy_dead: int
    busy_stopped: int
    busy_live: int
    busy_nowait: int


__all__ = ["BatchRead", "BatchWrite", "LockStats", "RepairReport", "SegmentInfo", "SignalInfo"]
