"""``petra`` command: one subcommand per module in this package (see ``_commands``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from petra.cli._commands import build_parser as _build
from petra.cli._commands import run

# Subcommand modules, in the order `petra --help` lists them.
SUBCOMMANDS = ("run", "check", "scan", "reload", "read", "write", "driver", "segment",
               "history", "alarms", "replay", "api", "user", "audit")


def build_parser() -> argparse.ArgumentParser:
    return _build("petra", "Petra automation runtime", "petra.cli", SUBCOMMANDS)


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
