"""``petra-top``: attach to a running instance and show it live, or print one snapshot.

The live view follows the instance across restarts and can write writable signals
(``w``; ``--read-only`` turns that off); ``--once`` only reads.

Exit status: 0 success, 1 nothing to show (no instance, cannot attach), 2 usage error
(including "several instances run, say which one").
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import replace

from petra import __version__
from petra.errors import PetraError
from petra.shm import list_instances
from petra.top._columns import matches, render_text
from petra.top._sampler import Sampler
from petra.top._snapshot import Snapshot
from petra.top._source import InstanceSource
from petra.top._write import SignalWriter, parse_for

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="petra-top",
        description="Live monitor of a running Petra instance; writes writable signals "
                    "on request (w), through the same checks as `petra write`.")
    parser.add_argument("--version", action="version", version=f"petra-top {__version__}")
    parser.add_argument("-i", "--instance", metavar="NAME",
                        help="instance to attach to (default: the only one running)")
    parser.add_argument("--list", action="store_true", help="list running instances and exit")
    parser.add_argument("--once", action="store_true",
                        help="print one snapshot and exit (text, or JSON with --json)")
    parser.add_argument("--json", action="store_true",
                        help="with --once: print the snapshot as one JSON object")
    parser.add_argument("--filter", default="", metavar="PATTERN",
                        help="show only signals whose name contains PATTERN (or matches "
                             "it as a glob when it has * ? [)")
    parser.add_argument("--interval", type=float, default=1.0, metavar="SECONDS",
                        help="refresh interval of the live view (default 1.0)")
    parser.add_argument("--window", type=float, default=0.25, metavar="SECONDS",
                        help="with --once: time between the two samples rates are "
                             "measured over (default 0.25)")
    parser.add_argument("--read-only", action="store_true",
                        help="live view without the write key (w)")
    return parser


def resolve_instance(requested: str | None) -> tuple[str | None, str]:
    """(instance, message). The instance is None when there is none or it is ambiguous;
    the message then says why and what to do."""
    if requested:
        return requested, ""
    running = list_instances()
    if not running:
        return None, ("no running Petra instance (no /dev/shm/petra.* segment); "
                      "start one with `petra run plant.yaml`")
    if len(running) == 1:
        return running[0], ""
    listing = "\n".join(f"  {name}" for name in running)
    return None, (f"{len(running)} instances are running; choose one with --instance NAME:\n"
                  f"{listing}")


def _ask(running: list[str]) -> str | None:
    """Let an interactive user pick an instance by number."""
    for n, name in enumerate(running, 1):
        print(f"  {n}) {name}", file=sys.stderr)
    try:
        answer = input("instance number or name: ").strip()
    except EOFError:
        return None
    if answer.isdigit() and 1 <= int(answer) <= len(running):
        return running[int(answer) - 1]
    return answer if answer in running else None


def filtered(snapshot: Snapshot, pattern: str) -> Snapshot:
    """The snapshot with only the signals matching ``pattern``."""
    if not pattern:
        return snapshot
    return replace(snapshot,
                   signals=tuple(s for s in snapshot.signals if matches(pattern, s.name)))


def once(sampler: Sampler, *, window_s: float, as_json: bool, pattern: str) -> str:
    """Two samples ``window_s`` apart (rates need two); the second one, rendered."""
    sampler.sample()
    time.sleep(max(0.0, window_s))
    snap = filtered(sampler.sample(), pattern)
    if as_json:
        return json.dumps(snap.to_json(), allow_nan=False, separators=(",", ":")) + "\n"
    return render_text(snap)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.interval <= 0 or args.window < 0:
        parser.error("--interval must be > 0 and --window >= 0")
    if args.list:
        for name in list_instances():
            print(name)
        return EXIT_OK
    if args.json:
        args.once = True
    instance, why = resolve_instance(args.instance)
    if instance is None:
        running = list_instances()
        if len(running) > 1 and not args.once and sys.stdin.isatty():
            print(why.splitlines()[0], file=sys.stderr)
            instance = _ask(running)
        if instance is None:
            print(f"petra-top: {why}", file=sys.stderr)
            return EXIT_USAGE if len(running) > 1 else EXIT_FAIL
    if args.once:
        try:
            sampler = Sampler.attach(instance)
        except PetraError as exc:
            print(f"petra-top: {exc}", file=sys.stderr)
            return EXIT_FAIL
        with sampler:
            sys.stdout.write(once(sampler, window_s=args.window, as_json=args.json,
                                  pattern=args.filter))
        return EXIT_OK
    return live(instance, args)


def check_text(name: str, text: str) -> str | None:
    """What is wrong with ``text`` as a value (before asking to confirm), or None."""
    try:
        parse_for(name, text)
    except PetraError as exc:
        return str(exc)
    return None


def live(instance: str, args: argparse.Namespace) -> int:
    """The interactive view, following the instance across restarts."""
    try:
        source = InstanceSource(instance)
    except PetraError as exc:
        print(f"petra-top: {exc}", file=sys.stderr)
        return EXIT_FAIL
    from petra.top._app import TopApp  # textual loads only for the live view

    writer = None if args.read_only else SignalWriter(instance).write
    app = TopApp(source.sample, interval_s=args.interval, pattern=args.filter,
                 present=source.present, detail=source.detail, write=writer,
                 check=check_text)
    try:
        app.run()
    except KeyboardInterrupt:
        return 130
    finally:
        source.close()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
