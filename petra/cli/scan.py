"""``petra scan PLANT``: run the scan alone (the supervisor normally spawns it)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from petra.cli._args import add_log_level, instance_name
from petra.logs import setup_logging


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "scan", help="run the scan process alone against a segment")
    p.add_argument("plant", help="plant YAML file")
    p.add_argument("--instance", type=instance_name,
                   help="segment instance (default: the plant's)")
    p.add_argument("--attach", action="store_true",
                   help="attach to an existing segment instead of creating one")
    p.add_argument("--cycles", type=int, default=None, help="stop after N cycles")
    p.add_argument("--plant-data", default=None, help=argparse.SUPPRESS)  # from petra run
    p.add_argument("--start-gate", type=int, default=None, help=argparse.SUPPRESS)  # ditto
    add_log_level(p, "info")
    p.set_defaults(func=run)


# BLAS threads the scan never uses: each would be one more thread, one more 8 MB stack
# and one more 32 MB OpenBLAS buffer mapped in a locked process. Read by OpenBLAS (and
# MKL, OpenMP) when numpy loads, so set before petra.scan imports it.
SINGLE_THREAD_BLAS = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
                      "MKL_NUM_THREADS": "1"}


def run(args: argparse.Namespace) -> int:
    os.environ.update(SINGLE_THREAD_BLAS)
    from petra.scan import main

    setup_logging(args.log_level, role="scan")
    return main(args.plant, instance=args.instance, create=not args.attach,
                max_cycles=args.cycles, plant_data=args.plant_data,
                start_gate=args.start_gate)
