"""``petra read [INSTANCE] [SIGNAL|PATTERN ...]``: current values of a running plant.

Each signal is one consistent slot read: value, quality, substatus (why the quality is
what it is), age of the value, its owner and last writer. A pattern with ``* ? [`` is
a glob over names; a plain word must name a signal exactly (a typo is an error with
suggestions, not an empty answer). No pattern: every signal.

``--json`` prints one object: ``{"schema": 1, "instance", "taken_ns", "signals":
{name: {value, type, unit, quality, substatus, age_ms, source_ts_ns, write_ts_ns,
writer, owner, writable, min, max}}}``; NaN and infinity are ``null`` (JSON has none).

Exit status: 0 read, 1 a name matched nothing (or no instance to attach), 2 usage.
"""

from __future__ import annotations

import argparse
import difflib
import fnmatch
import json
import math
import sys
import time
from typing import Any

from petra.cli._target import UsageError, split_instance
from petra.errors import UnknownSignalError

JSON_SCHEMA_VERSION = 1
COLUMNS = ("NAME", "VALUE", "UNIT", "QUALITY", "SUBSTATUS", "AGE", "OWNER", "W")


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "read", help="read signals of a running plant (value, quality, age, owner)",
        description="Read signals of a running plant: `petra read demo 'tank.*'`.")
    p.add_argument("words", nargs="*", metavar="[INSTANCE] [SIGNAL|PATTERN]",
                   help="the instance (optional when only one runs), then names or globs")
    p.add_argument("--instance", "-i", default=None, help="instance name")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.set_defaults(func=run)


def select(names: list[str], patterns: list[str]) -> list[str]:
    """Names in slot order matching any pattern (all without patterns); a plain word
    that is not a signal raises UnknownSignalError, a glob that matches nothing too."""
    if not patterns:
        return list(names)
    wanted: set[str] = set()
    known = set(names)
    for pat in patterns:
        if any(c in pat for c in "*?["):
            hits = fnmatch.filter(names, pat)
            if not hits:
                raise UnknownSignalError(f"no signal matches {pat!r}")
            wanted.update(hits)
        elif pat in known:
            wanted.add(pat)
        else:
            close = difflib.get_close_matches(pat, names, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UnknownSignalError(f"no signal named {pat!r}{hint}")
    return [n for n in names if n in wanted]


def _finite(v: object) -> object:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _fmt_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def _fmt_age(ms: float) -> str:
    if ms < 1000:
        return f"{ms:.0f} ms"
    return f"{ms / 1000:.1f} s" if ms < 60_000 else f"{ms / 60_000:.1f} min"


def run(args: argparse.Namespace) -> int:
    from petra.shm import Segment, list_instances

    try:
        words = list(args.words)
        instance, patterns = split_instance(words, args.instance, list_instances(),
                                            is_instance=True)
    except UsageError as exc:
        print(f"petra read: {exc}", file=sys.stderr)
        return 2
    with Segment.attach(instance, readonly=True) as seg:
        chosen = select(seg.names, patterns)
        now = time.time_ns()
        rows: dict[str, dict[str, Any]] = {}
        for name in chosen:
            info = seg.info_of(name)
            s = seg.read(info.index)
            rows[name] = {
                "value": s.value, "type": info.type.name.lower(), "unit": info.unit,
                "quality": s.quality.name.lower(), "substatus": s.substatus.name.lower(),
                "age_ms": max(0.0, (now - s.source_ts_ns) / 1e6),
                "source_ts_ns": s.source_ts_ns, "write_ts_ns": s.write_ts_ns,
                "writer": s.writer, "owner": info.owner, "writable": info.writable,
                "min": info.minimum, "max": info.maximum}
    if args.json:
        out = {"schema": JSON_SCHEMA_VERSION, "instance": instance, "taken_ns": now,
               "signals": {n: {**r, "value": _finite(r["value"])} for n, r in rows.items()}}
        print(json.dumps(out, allow_nan=False))
        return 0
    table = [COLUMNS] + [
        (n, _fmt_value(r["value"]), r["unit"], r["quality"],
         "" if r["substatus"] == "none" else r["substatus"], _fmt_age(r["age_ms"]),
         r["owner"], "w" if r["writable"] else "")
        for n, r in rows.items()]
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    right = {1, 5}
    for row in table:
        print("  ".join(cell.rjust(w) if i in right else cell.ljust(w)
                        for i, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip())
    return 0
