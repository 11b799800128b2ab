"""``petra-bench``: tools an engineer runs on a box before commissioning a plant.

Each subcommand is a private module of this package defining ``register(subparsers)``
(the contract of ``petra/cli/_commands.py``).

Exit status: 0 success, 1 the check or measurement found a failure, 2 usage error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from petra.cli._commands import build_parser as _build
from petra.cli._commands import run

# Subcommand modules (petra.bench.<module>), in the order `petra-bench --help` lists them.
#   _jitter: `petra-bench jitter` -- the scan-loop latency measurement
#   _doctor: `petra-bench doctor` -- real-time fitness checks of the box
SUBCOMMANDS = ("_jitter", "_doctor")


def build_parser() -> argparse.ArgumentParser:
    return _build("petra-bench", "Measure and check a box for Petra's real-time scan",
                  "petra.bench", SUBCOMMANDS)


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
