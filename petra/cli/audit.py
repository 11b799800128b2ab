"""``petra audit verify|show``: check the audit chain, or print records.

``verify`` walks the log and its rotated files as one chain and reports the first
problems: an edited line (its hash no longer matches), a removed, inserted or
reordered line (the chain breaks there), lines cut from the end (the head file says
more was written). Exit status: 0 intact, 1 problems found (or no log), 2 usage.

The log is ``FILE`` if given, else the one the plant names (``--plant``), else the
box's default (``$PETRA_DATA_DIR/audit/audit.log``, ``/var/lib/petra/audit/audit.log``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "audit", help="verify the audit log's hash chain, or show records",
        description="Verify or read the hash-chained audit log.")
    acts = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    v = acts.add_parser("verify", help="check the chain (exit 1 on tampering or truncation)")
    v.add_argument("file", nargs="?", default=None)
    v.add_argument("--plant", default=None)
    v.add_argument("--json", action="store_true")
    s = acts.add_parser("show", help="print records as JSON lines")
    s.add_argument("file", nargs="?", default=None)
    s.add_argument("--plant", default=None)
    s.add_argument("--after", type=int, default=0, help="only records after this seq")
    s.add_argument("--limit", type=int, default=100)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from petra.cli._access import audit_log
    from petra.security import verify_audit

    log = audit_log(args.file, args.plant)
    if args.action == "show":
        for rec in log.read(args.after, args.limit):
            print(json.dumps(rec, sort_keys=True))
        return 0
    report = verify_audit(log.path)
    if args.json:
        print(json.dumps({"ok": report.ok, "files": report.files, "records": report.records,
                          "first_seq": report.first_seq, "last_seq": report.last_seq,
                          "problems": report.problems, "notes": report.notes}, indent=1))
    else:
        for note in report.notes:
            print(f"note: {note}")
        for problem in report.problems:
            print(f"PROBLEM: {problem}", file=sys.stderr)
        if report.ok:
            print(f"{log.path}: intact, {report.records} records (seq {report.first_seq}.."
                  f"{report.last_seq}) in {len(report.files)} file(s)")
    return 0 if report.ok else 1
