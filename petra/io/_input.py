"""Bounded parsing of what arrives from outside: numbers and JSON with hard limits.

Why Python's own parsers are not enough
---------------------------------------
Every cost of parsing must be bounded by a limit we chose, before the work is done:

- ``int("1" + "0" * 400)`` is cheap, but ``float()`` of the result raises OverflowError,
  and ``int()`` of a 5,000-digit string is quadratic work; Python 3.11 caps it at 4,300
  digits with a ValueError (``sys.set_int_max_str_digits``), which only moves the edge.
  Here a number token longer than :data:`MAX_NUMBER_CHARS` is refused before any
  conversion, so no conversion can be large, slow or overflow.
- ``json.loads("[" * 100_000)`` recurses in C until RecursionError. A cheap pre-scan
  (two ``str.count`` calls; a token scan only when those allow deep nesting) refuses
  input nested deeper than :data:`MAX_JSON_DEPTH` before the decoder sees it, and a
  RecursionError that still escapes the decoder is caught at this boundary.
- ``json`` accepts ``NaN``, ``Infinity`` and ``1e400`` (which becomes inf). They parse
  to floats here; whether a non-finite value is acceptable is the signal's business
  (its NONFINITE flag), decided by the caller.

Every refusal is an :class:`InputError` with a short reason that never embeds more than
a few dozen characters of the input, so a log line or a reply stays small.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np

from petra.errors import PetraError

MAX_NUMBER_CHARS = 40  # longer than any float64 or int64 written out with sign and exponent
MAX_JSON_DEPTH = 32
MAX_JSON_BYTES = 64 * 1024
SHOW_CHARS = 32  # how much of a refused input a reason quotes

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_NONFINITE = {"nan": math.nan, "+nan": math.nan, "-nan": math.nan, "inf": math.inf,
              "+inf": math.inf, "-inf": -math.inf, "infinity": math.inf,
              "+infinity": math.inf, "-infinity": -math.inf}
_JSON_CONSTANTS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_OPEN_A, _CLOSE_A, _OPEN_O, _CLOSE_O, _QUOTE = (ord(c) for c in '[]{}"')


class InputError(PetraError, ValueError):
    """External input refused by a bounded parser (too long, too deep, malformed)."""


def show(text: str | bytes) -> str:
    """The start of a refused input, for a reason or a log line."""
    head = text[:SHOW_CHARS]
    more = "..." if len(text) > SHOW_CHARS else ""
    return f"{head!r}{more}"


def parse_number(text: str) -> int | float:
    """A plain-text number: an int when written as one, else a float.

    Accepts ASCII decimal notation only (no ``_`` separators, no other scripts' digits,
    no hex), plus ``nan``/``inf``/``infinity`` with an optional sign in any case (the
    caller decides whether non-finite is allowed). Refuses anything longer than
    :data:`MAX_NUMBER_CHARS` before converting it."""
    t = text.strip()
    if len(t) > MAX_NUMBER_CHARS:
        raise InputError(f"number of {len(t)} characters (at most {MAX_NUMBER_CHARS}): "
                         f"{show(t)}")
    if _NUMBER.fullmatch(t) is None:
        special = _NONFINITE.get(t.lower())
        if special is None:
            raise InputError(f"{show(t)} is not a number")
        return special
    if "." in t or "e" in t or "E" in t:
        return float(t)
    return int(t)


def _json_int(token: str) -> int:
    if len(token) > MAX_NUMBER_CHARS:
        raise InputError(f"JSON number of {len(token)} digits (at most {MAX_NUMBER_CHARS})")
    return int(token)


def _json_float(token: str) -> float:
    if len(token) > MAX_NUMBER_CHARS:
        raise InputError(f"JSON number of {len(token)} characters (at most "
                         f"{MAX_NUMBER_CHARS})")
    return float(token)


def _json_constant(token: str) -> float:
    return _JSON_CONSTANTS[token]


def json_depth_exceeds(text: str, max_depth: int) -> bool:
    """True when ``text`` opens more than ``max_depth`` nested arrays/objects.

    Brackets inside strings do not count. Escapes are neutralised first with two C-level
    replacements: ``\\\\`` pairs, left to right as JSON reads them, then ``\\"``; every
    quote left opens or closes a string (in valid JSON backslashes occur only inside
    strings, so this is exact; for invalid JSON the answer does not matter, the decoder
    refuses it). The rest is vectorised with numpy, no Python loop per character, so the
    check costs a fraction of what decoding the same bytes does."""
    if text.count("[") + text.count("{") <= max_depth:
        return False  # the common case: too few brackets to nest that deep at all
    if "\\" in text:
        text = text.replace("\\\\", "__").replace('\\"', "__")
    b = np.frombuffer(text.encode("utf-8", "surrogatepass"), dtype=np.uint8)
    opens = (b == _OPEN_A) | (b == _OPEN_O)
    closes = (b == _CLOSE_A) | (b == _CLOSE_O)
    if '"' in text:
        # inside a string after an odd number of quotes (a closing quote is outside)
        outside = np.bitwise_xor.accumulate((b == _QUOTE).view(np.uint8)) == 0
        opens &= outside
        closes &= outside
    step = opens.view(np.int8) - closes.view(np.int8)
    return int(np.cumsum(step, dtype=np.int32).max()) > max_depth


def parse_json(data: bytes | str, *, max_bytes: int = MAX_JSON_BYTES,
               max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Decode one JSON document within the limits, or raise :class:`InputError`.

    Numbers longer than :data:`MAX_NUMBER_CHARS` are refused; ``NaN``, ``Infinity`` and
    overflowing floats come back as non-finite floats for the caller to judge."""
    if len(data) > max_bytes:
        raise InputError(f"{len(data)} bytes (at most {max_bytes})")
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError("not UTF-8") from None
    else:
        text = data
    if json_depth_exceeds(text, max_depth):
        raise InputError(f"JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(text, parse_int=_json_int, parse_float=_json_float,
                          parse_constant=_json_constant)
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON: {exc.msg} at char {exc.pos}") from None
    except RecursionError:  # the pre-scan should have caught it; never let it escape
        raise InputError("JSON nested too deeply") from None
