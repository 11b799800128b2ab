"""``petra history``: run the history sink, query and plot the Parquet files, show status.

    petra history run PLANT [--instance I]          the sink process (the supervisor's way)
    petra history query PLANT|DIR SIGNAL... [--from T] [--to T] [--agg 1m]
                        [--format table|csv|json]
    petra history plot PLANT|DIR SIGNAL... [--from T] [--to T] [--agg 1m] -o out.png
    petra history status PLANT                      the sink's status file, as JSON

``query`` and ``plot`` read the local Parquet files only (nothing else need run): give
the plant file (its ``history.dir``) or the Parquet directory itself. Heavy imports
stay inside the functions so ``petra --help`` and ``petra check`` stay light.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

from petra.errors import ConfigError


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "history", help="history: run the sink, query or plot recorded samples")
    hs = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    r = hs.add_parser("run", help="run the history sink against a running instance")
    r.add_argument("plant", help="plant YAML file")
    r.add_argument("--instance", "-i", default=None, help="instance (default: the plant's)")
    r.add_argument("--cpus", default=None, help="CPUs to run on, e.g. 1 or 1,2")
    r.add_argument("--log-level", default="info",
                   choices=("debug", "info", "warning", "error"))
    r.add_argument("--plant-data", default=None, help=argparse.SUPPRESS)  # from petra run
    r.set_defaults(func=run_sink)

    for name, helptext in (("query", "print recorded samples"),
                           ("plot", "plot recorded samples to a PNG")):
        q = hs.add_parser(name, help=helptext)
        q.add_argument("source", help="plant YAML file, or the Parquet directory")
        q.add_argument("signals", nargs="*", help="signal names or patterns (default: all)")
        q.add_argument("--from", dest="t_from", default="-1h",
                       help="start: ISO 8601 (UTC if no zone), now, -15min, -2h, -1d, "
                            "epoch s (default -1h)")
        q.add_argument("--to", dest="t_to", default="now", help="end (default now)")
        q.add_argument("--agg", default=None, help="aggregate per interval: 10s, 1m, 1h")
        q.add_argument("--instance", "-i", default=None,
                       help="instance for {instance} in history.dir")
        if name == "query":
            q.add_argument("--format", default="table", choices=("table", "csv", "json"))
            q.add_argument("--limit", type=int, default=0, help="print at most N rows")
            q.set_defaults(func=run_query)
        else:
            q.add_argument("-o", "--output", required=True, help="PNG file to write")
            q.set_defaults(func=run_plot)

    s = hs.add_parser("status", help="the history sink's last status (JSON)")
    s.add_argument("plant", help="plant YAML file")
    s.add_argument("--instance", "-i", default=None)
    s.set_defaults(func=run_status)


def _history_dir(plant: str, instance: str | None) -> tuple[Path, Any]:
    from petra.config import load_plant
    from petra.history import resolve_dir

    try:
        cfg = load_plant(plant).config
    except OSError as exc:
        raise ConfigError(f"cannot read {plant}: {exc.strerror}") from None
    if cfg.history is None:
        raise ConfigError("the plant has no history: section", file=plant)
    return resolve_dir(cfg.history, instance or cfg.instance, plant), cfg.history


def _parquet_dir(source: str, instance: str | None) -> Path:
    path = Path(source)
    if path.is_dir():
        return path
    base, hist = _history_dir(source, instance)
    return base / str(hist.parquet.dir)


def run_sink(args: argparse.Namespace) -> int:
    from petra.history import main

    instance = args.instance
    if instance is None:
        from petra.config import load_plant

        instance = str(load_plant(args.plant).config.instance)
    cpus = [int(c) for c in args.cpus.split(",")] if args.cpus else None
    return main(args.plant, instance, cpus, log_level=args.log_level,
                plant_data=args.plant_data)


def _select(args: argparse.Namespace) -> Any:
    from petra.history._query import aggregate, parse_interval, parse_time, read_samples

    now = time.time_ns()
    try:
        t_from = parse_time(args.t_from, now)
        t_to = parse_time(args.t_to, now)
        agg = parse_interval(args.agg) if args.agg else None
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if t_to <= t_from:
        raise ConfigError(f"--to ({args.t_to}) is not after --from ({args.t_from})")
    try:
        table = read_samples(_parquet_dir(args.source, args.instance), list(args.signals),
                             t_from, t_to)
    except FileNotFoundError as exc:
        raise ConfigError(str(exc)) from None
    return aggregate(table, agg) if agg else table


def run_query(args: argparse.Namespace) -> int:
    from petra.history._query import rows

    table = _select(args)
    if args.limit > 0:
        table = table.slice(0, args.limit)
    keep = ["ts", "signal", "min", "max", "mean", "last", "count"] if args.agg else [
        "ts", "signal", "value", "quality", "substatus"]
    data = rows(table.select(keep))
    if args.format == "json":
        json.dump(data, sys.stdout, indent=None)
        sys.stdout.write("\n")
    elif args.format == "csv":
        w = csv.DictWriter(sys.stdout, fieldnames=keep, lineterminator="\n")
        w.writeheader()
        w.writerows(data)
    else:
        _print_table(keep, data)
    return 0


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return "" if v is None else str(v)


def _print_table(keys: list[str], data: list[dict[str, Any]]) -> None:
    cells = [[_cell(r[k]) for k in keys] for r in data]
    widths = [max([len(k)] + [len(c[i]) for c in cells]) for i, k in enumerate(keys)]
    print("  ".join(k.ljust(w) for k, w in zip(keys, widths, strict=True)).rstrip())
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip())
    print(f"({len(data)} rows)")


def run_plot(args: argparse.Namespace) -> int:
    from petra.history._query import plot

    table = _select(args)
    plot(table, Path(args.output), title=" ".join(args.signals))
    print(f"wrote {args.output} ({table.num_rows} points)")
    return 0


def run_status(args: argparse.Namespace) -> int:
    from petra.history import read_status

    base, _ = _history_dir(args.plant, args.instance)
    doc = read_status(base)
    if doc is None:
        print(f"no status at {base} (is the history sink running?)", file=sys.stderr)
        return 1
    print(json.dumps(doc, indent=2))
    return 0
