"""``petra reload``: ask a running plant to reload its file and report the outcome.

The signal goes only to the process the kernel says holds the instance's lock (see
``petra/supervisor/_instance.py``), never to whatever pid a state file names: a state
file left by a ``kill -9`` names a dead pid, and a reused pid names a stranger.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from typing import Any

from petra.cli._args import fail, instance_name

PROG = "petra reload"


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "reload", help="hot-reload a running plant's blocks from its file")
    p.add_argument("--instance", type=instance_name,
                   help="instance name (default: the only one running)")
    p.add_argument("--timeout", type=float, default=20.0)
    p.set_defaults(func=run)


def _seq(state: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """The last reload's sequence number and record, tolerating odd state files."""
    last = state.get("last_reload")
    if not isinstance(last, dict):
        return 0, {}
    seq = last.get("seq")
    return (seq if isinstance(seq, int) else 0), last


def run(args: argparse.Namespace) -> int:
    from petra.errors import PetraError
    from petra.shm import list_instances
    from petra.supervisor import read_state, signal_supervisor, supervisor_pid

    instance = args.instance
    if instance is None:
        running = list_instances()
        if len(running) != 1:
            return fail(PROG, f"name an --instance (running: {', '.join(running) or 'none'})",
                        2)
        instance = running[0]
    pid = supervisor_pid(instance)
    if pid is None:
        return fail(PROG, f"instance {instance!r} is not running under a supervisor (no "
                          "process holds its lock; a state file left by a killed "
                          "supervisor is not trusted)")
    try:
        before, _ = _seq(read_state(instance))
    except PetraError as exc:
        return fail(PROG, f"{exc} (the supervisor, pid {pid}, holds the lock: is it still "
                          "starting?)")
    signal_supervisor(instance, signal.SIGHUP)
    return _wait(instance, before, args.timeout)


def _wait(instance: str, before: int, timeout: float) -> int:
    """Poll the state file until the supervisor records a newer reload."""
    from petra.errors import PetraError
    from petra.supervisor import read_state

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.1)
        try:
            seq, last = _seq(read_state(instance))
        except PetraError as exc:
            return fail(PROG, f"lost the supervisor during the reload: {exc}")
        if seq <= before:
            continue
        if last.get("ok"):
            print(f"{instance}: reloaded")
            return 0
        errors = last.get("errors")
        for err in errors if isinstance(errors, list) and errors else ["reload failed"]:
            print(err, file=sys.stderr)
        return 1
    return fail(PROG, f"no answer from {instance} within {timeout:.0f}s")
