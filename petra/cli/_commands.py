"""Subcommand plumbing shared by ``petra`` and ``petra-bench``.

Each subcommand is a module defining ``register(subparsers)``, which adds its parser
and sets ``func`` to a callable taking the parsed namespace and returning the exit
status. Exit status: 0 success, 1 the work failed (a :class:`PetraError`, or an
:class:`OSError` such as an address already in use), 2 usage. Usage errors are one line
(:class:`~petra.cli._args.Parser`), and so are failures: a user never sees a traceback
for a mistake of theirs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from petra import __version__
from petra.cli._args import Parser
from petra.errors import PetraError


def build_parser(prog: str, description: str, package: str,
                 modules: Sequence[str]) -> argparse.ArgumentParser:
    """A parser with one subcommand per ``package.module`` in ``modules``."""
    parser = Parser(prog=prog, description=description)
    parser.add_argument("--version", action="version", version=f"{prog} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in modules:
        importlib.import_module(f"{package}.{name}").register(sub)
    return parser


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse, dispatch, and map errors to exit statuses with the tool's name."""
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(func(args))
    except PetraError as exc:
        print(f"{parser.prog} {args.command}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{parser.prog} {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
