"""``petra reload``: ask a running plant to reload its file and report the outcome."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from typing import Any


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "reload", help="hot-reload a running plant's blocks from its file")
    p.add_argument("--instance", help="instance name (default: the only one running)")
    p.add_argument("--timeout", type=float, default=20.0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from petra.shm import list_instances
    from petra.supervisor import read_state

    instance = args.instance
    if instance is None:
        running = list_instances()
        if len(running) != 1:
            print(f"petra reload: name an --instance (running: {', '.join(running) or 'none'})",
                  file=sys.stderr)
            return 2
        instance = running[0]
    state = read_state(instance)
    before = (state.get("last_reload") or {}).get("seq", 0)
    os.kill(int(state["pid"]), signal.SIGHUP)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        time.sleep(0.1)
        last = read_state(instance).get("last_reload") or {}
        if last.get("seq", 0) > before:
            if last.get("ok"):
                print(f"{instance}: reloaded")
                return 0
            for err in last.get("errors") or ["reload failed"]:
                print(err, file=sys.stderr)
            return 1
    print(f"petra reload: no answer from {instance} within {args.timeout:.0f}s", file=sys.stderr)
    return 1
