"""``petra write [INSTANCE] SIGNAL=VALUE ...``: set writable signals of a running plant.

Every value goes through the one authorised write path
(:func:`petra.security.authorised_write`, around :meth:`petra.shm.Segment.write_checked`),
the same as commands from MQTT, petra-top and the API: a signal not marked ``writable:
true``, a value of the wrong type, NaN or infinity, or a value outside the signal's
``min``/``max`` is refused with a message naming the signal and the limit, and nothing is
written for it. Each write (and each refusal) is an audit record naming the local user
(``local:<login>``, role operator: mapping the segment read-write is what the OS grants
only to root and the ``petra`` group); the audit log must be writable before anything is
written. Values read as in the plant file:
``true``/``false``, ``12``, ``2.5``, ``1e3``.

Assignments are all parsed first (a typo writes nothing), then written in the order
given; the first refusal stops the rest and says which were written before it.

Exit status: 0 all written, 1 a write was refused (or the instance cannot be
attached), 2 usage (no ``=``, no instance to choose).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from petra.cli._target import UsageError, split_instance
from petra.errors import PetraError


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "write", help="write writable signals of a running plant (checked: type, min/max)",
        description="Write writable signals of a running plant, e.g. "
                    "`petra write demo plant.start=true`. Exit 0 written, 1 refused, 2 usage.")
    p.add_argument("words", nargs="+", metavar="[INSTANCE] SIGNAL=VALUE",
                   help="the instance (optional when only one runs), then assignments")
    p.add_argument("--instance", "-i", default=None, help="instance name")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(func=run)


def parse_assignments(words: list[str]) -> list[tuple[str, str]]:
    """``["a=1", "b = true"]`` -> ``[("a", "1"), ("b", "true")]``; UsageError without ``=``."""
    out = []
    for word in words:
        name, eq, text = word.partition("=")
        if not eq or not name.strip() or not text.strip():
            raise UsageError(f"expected SIGNAL=VALUE, got {word!r}")
        out.append((name.strip(), text.strip()))
    return out


def run(args: argparse.Namespace) -> int:
    from petra.cli._access import instance_audit
    from petra.config import parse_scalar
    from petra.security import authorised_write, local_principal
    from petra.shm import Segment, list_instances

    try:
        instance, rest = split_instance(args.words, args.instance, list_instances(),
                                        is_instance="=" not in args.words[0])
        assignments = parse_assignments(rest)
        if not assignments:
            raise UsageError("nothing to write: give SIGNAL=VALUE")
    except UsageError as exc:
        print(f"petra write: {exc}", file=sys.stderr)
        return 2
    values = []
    for name, text in assignments:
        try:
            values.append((name, parse_scalar(text)))
        except ValueError as exc:
            raise PetraError(f"signal {name!r}: {exc}") from None
    done: list[str] = []
    who = local_principal("cli")
    with Segment.attach(instance) as seg:
        audit = instance_audit(instance)
        audit.check_writable()
        for name, value in values:
            try:
                authorised_write(seg, who, name, value, audit)
            except PetraError as exc:
                if done:
                    exc.args = (f"{exc} (already written: {', '.join(done)})",)
                raise
            done.append(name)
            if not args.quiet:
                print(f"{instance}: {name} = {_show(value)}")
    return 0


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"{value:g}" if isinstance(value, float) else str(value)
