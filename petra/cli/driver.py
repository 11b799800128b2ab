"""``petra driver PLANT.yaml NAME`` and ``petra sink PLANT.yaml NAME``: run one configured
driver, or one sink (``mqtt-out``), standalone against a running instance.

Each attaches to the instance's segment, claims a heartbeat record and runs until
SIGTERM or SIGINT. The supervisor spawns drivers and sinks the same way. For
compatibility ``petra driver PLANT mqtt-out`` runs the sink.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from petra.cli._args import add_log_level, instance_name


def register(sub: Any) -> None:
    for kind, what in (("driver", "one field driver from drivers:"),
                       ("sink", "one sink (mqtt-out)")):
        p: argparse.ArgumentParser = sub.add_parser(
            kind, help=f"run {what} against a running instance")
        p.add_argument("plant", help="plant YAML file")
        p.add_argument("name", help="driver name from drivers:" if kind == "driver"
                       else "sink name: mqtt-out")
        p.add_argument("--instance", "-i", default=None, type=instance_name,
                       help="instance name (default: the plant's)")
        p.add_argument("--cpus", default=None,
                       help="CPUs to run on, e.g. 1 or 1,2 (never the scan's CPU)")
        add_log_level(p, "info")
        p.add_argument("--plant-data", default=None, help=argparse.SUPPRESS)  # from petra run
        p.set_defaults(func=run, kind=kind)


def run(args: argparse.Namespace) -> int:
    from petra.types import SINK_MQTT_OUT, sink_role

    instance = args.instance
    if instance is None:
        from petra.config import load_plant

        instance = str(load_plant(args.plant).config.instance)
    try:
        cpus = [int(c) for c in args.cpus.split(",")] if args.cpus else None
    except ValueError:
        print(f"petra {args.kind}: --cpus expects numbers such as 1 or 1,2, got "
              f"{args.cpus!r}", file=sys.stderr)
        return 2
    if args.kind == "sink" or args.name in (SINK_MQTT_OUT, sink_role(SINK_MQTT_OUT)):
        from petra.sinks import main as sink_main

        return sink_main(args.plant, instance, args.name, cpus, log_level=args.log_level,
                         plant_data=args.plant_data)
    from petra.drivers import main as driver_main

    return driver_main(args.plant, instance, args.name, cpus, log_level=args.log_level,
                       plant_data=args.plant_data)
