"""Checks of the MQTT topic templates of a plant file, so ``petra check`` refuses what
would otherwise fail in the sink at start (and again at every restart).

A template is ``str.format`` text: ``{prefix}/{signal}``. The sink fills it with keyword
arguments only, so a template may name only those (``{prefix}``, ``{signal}``, ...),
bare: no positional ``{0}`` or ``{}``, no attribute or index (``{signal.__class__}``
would reach into Python objects), no conversion or format spec. Unbalanced braces are
an error; ``{{`` and ``}}`` stand for literal braces. The filled topic is one Petra
publishes to or subscribes on, so it may not hold the wildcards ``+`` and ``#`` (the
names filled in cannot hold them either: see the name rules) nor a NUL character.
"""

from __future__ import annotations

import string
from collections.abc import Iterable

_FORMATTER = string.Formatter()


def check_topic_template(value: str, fields: Iterable[str], what: str = "topic") -> str:
    """``value`` unchanged when it is a valid template over ``fields``; else ValueError."""
    allowed = sorted(fields)
    names = ", ".join("{" + f + "}" for f in allowed) or "none"
    try:
        parts = list(_FORMATTER.parse(value))
    except ValueError as exc:
        raise ValueError(f"{what} {value!r} is not a valid template: {exc} (write {{{{ and "
                         f"}}}} for a literal brace)") from None
    literal = ""
    for text, name, spec, conversion in parts:
        literal += text
        if name is None:
            continue
        if name not in allowed or spec or conversion:
            field = name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec
                                                                         else "")
            raise ValueError(f"{what} {value!r} has the placeholder {{{field}}}; "
                             f"it may use {names}")
    if not value:
        raise ValueError(f"{what} must not be empty")
    for char in ("+", "#", "\0"):
        if char in literal:
            raise ValueError(f"{what} {value!r} holds {char!r}: the wildcards + and # and "
                             "NUL have no place in a topic Petra publishes or subscribes to")
    return value
