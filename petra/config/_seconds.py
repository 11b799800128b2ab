"""Times that blocks and drivers hold in seconds, written with a unit in a plant file.

The scan section holds its durations in nanoseconds (``Duration`` in ``_models.py``,
where a bare number means milliseconds). Blocks and drivers measure time in seconds
(a timer's ``pt``, a PID's ``ti``, a driver's ``poll_period_s``): there a bare number
keeps meaning seconds, and text with a unit (``20s``, ``500ms``, ``1.5min``, ``2h``) is
converted to seconds. A signal name never starts with a digit, so ``pt: 20s`` cannot
be mistaken for a signal reference.

:data:`TIME_PORTS` says which ports and parameters of the built-in blocks are times;
a test checks it against the catalogue's documentation so the two cannot drift.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Annotated

from pydantic import BeforeValidator, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

SECONDS_PER_UNIT = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0}
_SECONDS_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(ns|us|ms|s|min|h)\s*$")

TIME_PORTS: Mapping[str, frozenset[str]] = {
    "TON": frozenset({"pt"}),
    "TOF": frozenset({"pt"}),
    "TP": frozenset({"pt"}),
    "PID": frozenset({"ti", "td"}),
    "LAG": frozenset({"tau"}),
    "SIGNAL_GENERATOR": frozenset({"period"}),
}
"""Built-in block type -> its input ports and parameters that are times in seconds."""


def looks_like_duration(value: object) -> bool:
    """Text that can only be meant as a duration: it starts with a digit or a dot."""
    return isinstance(value, str) and value.strip()[:1] in set("0123456789.")


def parse_seconds(value: object) -> float:
    """Seconds from a number (already seconds) or from text with a unit."""
    if isinstance(value, bool):
        raise ValueError(f"expected a time such as '20s' or a number of seconds, got {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"a time must be a finite number, got {value!r}")
        return float(value)
    if isinstance(value, str):
        m = _SECONDS_RE.match(value)
        if m is None:
            raise ValueError(f"expected a time such as '20s', '500ms', '1.5min' or '2h', "
                             f"or a number of seconds, got {value!r}")
        return float(m.group(1)) * SECONDS_PER_UNIT[m.group(2)]
    raise ValueError(f"expected a time such as '20s' or a number of seconds, got {value!r}")


def _seconds_or_passthrough(value: object) -> object:
    """Convert text; leave anything else to the field's own (strict) validation."""
    return parse_seconds(value) if isinstance(value, str) else value


def _whole_seconds(value: object) -> object:
    if not isinstance(value, str):
        return value
    s = parse_seconds(value)
    if s != int(s):
        raise ValueError(f"expected whole seconds, got {value!r} ({s:g} s)")
    return int(s)


class _TimeText:
    """JSON-schema marker: the field's own number schema (with its bounds), or text
    with a unit. Validation is the :func:`BeforeValidator` beside it."""

    def __get_pydantic_json_schema__(self, core: CoreSchema,
                                     handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        number = handler(core)
        keep: dict[str, object] = {k: number.pop(k) for k in ("title", "default", "description")
                                   if k in number}
        return {"anyOf": [number, {"type": "string", "pattern": _SECONDS_RE.pattern}],
                **keep}


Seconds = Annotated[float, BeforeValidator(_seconds_or_passthrough), _TimeText()]
"""A float field in seconds that also takes ``"500ms"``-style text."""
WholeSeconds = Annotated[int, BeforeValidator(_whole_seconds), _TimeText()]
"""An int field in seconds that also takes ``"30s"``-style text (whole seconds only)."""


def convert_block_times(block_type: object, section: str,
                        values: object) -> object:
    """``inputs``/``params`` of a block with its time-valued entries given as text
    converted to seconds; anything else is returned unchanged for the usual checks."""
    ports = TIME_PORTS.get(block_type) if isinstance(block_type, str) else None
    if not ports or not isinstance(values, dict):
        return values
    out = dict(values)
    for key in ports & out.keys():
        if looks_like_duration(out[key]):
            try:
                out[key] = parse_seconds(out[key])
            except ValueError as exc:
                raise ValueError(f"{section}.{key}: {exc}") from None
    return out
