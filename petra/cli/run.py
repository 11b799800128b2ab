"""``petra run PLANT``: run a whole plant in the foreground (the supervisor)."""

from __future__ import annotations

import argparse
import gc
import logging
import time
from typing import Any

from petra.cli._args import HEALTH_OFF, add_log_level, fail, health_address, instance_name
from petra.logs import setup_logging


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "run", help="run a plant: scan, drivers, sinks, health endpoint")
    p.add_argument("plant", help="plant YAML file")
    p.add_argument("--instance", type=instance_name,
                   help="instance name (default: the plant's)")
    p.add_argument("--health", default="127.0.0.1:9120", type=health_address,
                   help="HOST:PORT of /healthz and /metrics ('off' to disable; port 0 "
                        "picks a free port, logged and written to the state file)")
    p.add_argument("--start-grace", type=_seconds, default=15.0, metavar="SECONDS",
                   help="how long a starting process may go without a sign of progress "
                        "(its first heartbeat, then each start-up beat) before it is "
                        "killed (default 15)")
    p.add_argument("--start-timeout", type=_seconds, default=600.0, metavar="SECONDS",
                   help="the most a process may take to become ready however it "
                        "progresses (default 600)")
    add_log_level(p, None)
    p.set_defaults(func=run)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value <= 86400:
        raise argparse.ArgumentTypeError(f"{text} is outside 0..86400 seconds")
    return value


def run(args: argparse.Namespace) -> int:
    from petra.config import load_plant
    from petra.supervisor import RestartPolicy, main

    t0 = time.monotonic()
    try:
        plant = load_plant(args.plant)
    except OSError as exc:
        return fail("petra run", f"cannot read {args.plant}: {exc.strerror or exc}", 2)
    # The plant is kept for the supervisor's life: a million objects the cyclic
    # collector would otherwise walk again on every full pass (hand-over, reloads).
    gc.freeze()
    level = args.log_level or plant.config.log_level
    setup_logging(level, role="supervisor")
    logging.getLogger("petra.supervisor").info(
        "event=plant_loaded signals=%d blocks=%d ms=%.0f", len(plant.config.signals),
        len(plant.blocks), (time.monotonic() - t0) * 1e3)
    health = None if args.health == HEALTH_OFF else args.health
    policy = RestartPolicy(startup_grace_s=args.start_grace, startup_cap_s=args.start_timeout)
    return main(args.plant, instance=args.instance, health=health, log_level=level,
                plant=plant, policy=policy)
