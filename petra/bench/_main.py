"""``petra-bench``: tools an engineer runs on a box before commissioning a plant.

Each subcommand is a private module of this package defining ``register(subparsers)``,
which adds its parser and sets ``func`` to a callable taking the parsed namespace and
returning the exit status (the same contract as ``petra/cli``). A module that is not
there yet is skipped, so the subcommands land one by one.

Exit status: 0 success, 1 the check or measurement found a failure, 2 usage error.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from petra import __version__
from petra.errors import PetraError

# Subcommand modules (petra.bench.<module>), in the order `petra-bench --help` lists them.
#   _jitter: `petra-bench jitter` -- the scan-loop latency measurement (lead adds it)
#   _doctor: `petra-bench doctor` -- real-time fitness checks of the box
SUBCOMMANDS = ("_jitter", "_doctor")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="petra-bench",
        description="Measure and check a box for Petra's real-time scan")
    parser.add_argument("--version", action="version", version=f"petra-bench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"petra.bench.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"petra.bench.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(func(args))
    except PetraError as exc:
        print(f"petra-bench {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
