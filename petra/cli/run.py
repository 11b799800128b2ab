"""``petra run PLANT``: run a whole plant in the foreground (the supervisor)."""

from __future__ import annotations

import argparse
from typing import Any

from petra.logs import setup_logging


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "run", help="run a plant: scan, drivers, sinks, health endpoint")
    p.add_argument("plant", help="plant YAML file")
    p.add_argument("--instance", help="instance name (default: the plant's)")
    p.add_argument("--health", default="127.0.0.1:9120",
                   help="HOST:PORT of /healthz and /metrics ('off' to disable; port 0 "
                        "picks a free port, logged and written to the state file)")
    p.add_argument("--log-level", default=None,
                   help="debug, info, warning, error (default: the plant's log_level)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from petra.config import load_plant
    from petra.supervisor import main

    plant = load_plant(args.plant)
    level = args.log_level or plant.config.log_level
    setup_logging(level, role="supervisor")
    health = None if args.health == "off" else args.health
    return main(args.plant, instance=args.instance, health=health, log_level=level,
                plant=plant)
