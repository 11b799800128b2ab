"""``petra`` command: one subcommand per module in this package.

Each subcommand module defines ``register(subparsers)``, which adds its parser and sets
``func`` to a callable taking the parsed namespace and returning the exit status.
Exit status: 0 success, 1 the work failed (invalid config, ...), 2 usage error.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from petra import __version__
from petra.errors import PetraError

# Subcommand modules, in the order `petra --help` lists them. A module that is not
# there yet is skipped, so the parts of the product can land one by one.
SUBCOMMANDS = ("run", "check", "scan", "reload", "driver", "segment")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="petra", description="Petra automation runtime")
    parser.add_argument("--version", action="version", version=f"petra {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"petra.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"petra.cli.{name}":
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
        print(f"petra {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
