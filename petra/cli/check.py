"""``petra check PLANT.yaml``: validate a plant file and summarise it.

Exit status (an interface scripts rely on): 0 the plant is valid (warnings allowed),
1 it is invalid (every error on stderr, one per line, ``FILE:LINE:COL: key.path: message``),
2 usage error (bad arguments, the file cannot be read).

``--json`` prints one JSON object on stdout instead of the summary (errors still go to
stderr too): ``{"schema": 1, "file", "valid", "errors": [...], "warnings": [...],
"summary": {...} | null}``; each error is ``{file, line, column, key_path, message}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from typing import TYPE_CHECKING, Any

from petra.errors import ConfigError

if TYPE_CHECKING:  # imported when used: every petra subcommand imports this module
    from petra.config import Plant

JSON_SCHEMA_VERSION = 1


def register(sub: Any) -> None:
    """Add ``check`` to the ``petra`` subcommands."""
    p = sub.add_parser("check", help="validate a plant file",
                       description="Validate a plant file: exit 0 valid, 1 invalid, 2 usage.")
    p.add_argument("plant", help="plant YAML file")
    p.add_argument("--json", action="store_true", help="machine-readable result on stdout")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no summary; only errors (and warnings unless --no-warnings)")
    p.add_argument("--no-warnings", action="store_true", help="do not print warnings")
    p.set_defaults(func=run)


def _error_dict(e: ConfigError) -> dict[str, Any]:
    return {"file": e.file, "line": e.line, "column": e.column, "key_path": e.key_path,
            "message": e.message}


def _warning_line(e: ConfigError) -> str:
    where = e.file
    if e.line is not None:
        where += f":{e.line}" + (f":{e.column}" if e.column is not None else "")
    key = f" {e.key_path}:" if e.key_path else ""
    return f"{where}:{key} warning: {e.message}"


def summary(plant: Plant, *, source_hash: bool = True) -> dict[str, Any]:
    """Counts, scan settings and execution order of a valid plant (the JSON summary).
    ``source_hash`` false leaves the hash out (it dumps the whole model: a second at
    100k signals, for a line nobody prints)."""
    from petra.config import format_duration

    cfg = plant.config
    sc = cfg.scan
    return {
        "instance": cfg.instance,
        "scan": {"period": format_duration(sc.period_ns), "period_ns": sc.period_ns,
                 "policy": sc.policy, "priority": sc.fifo_priority, "wait": sc.wait,
                 "cpu": sc.cpu, "rt": sc.rt},
        "signals": dict(Counter(s.type for s in cfg.signals)),
        "signal_count": len(cfg.signals),
        "blocks": dict(Counter(b.type for b in cfg.blocks)),
        "block_count": len(cfg.blocks),
        "drivers": dict(Counter(str(getattr(d, "kind", "?")) for d in cfg.drivers)),
        "driver_count": len(cfg.drivers),
        "order": list(plant.order),
        **({"source_hash": plant.source_hash} if source_hash else {}),
    }


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def _print_summary(path: str, s: dict[str, Any], n_warnings: int) -> None:
    sc = s["scan"]
    policy = sc["policy"] + (f" {sc['priority']}" if sc["priority"] is not None else "")
    cpu = f", cpu {sc['cpu']}" if sc["cpu"] is not None else ""
    print(f"{path}: valid plant {s['instance']!r}")
    print(f"  scan: period {sc['period']}, policy {policy}, wait {sc['wait']}{cpu}"
          + (", rt" if sc["rt"] else ""))
    print(f"  signals: {s['signal_count']}"
          + (f" ({_counts(s['signals'])})" if s["signals"] else ""))
    print(f"  blocks: {s['block_count']}"
          + (f" ({_counts(s['blocks'])})" if s["blocks"] else ""))
    print(f"  drivers: {s['driver_count']}"
          + (f" ({_counts(s['drivers'])})" if s["drivers"] else ""))
    print(f"  execution order: {', '.join(s['order']) if s['order'] else '(no blocks)'}")
    print(f"  warnings: {n_warnings}")


def run(args: argparse.Namespace) -> int:
    """Validate ``args.plant``; the exit status is the result."""
    from petra.config import ConfigErrors, load_plant

    path: str = args.plant
    try:
        plant = load_plant(path)
    except OSError as exc:
        print(f"petra check: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except ConfigErrors as exc:
        for e in exc.errors:
            print(e.format(), file=sys.stderr)
        # stderr holds errors only, one per line (scripts count and parse them); the
        # warnings of an invalid file are in the JSON result.
        if args.json:
            print(json.dumps({"schema": JSON_SCHEMA_VERSION, "file": path, "valid": False,
                              "errors": [_error_dict(e) for e in exc.errors],
                              "warnings": [_error_dict(w) for w in exc.warnings],
                              "summary": None}, indent=2))
        return 1
    if args.json:
        print(json.dumps({"schema": JSON_SCHEMA_VERSION, "file": path, "valid": True,
                          "errors": [], "warnings": [_error_dict(w) for w in plant.warnings],
                          "summary": summary(plant)}, indent=2))
        return 0
    if not args.no_warnings:
        for w in plant.warnings:
            print(_warning_line(w), file=sys.stderr)
    if not args.quiet:
        _print_summary(path, summary(plant, source_hash=False), len(plant.warnings))
    return 0
