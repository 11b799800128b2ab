"""``petra driver PLANT.yaml NAME``: run one configured driver (or ``mqtt-out``) standalone.

It attaches to the running instance's segment, claims a heartbeat record and runs until
SIGTERM or SIGINT. The supervisor spawns drivers the same way (``petra.drivers.main``).
"""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "driver", help="run one field driver (or the mqtt-out sink) against a running instance")
    p.add_argument("plant", help="plant YAML file")
    p.add_argument("name", help="driver name from drivers:, or mqtt-out")
    p.add_argument("--instance", "-i", default=None,
                   help="instance name (default: the plant's)")
    p.add_argument("--cpus", default=None,
                   help="CPUs to run on, e.g. 1 or 1,2 (never the scan's CPU)")
    p.add_argument("--log-level", default="info",
                   choices=("debug", "info", "warning", "error"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from petra.drivers import main

    instance = args.instance
    if instance is None:
        from petra.config import load_plant

        instance = str(load_plant(args.plant).config.instance)
    cpus = [int(c) for c in args.cpus.split(",")] if args.cpus else None
    return main(args.plant, instance, args.name, cpus, log_level=args.log_level)
