"""``petra alarms``: run the alarm manager, list alarms, and act on them.

    petra alarms run PLANT                         the alarm process (the supervisor's way)
    petra alarms list PLANT [--all] [--area A] [--json]
    petra alarms events PLANT [--last N] [--json]  the event journal
    petra alarms status PLANT                      metrics and notification counters (JSON)
    petra alarms ack PLANT [ALARM ...] [--area A | --all]
    petra alarms reset PLANT ALARM ...             latched alarms
    petra alarms shelve PLANT ALARM ... --reason R (--for 30min | --oneshot)
    petra alarms unshelve PLANT ALARM ...
    petra alarms oos PLANT ALARM ... --reason R    out of service (engineer)
    petra alarms oos PLANT ALARM ... --return      back in service (engineer)
    petra alarms comment PLANT ALARM TEXT

Actions go through the alarm manager's action spool (the same way the API and MQTT
commands go): the request is written durably, the alarm process checks the role and
acts, and its answer is printed. ``--user`` is recorded with the action; ``--role`` is
the role acted in (default operator; out of service needs engineer). A local user may
claim a role because the spool directory's permissions are the authentication here,
as for ``petra write``. Without an answer within ``--timeout`` the request stays queued
until it expires (``alarms.request_max_age_s``) and the exit status is 1.

Exit status: 0 done, 1 refused / no answer / no data, 2 usage. Heavy imports stay
inside the functions so ``petra check`` runs without the C core.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from petra.errors import ConfigError

ACTIONS = ("ack", "reset", "shelve", "unshelve", "oos", "comment")


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "alarms", help="alarms: run the alarm manager, list, acknowledge, shelve ...")
    al = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    r = al.add_parser("run", help="run the alarm manager against a running instance")
    r.add_argument("plant", help="plant YAML file")
    r.add_argument("--instance", "-i", default=None, help="instance (default: the plant's)")
    r.add_argument("--cpus", default=None, help="CPUs to run on, e.g. 1 or 1,2")
    r.add_argument("--log-level", default="info",
                   choices=("debug", "info", "warning", "error"))
    r.add_argument("--plant-data", default=None, help=argparse.SUPPRESS)  # from petra run
    r.set_defaults(func=run_manager)

    ls = al.add_parser("list", help="alarms and their states (not normal ones by default)")
    ls.add_argument("plant", help="plant YAML file")
    ls.add_argument("--instance", "-i", default=None)
    ls.add_argument("--all", action="store_true", help="also alarms in state normal")
    ls.add_argument("--area", default=None, help="only this area")
    ls.add_argument("--json", action="store_true", help="the rows as JSON")
    ls.set_defaults(func=run_list)

    ev = al.add_parser("events", help="the event journal")
    ev.add_argument("plant", help="plant YAML file")
    ev.add_argument("--instance", "-i", default=None)
    ev.add_argument("--last", type=int, default=50, help="the last N events (0: all)")
    ev.add_argument("--json", action="store_true", help="one JSON object per line")
    ev.set_defaults(func=run_events)

    st = al.add_parser("status", help="alarm metrics and notification counters (JSON)")
    st.add_argument("plant", help="plant YAML file")
    st.add_argument("--instance", "-i", default=None)
    st.set_defaults(func=run_status)

    for name, helptext in (("ack", "acknowledge alarms (by name, --area or --all)"),
                           ("reset", "reset latched alarms"),
                           ("shelve", "shelve alarms for a while (--for) or until they "
                                      "clear (--oneshot)"),
                           ("unshelve", "unshelve alarms"),
                           ("oos", "take alarms out of service, or --return them"),
                           ("comment", "add a comment to an alarm's journal")):
        a = al.add_parser(name, help=helptext)
        a.add_argument("plant", help="plant YAML file")
        a.add_argument("alarms", nargs="*" if name == "ack" else "+", metavar="ALARM",
                       help="alarm names" + (" (the last word is the text)"
                                             if name == "comment" else ""))
        a.add_argument("--instance", "-i", default=None)
        a.add_argument("--user", default=None,
                       help="who acts (recorded; default local:<login name>)")
        a.add_argument("--role", default="engineer" if name == "oos" else "operator",
                       choices=("viewer", "operator", "engineer", "admin"),
                       help="the role acted in")
        a.add_argument("--reason", default="", help="why (shelve and oos need one)")
        a.add_argument("--timeout", type=float, default=10.0,
                       help="seconds to wait for the answer (0: do not wait)")
        if name == "ack":
            a.add_argument("--area", default=None, help="every unacknowledged alarm of "
                                                        "this area")
            a.add_argument("--all", action="store_true",
                           help="every unacknowledged visible alarm")
        if name == "shelve":
            a.add_argument("--for", dest="duration", default=None,
                           help="how long: 30min, 2h, 900 (seconds)")
            a.add_argument("--oneshot", action="store_true",
                           help="until the alarm next returns to normal")
        if name == "oos":
            a.add_argument("--return", dest="back", action="store_true",
                           help="return the alarms to service")
        a.set_defaults(func=run_action, op=name)


# ----------------------------------------------------------------------------- helpers
def _alarm_dir(plant: str, instance: str | None) -> tuple[Path, Any, str]:
    from petra.config import load_plant
    from petra.config._alarms import resolve_dir

    try:
        cfg = load_plant(plant).config
    except OSError as exc:
        raise ConfigError(f"cannot read {plant}: {exc.strerror}") from None
    if cfg.alarms is None:
        raise ConfigError("the plant has no alarms: section", file=plant)
    inst = instance or cfg.instance
    return resolve_dir(cfg.alarms, inst, plant), cfg.alarms, inst


def _login() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    sudo = os.environ.get("SUDO_USER")
    return f"local:{user}" + (f"(sudo:{sudo})" if sudo and sudo != user else "")


def _ago(ns: int) -> str:
    if not ns:
        return "-"
    s = max(0.0, time.time() - ns / 1e9)
    if s < 120:
        return f"{s:.0f}s"
    if s < 7200:
        return f"{s / 60:.0f}min"
    if s < 172800:
        return f"{s / 3600:.1f}h"
    return f"{s / 86400:.1f}d"


# ----------------------------------------------------------------------------- commands
def run_manager(args: argparse.Namespace) -> int:
    from petra.alarms import main

    instance = args.instance
    if instance is None:
        from petra.config import load_plant

        instance = str(load_plant(args.plant).config.instance)
    cpus = [int(c) for c in args.cpus.split(",")] if args.cpus else None
    return main(args.plant, instance, cpus, log_level=args.log_level,
                plant_data=args.plant_data)


def run_list(args: argparse.Namespace) -> int:
    from petra.config._alarms import list_file

    base, _, _ = _alarm_dir(args.plant, args.instance)
    try:
        doc = json.loads(list_file(base).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        print(f"no alarm list at {list_file(base)} (is the alarm manager running?)",
              file=sys.stderr)
        return 1
    rows = list(doc.get("alarms", []))
    if args.all:  # the file holds the alarms that are not quietly normal; add the rest
        from petra.config import load_plant
        from petra.config._alarms import effective_definitions

        listed = {r.get("name") for r in rows}
        for d in effective_definitions(load_plant(args.plant).config):
            if d.name not in listed:
                rows.append({"name": d.name, "state": "normal", "priority": d.priority,
                             "area": d.area, "type": d.type, "occurrence": 0,
                             "message": ""})
    else:
        rows = [r for r in rows if r.get("state") != "normal"]
    rows = [r for r in rows if args.area is None or r.get("area") == args.area]
    if args.json:
        json.dump(rows, sys.stdout)
        sys.stdout.write("\n")
        return 0
    keys = ("name", "state", "priority", "area", "since", "occurrence", "message")
    cells = [[str(r.get("name", "")), str(r.get("state", "")), str(r.get("priority", "")),
              str(r.get("area", "")), _ago(int(r.get("since_ns") or 0)),
              str(r.get("occurrence", 0)), str(r.get("message", ""))] for r in rows]
    widths = [max([len(k)] + [len(c[i]) for c in cells]) for i, k in enumerate(keys)]
    print("  ".join(k.upper().ljust(w) for k, w in zip(keys, widths, strict=True)).rstrip())
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip())
    print(f"({len(rows)} of {doc.get('total', len(rows))} alarms)")
    return 0


def run_events(args: argparse.Namespace) -> int:
    from petra.alarms._log import read_events

    base, _, _ = _alarm_dir(args.plant, args.instance)
    events = read_events(base, limit=args.last or None)
    for doc in events:
        doc.pop("put", None)
        if args.json:
            print(json.dumps(doc, separators=(",", ":")))
            continue
        who = f" by {doc['user']}" if doc.get("user") else ""
        what = (f"{doc.get('from_state')} -> {doc.get('to_state')}" if doc.get("event") ==
                "transition" else doc.get("status") or doc.get("op") or "")
        extra = doc.get("reason") or doc.get("error") or doc.get("message") or ""
        print(f"{doc.get('time', '')} #{doc.get('seq')} {doc.get('event')} "
              f"{doc.get('alarm', '')} {what}{who} {extra}".rstrip())
    return 0


def run_status(args: argparse.Namespace) -> int:
    from petra.config._alarms import status_file

    base, _, _ = _alarm_dir(args.plant, args.instance)
    try:
        doc = json.loads(status_file(base).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        print(f"no status at {base} (is the alarm manager running?)", file=sys.stderr)
        return 1
    print(json.dumps(doc, indent=2))
    return 0


def build_request(args: argparse.Namespace, max_age_s: float  # noqa: PLR0912 - per op
                  ) -> dict[str, Any]:
    """The spool request for an action command; UsageError when the words do not say
    what to do."""
    from petra.cli._target import UsageError
    from petra.config._history import parse_seconds

    op = args.op
    body: dict[str, Any] = {"user": args.user or _login(), "role": args.role, "via": "cli",
                            "source": f"local:{os.getpid()}",
                            "expires_ns": time.time_ns() + int(max_age_s * 1e9)}
    names = list(args.alarms)
    if op == "comment":
        if len(names) < 2:
            raise UsageError("comment needs an alarm and a text")
        body["text"] = names.pop()
    if args.reason:
        body["reason"] = args.reason
    if op == "ack":
        if args.all:
            body["all"] = True
        elif args.area is not None:
            body["area"] = args.area
        if sum((bool(names), bool(args.all), args.area is not None)) != 1:
            raise UsageError("ack needs alarm names, --area A or --all (one of them)")
    if op == "shelve":
        if args.duration is None and not args.oneshot:
            raise UsageError("shelve needs --for DURATION or --oneshot")
        if args.duration is not None:
            try:
                body["duration_s"] = parse_seconds(args.duration)
            except ValueError as exc:
                raise UsageError(str(exc)) from None
        body["oneshot"] = bool(args.oneshot)
    if op == "oos":
        op = "return" if args.back else "remove"
    body["op"] = op
    if names:
        body["alarms"] = names
    return body


def run_action(args: argparse.Namespace) -> int:
    from petra.config._alarms import spool_dir
    from petra.io import RequestSpool

    base, cfg, _ = _alarm_dir(args.plant, args.instance)
    body = build_request(args, cfg.request_max_age_s)
    spool = RequestSpool(spool_dir(base))
    try:
        rid = spool.submit(body)
    except OSError as exc:
        raise ConfigError(f"cannot write to the action spool {spool.dir}: "
                          f"{exc.strerror}") from None
    if args.timeout <= 0:
        print(f"queued {rid}")
        return 0
    result = spool.wait(rid, args.timeout)
    if result is None:
        print(f"queued {rid}; no answer within {args.timeout:g} s (is the alarm manager "
              "running?); it is applied when the manager reads it, unless it expires "
              "first", file=sys.stderr)
        return 1
    if not result.get("ok"):
        print(f"refused: {result.get('error', 'unknown reason')}", file=sys.stderr)
        return 1
    done = result.get("done", [])
    print(f"{args.op}: {', '.join(done) if done else 'nothing to do'}")
    for name, why in (result.get("skipped") or {}).items():
        print(f"  skipped {name}: {why}")
    return 0
