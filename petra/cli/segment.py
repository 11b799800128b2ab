"""``petra segment``: list, inspect and remove shared segments on this machine."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from petra.cli._args import instance_name


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "segment", help="list, inspect or remove shared segments")
    p.add_argument("action", choices=("list", "info", "rm"))
    p.add_argument("instance", nargs="?", type=instance_name)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from petra.shm import Segment, list_instances, unlink_instance

    if args.action == "list":
        for name in list_instances():
            print(name)
        return 0
    if not args.instance:
        print(f"petra segment {args.action}: an instance name is required", file=sys.stderr)
        return 2
    if args.action == "rm":
        return 0 if unlink_instance(args.instance) else 1
    with Segment.attach(args.instance, readonly=True) as seg:
        info = seg.info()
        out = {k: getattr(info, k) for k in info.__slots__}
        out["signals"] = [s.name for s in seg.signals]
        print(json.dumps(out, indent=2))
    return 0
