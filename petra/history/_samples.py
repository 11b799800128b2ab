"""Samples as columns, and the signal table they refer to.

A sample is one recorded value of one signal: which signal (an index into a
:class:`SignalTable`), the raw 64-bit value (bool, int64 or float64 bits, as the
segment holds it), quality, substatus, the time it describes (``ts``: the source
timestamp of a change, or the sampling instant of a periodic or heartbeat sample) and
the time it was written into the segment (``wts``). Every stage (recorder, WAL,
destinations) passes them as numpy columns, never one Python object per sample: that is
what makes a million samples a second possible in Python.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from petra.types import SignalType


@dataclass(frozen=True, slots=True)
class SignalTable:
    """Names and types of the signals samples refer to, and where they came from.

    ``segment_created_ns`` identifies the shared segment the samples were read from: a
    journal position saved in the WAL means something only for that segment."""

    names: tuple[str, ...]
    types: tuple[int, ...]
    instance: str = ""
    segment_created_ns: int = 0

    def to_json(self) -> bytes:
        return json.dumps({"instance": self.instance,
                           "segment_created_ns": self.segment_created_ns,
                           "signals": [[n, t] for n, t in zip(self.names, self.types,
                                                              strict=True)]},
                          separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> SignalTable:
        doc = json.loads(raw)
        sigs = doc["signals"]
        return cls(tuple(str(s[0]) for s in sigs), tuple(int(s[1]) for s in sigs),
                   str(doc.get("instance", "")), int(doc.get("segment_created_ns", 0)))

    def same_signals(self, other: SignalTable) -> bool:
        return self.names == other.names and self.types == other.types

    def type_array(self) -> npt.NDArray[np.uint8]:
        return np.asarray(self.types, np.uint8)


@dataclass(slots=True)
class Samples:
    """Columns of samples (equal lengths)."""

    sig: npt.NDArray[np.uint32]
    value: npt.NDArray[np.uint64]
    quality: npt.NDArray[np.uint8]
    substatus: npt.NDArray[np.uint8]
    ts: npt.NDArray[np.int64]
    wts: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.sig)

    @classmethod
    def empty(cls) -> Samples:
        return cls(np.zeros(0, np.uint32), np.zeros(0, np.uint64), np.zeros(0, np.uint8),
                   np.zeros(0, np.uint8), np.zeros(0, np.int64), np.zeros(0, np.int64))

    @classmethod
    def concat(cls, parts: Sequence[Samples]) -> Samples:
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        return cls(np.concatenate([p.sig for p in parts]),
                   np.concatenate([p.value for p in parts]),
                   np.concatenate([p.quality for p in parts]),
                   np.concatenate([p.substatus for p in parts]),
                   np.concatenate([p.ts for p in parts]),
                   np.concatenate([p.wts for p in parts]))

    def take(self, idx: npt.NDArray[np.intp] | npt.NDArray[np.bool_] | slice) -> Samples:
        return Samples(self.sig[idx], self.value[idx], self.quality[idx], self.substatus[idx],
                       self.ts[idx], self.wts[idx])

    def copy(self) -> Samples:
        return Samples(self.sig.copy(), self.value.copy(), self.quality.copy(),
                       self.substatus.copy(), self.ts.copy(), self.wts.copy())

    def values_f64(self, types: npt.NDArray[np.uint8]) -> npt.NDArray[np.float64]:
        """Every value as float64 (bool and int converted), given the table's types."""
        t = types[self.sig]
        return np.where(t == int(SignalType.FLOAT), self.value.view(np.float64),
                        self.value.view(np.int64).astype(np.float64))
