"""A plant's signals as compact arrays: what the C core lays a segment out from.

Creating a segment from one C struct per signal cost ~17 us a signal, nearly all of
it Python filling cffi fields one by one. :class:`SignalArrays` holds the same
information column by column instead: the names, units and owners as three byte
blobs of NUL-terminated strings, the rest as numpy arrays. Packing a list of
:class:`~petra.types.SignalDef` into it is one C-level pass per field; the C
core (``petra_init_table``) then writes the directory, the name index and the slots
in one pass.

A table can also be built straight from arrays (:meth:`SignalArrays.from_arrays`), the
form a compact plant hand-over carries; it is checked there (names against the name
rule, units and owners against their sizes, limits), since no ``SignalDef`` did.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

import numpy as np
import numpy.typing as npt

from petra.errors import PetraError, SignalTypeError, ValueOutOfRangeError
from petra.shm._codec import encode
from petra.types import (
    FLAG_NONFINITE,
    FLAG_WRITABLE,
    OWNER_MAX_BYTES,
    UNIT_MAX_BYTES,
    Quality,
    SignalDef,
    SignalType,
    validate_signal_name,
)

_DEFAULT_QUALITY = int(Quality.UNCERTAIN)


def _blob(texts: Sequence[str]) -> bytes:
    """n strings as one blob, each NUL terminated."""
    return ("\0".join(texts) + "\0").encode("utf-8") if texts else b""


def _limits(values: list[float | None]) -> npt.NDArray[np.float64]:
    """A limit column: NaN where a signal has none (None)."""
    if values.count(None) == len(values):
        return np.full(len(values), math.nan)
    return np.array([math.nan if v is None else v for v in values], np.float64)


@dataclass(frozen=True, eq=False)
class SignalArrays:
    """Every signal of a segment, column by column (entry i of each is signal i)."""

    names: bytes                      # NUL-terminated UTF-8 names, back to back
    units: bytes                      # likewise, "" for none
    owners: bytes                     # likewise
    types: npt.NDArray[np.uint8]      # SignalType codes
    flags: npt.NDArray[np.uint32]     # FLAG_* bits
    initial: npt.NDArray[np.uint64]   # raw value bits (see Segment.encode)
    initial_quality: npt.NDArray[np.uint8]
    minimum: npt.NDArray[np.float64]  # NaN: no lower limit
    maximum: npt.NDArray[np.float64]  # NaN: no upper limit

    def __len__(self) -> int:
        return len(self.types)

    def name_list(self) -> list[str]:
        """The names as a list (for messages; not on any fast path)."""
        return self.names.decode("utf-8").split("\0")[: len(self)]

    @classmethod
    def from_defs(cls, signals: Sequence[SignalDef]) -> SignalArrays:
        """Pack :class:`SignalDef` records (already checked by their constructor).

        One C-level pass per field (``map`` of an ``attrgetter``), no Python frame per
        record: a generator per column cost ~0.7 s at 1M signals, most of creating the
        segment; this takes ~0.5 s. Enum and bool fields go through ``bytes`` (they
        are ints), and a column that holds its default everywhere (no initial value,
        no limit) is filled without converting a million ``None``."""
        n = len(signals)

        def column(field: str) -> list[Any]:
            return list(map(attrgetter(field), signals))

        def small(field: str) -> npt.NDArray[np.uint8]:
            return np.frombuffer(bytes(map(attrgetter(field), signals)), np.uint8)

        flags = small("writable").astype(np.uint32) * np.uint32(FLAG_WRITABLE)
        flags |= small("allow_nonfinite").astype(np.uint32) * np.uint32(FLAG_NONFINITE)
        initial = np.zeros(n, np.uint64)  # 0 bits: False, 0 and 0.0, the defaults
        inits = column("initial")
        if inits.count(None) != n:
            for i, value in enumerate(inits):
                if value is not None:
                    initial[i] = encode(signals[i].type, value, signals[i].name)
        return cls(
            names=_blob(column("name")),
            units=_blob(column("unit")),
            owners=_blob(column("owner")),
            types=small("type").copy(),  # frombuffer of bytes is read-only
            flags=flags,
            initial=initial,
            initial_quality=small("initial_quality").copy(),
            minimum=_limits(column("minimum")),
            maximum=_limits(column("maximum")),
        )

    @classmethod
    def from_arrays(
        cls,
        names: Sequence[str],
        types: npt.ArrayLike,
        *,
        units: Sequence[str] | None = None,
        owners: Sequence[str] | None = None,
        flags: npt.ArrayLike | None = None,
        initial: npt.ArrayLike | None = None,
        initial_quality: npt.ArrayLike | None = None,
        minimum: npt.ArrayLike | None = None,
        maximum: npt.ArrayLike | None = None,
    ) -> SignalArrays:
        """Build a table from columns, checking what a :class:`SignalDef` would.
        ``initial`` holds raw value bits (uint64); missing columns take the
        :class:`SignalDef` defaults."""
        n = len(names)
        for name in names:
            validate_signal_name(name)
        units = [""] * n if units is None else list(units)
        owners = [""] * n if owners is None else list(owners)
        for what, texts, limit in (("units", units, UNIT_MAX_BYTES),
                                   ("owners", owners, OWNER_MAX_BYTES)):
            if len(texts) != n:
                raise ValueOutOfRangeError(f"{len(texts)} {what} for {n} names")
            for text in texts:
                if "\0" in text or len(text.encode("utf-8")) > limit:
                    raise ValueOutOfRangeError(f"{what[:-1]} {text!r} is longer than {limit} "
                                               "bytes in UTF-8 or holds a NUL")

        def column(v: npt.ArrayLike | None, dtype: type, fill: float, what: str
                   ) -> npt.NDArray[Any]:
            arr: npt.NDArray[Any] = (np.full(n, fill, dtype) if v is None
                                     else np.ascontiguousarray(v, dtype))
            if arr.shape != (n,):
                raise ValueOutOfRangeError(f"{what} has shape {arr.shape}, expected ({n},)")
            return arr

        t = column(types, np.uint8, 0, "types")
        codes = {int(s) for s in SignalType}
        if n and not np.isin(t, list(codes)).all():
            raise SignalTypeError(f"types must be {sorted(codes)}")
        lo = column(minimum, np.float64, math.nan, "minimum")
        hi = column(maximum, np.float64, math.nan, "maximum")
        if np.isinf(lo).any() or np.isinf(hi).any() or (lo > hi).any():
            raise ValueOutOfRangeError("limits must be finite (or NaN: none) with min <= max")
        q = column(initial_quality, np.uint8, _DEFAULT_QUALITY, "initial_quality")
        if n and int(q.max()) > int(Quality.GOOD):
            raise ValueOutOfRangeError("initial_quality values must be 0..2")
        return cls(names=_blob(list(names)), units=_blob(units), owners=_blob(owners),
                   types=t, flags=column(flags, np.uint32, 0, "flags"),
                   initial=column(initial, np.uint64, 0, "initial"),
                   initial_quality=q, minimum=lo, maximum=hi)

    def duplicate_of(self, index: int) -> str | None:
        """The message for a name at ``index`` that an earlier entry already has."""
        names = self.name_list()
        if not 0 <= index < len(names):
            return None
        first = names.index(names[index])
        if first == index:
            return None
        return f"signal {names[index]!r} is defined twice (entries {first} and {index})"


def check_table(table: SignalArrays) -> None:
    """Raise unless every column holds ``len(table)`` entries."""
    n = len(table)
    for what in ("flags", "initial", "initial_quality", "minimum", "maximum"):
        arr = getattr(table, what)
        if len(arr) != n:
            raise PetraError(f"signal table column {what} has {len(arr)} entries, expected {n}")


__all__ = ["SignalArrays", "check_table"]
