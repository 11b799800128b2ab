"""Shared helpers for the scripts in ``bench/``: machine facts, medians, a plain table and
the JSON file every bench writes. Other benches import this; keep its four functions'
signatures stable."""

from __future__ import annotations

import json
import os
import platform
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any


def machine_info() -> dict[str, Any]:
    """What the figures were measured on: CPU count and model, kernel, Python, numpy."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import numpy  # optional for benches that do not use it

        np_version = numpy.__version__
    except ImportError:  # pragma: no cover
        np_version = ""
    return {
        "cpu_count": os.cpu_count() or 0,
        "cpu_model": model,
        "kernel": platform.release(),
        "system": platform.system(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "numpy": np_version,
    }


def median(xs: Iterable[float]) -> float:
    """Median of the repetitions (the figure a bench reports)."""
    values = list(xs)
    return float(statistics.median(values)) if values else float("nan")


def _fmt(v: object) -> str:
    if isinstance(v, float):
        if v != v:  # noqa: PLR0124  # NaN
            return "-"
        if abs(v) >= 1e6:
            return f"{v / 1e6:,.2f} M"
        if abs(v) >= 1e3:
            return f"{v / 1e3:,.1f} k"
        return f"{v:.3g}"
    return str(v)


def print_table(rows: Sequence[Sequence[object]], headers: Sequence[str]) -> None:
    """Print rows as an aligned text table (floats shortened to k/M)."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(row, widths, strict=True))))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON (atomically: temp file then rename)."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    tmp.replace(p)
