"""Self-checking values for the multi-process stress tests.

Every value a stress writer stores carries its own checksum: the value encodes
``(writer id << 40) | counter`` and the source timestamp and quality written with it
are a hash of the value's 64 bits and the slot index. A reader that copies value, quality
and timestamp from two different writes (a torn read) sees a checksum that does not
match. Journal entries carry the same fields, and the counter in the value lets a
consumer check that each producer's entries arrive in the order it wrote them.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from petra.shm import JournalBatch

M1 = 0x9E3779B97F4A7C15
M2 = 0xC2B2AE3D27D4EB4F
MASK64 = (1 << 64) - 1
TS_MASK = (1 << 62) - 1
COUNTER_BITS = 40
COUNTER_MASK = (1 << COUNTER_BITS) - 1


def soak_seconds(default: float) -> float:
    """Run time of a stress phase: ``PETRA_SOAK_SECONDS`` when set, else ``default``."""
    raw = os.environ.get("PETRA_SOAK_SECONDS", "")
    return float(raw) if raw else default


def checksum(bits: int, slot: int) -> int:
    """The source timestamp a value must carry in ``slot`` (non-zero, fits int64)."""
    h = (bits * M1) & MASK64
    h ^= (slot * M2) & MASK64
    h ^= h >> 29
    return (h & TS_MASK) | 1


def checksum_np(bits: npt.NDArray[np.uint64], slots: npt.NDArray[np.integer]) -> npt.NDArray[
        np.int64]:
    """:func:`checksum` over arrays (uint64 arithmetic wraps like ``& MASK64``)."""
    with np.errstate(over="ignore"):
        h = bits * np.uint64(M1)
        h ^= slots.astype(np.uint64) * np.uint64(M2)
    h ^= h >> np.uint64(29)
    return ((h & np.uint64(TS_MASK)) | np.uint64(1)).astype(np.int64)


def quality_of(ts: int) -> int:
    return ts % 3


def float_bits(x: float) -> int:
    bits: int = struct.unpack("<Q", struct.pack("<d", x))[0]
    return bits


def raw_value(writer_id: int, counter: int) -> int:
    return (writer_id << COUNTER_BITS) | counter


@dataclass
class JournalCheck:
    """Checks a consumer's entries: checksums, and per-producer order by writer pid."""

    last: dict[int, int] = field(default_factory=dict)
    seen: int = 0
    bad_checksum: int = 0
    out_of_order: int = 0

    def feed(self, batch: JournalBatch) -> None:
        slot, value, source_ts = batch.slot, batch.value, batch.source_ts_ns
        quality, writer, type_ = batch.quality, batch.writer, batch.type
        if len(slot) == 0:
            return
        self.seen += len(slot)
        ok = (checksum_np(value, slot) == source_ts) & (source_ts % 3 == quality)
        self.bad_checksum += int((~ok).sum())
        # Counter: the int value itself, or the float's integral value.
        ints = np.where(type_ == 3, value.view(np.float64).astype(np.int64),
                        value.view(np.int64))
        counters = ints & COUNTER_MASK
        for pid in np.unique(writer).tolist():
            c = counters[writer == pid]
            prev = self.last.get(pid, -1)
            seq = np.concatenate(([prev], c))
            self.out_of_order += int((np.diff(seq) <= 0).sum())
            self.last[pid] = int(c[-1])


# --------------------------------------------------------------------------- kill campaign
# The kill campaign's writers (tests/stress/kill_campaign.py, csrc/debug.c) keep quality
# away from BAD (1 + (ts & 1)), so a BAD sample or entry is one a repair wrote: its
# fields may not belong together by design, and it is exempt from the checksum.
WID_SHIFT = COUNTER_BITS


def kc_quality_np(ts: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    return 1 + (ts & 1)


def kc_quality(ts: int) -> int:
    return 1 + (ts & 1)


def value_ints(value: npt.NDArray[np.uint64], type_: npt.NDArray[np.uint8]) -> npt.NDArray[
        np.int64]:
    """The raw ``writer id << 40 | counter`` a value carries (floats hold it exactly)."""
    return np.where(type_ == 3, value.view(np.float64).astype(np.int64), value.view(np.int64))


@dataclass
class KillJournalCheck:
    """A consumer's entries in the kill campaign: every non-repair entry carries a valid
    checksum, and each writer's counters (by the writer id inside the value, since pids
    are reused over thousands of forks) only go up."""

    last: dict[int, int] = field(default_factory=dict)
    seen: int = 0
    repairs: int = 0
    bad_checksum: int = 0
    out_of_order: int = 0

    def feed(self, batch: JournalBatch) -> None:
        slot, value, ts, quality = batch.slot, batch.value, batch.source_ts_ns, batch.quality
        if len(slot) == 0:
            return
        self.seen += len(slot)
        repaired = quality == 0
        self.repairs += int(repaired.sum())
        ok = (checksum_np(value, slot) == ts) & (kc_quality_np(ts) == quality)
        self.bad_checksum += int((~(ok | repaired)).sum())
        ints = value_ints(value, batch.type)[~repaired]
        wids, counters = ints >> WID_SHIFT, ints & COUNTER_MASK
        for wid in np.unique(wids).tolist():
            c = counters[wids == wid]
            seq = np.concatenate(([self.last.get(wid, -1)], c))
            self.out_of_order += int((np.diff(seq) <= 0).sum())
            self.last[wid] = int(c[-1])
