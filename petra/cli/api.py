"""``petra api PLANT.yaml``: run a plant's HTTP(S) API against its running instance.

The supervisor starts it as the ``api`` child when the plant has an ``api:`` section;
run by hand it serves the same way (``--port-file`` writes the bound port, useful
with ``listen: 127.0.0.1:0``).
"""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "api", help="run the HTTP(S)/WebSocket API of a running plant")
    p.add_argument("plant", help="plant YAML file (its api: section)")
    p.add_argument("--instance", "-i", default=None, help="instance name (default: the plant's)")
    p.add_argument("--cpus", default=None, help="CPUs to run on, e.g. 1 or 1,2")
    p.add_argument("--log-level", default="info",
                   choices=("debug", "info", "warning", "error"))
    p.add_argument("--state-file", default=None,
                   help="the supervisor's state file (reload and health go through it)")
    p.add_argument("--port-file", default=None, help="write the bound port here (JSON)")
    p.add_argument("--plant-data", default=None, help=argparse.SUPPRESS)  # from petra run
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from petra.api import main

    cpus = [int(c) for c in args.cpus.split(",")] if args.cpus else None
    return main(args.plant, args.instance, cpus, log_level=args.log_level,
                state_file=args.state_file, port_file=args.port_file,
                plant_data=args.plant_data)
