"""Decoding the segment's directory, which may hold anything.

The directory is shared memory that every process of the ``petra`` group can write: a
buggy writer, a stray ``dd`` or a hostile user can leave bytes in it that are no name.
The C side checks the header and the region table on attach (so no pointer leaves the
mapping); the entries themselves are checked here, once, when a handle is made. An
entry that is not what :meth:`Segment.create` writes makes attaching fail with a
:class:`~petra.errors.SegmentLayoutError` naming the segment and the entry, so tools
(``petra-top``, ``petra segment info``) print one clear line instead of a
``UnicodeDecodeError`` from deep inside, and no tool works on a table it misreads.

An entry must have: a name that is UTF-8 and passes the signal name rule; a known type
code; a unit and an owner that are UTF-8 within their sizes and hold no control
characters (they are printed on terminals); limits that are NaN (none) or finite with
``min <= max``. Names must be unique (a second entry of one name would silently hide
the first from lookups by name).
"""

from __future__ import annotations

import math
import unicodedata

from petra.errors import InvalidNameError, SegmentLayoutError
from petra.types import (
    OWNER_MAX_BYTES,
    UNIT_MAX_BYTES,
    SignalType,
    validate_signal_name,
)


def _text(what: str, raw: bytes, limit: int) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"its {what} is not UTF-8 ({raw[:24]!r}: {exc.reason} at byte "
                         f"{exc.start})") from None
    if len(raw) > limit:
        raise ValueError(f"its {what} is longer than {limit} bytes")
    if any(unicodedata.category(c) == "Cc" for c in text):
        raise ValueError(f"its {what} {text!r} holds control characters")
    return text


def _limit(what: str, x: float) -> float | None:
    if math.isnan(x):
        return None
    if not math.isfinite(x):
        raise ValueError(f"its {what} limit is {x}")
    return x


def directory_entry(instance: str, index: int, *, name: bytes, type_code: int, unit: bytes,
                    owner: bytes, minimum: float, maximum: float
                    ) -> tuple[str, SignalType, str, str, float | None, float | None]:
    """One entry's fields, decoded and checked: (name, type, unit, owner, min, max).

    Raises :class:`SegmentLayoutError` naming the segment and the entry.
    """
    try:
        try:
            text = name.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"its name is not UTF-8 ({name[:24]!r}: {exc.reason} at byte "
                             f"{exc.start})") from None
        try:
            validate_signal_name(text)
        except InvalidNameError as exc:
            raise ValueError(str(exc)) from None
        try:
            sig_type = SignalType(type_code)
        except ValueError:
            known = ", ".join(f"{t.value} ({t.name.lower()})" for t in SignalType)
            raise ValueError(f"its type code {type_code} is none of {known}") from None
        lo, hi = _limit("min", minimum), _limit("max", maximum)
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"its min {lo:g} is above its max {hi:g}")
        return (text, sig_type, _text("unit", unit, UNIT_MAX_BYTES),
                _text("owner", owner, OWNER_MAX_BYTES), lo, hi)
    except ValueError as exc:
        raise SegmentLayoutError(
            f"segment {instance!r}: directory entry {index} is corrupt: {exc}; the segment "
            "was damaged or not written by Petra (restart the plant to make a new one)"
        ) from None


def check_unique(instance: str, names: list[str]) -> None:
    """Raise :class:`SegmentLayoutError` when two entries carry one name."""
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            raise SegmentLayoutError(
                f"segment {instance!r}: directory entries {seen[name]} and {i} both name "
                f"{name!r}; the segment was damaged or not written by Petra")
        seen[name] = i
