"""Benchmark of the config loader on hostile and on large honest plant files.

    python bench/config_load.py [--reps 3] [--json PATH] [--keep DIR]

Each case runs ``petra check FILE`` in a fresh interpreter and measures its wall time
and peak resident memory (``ru_maxrss`` of that child alone, from ``wait4``), so the
figures include the interpreter and its imports (printed as the ``baseline`` row:
``petra check`` on a two-line plant). The table and the JSON report medians of
``--reps`` runs; the JSON keeps every run. The hostile cases are those of issue 11: an
alias bomb (9 levels of 9 aliases), a 50 MB file, ``/dev/zero``; then the worst the
bounds still let through (a file just under the size limit made of one-character
values, a file of the maximum nesting depth) and honest large plants, for scale.

Figures are facts about this machine, not assertions: the tests in
``tests/unit/test_config_limits.py`` check only that each case ends with its error.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, median, print_table, write_json

from petra.config._yaml import MAX_DEPTH, MAX_FILE_BYTES

SCHEMA = 1


def alias_bomb(path: Path) -> None:
    lines = ["instance: bomb", 'a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    lines.append("api: {x: *a8}")
    path.write_text("\n".join(lines) + "\n")


def fifty_mb(path: Path) -> None:
    row = "  - {name: s%07d, type: float, unit: m, description: padding padding padding}\n"
    with path.open("w") as f:
        f.write("instance: big\nsignals:\n")
        n = 0
        while f.tell() < 50 * 1024 * 1024:
            f.write(row % n)
            n += 1


def under_limit_small_values(path: Path) -> None:
    """The most values per byte a file under the size limit can hold: ``[0,0,0,...]``."""
    n = (MAX_FILE_BYTES - 100) // 2
    with path.open("w") as f:
        f.write("instance: dense\napi: {x: [")
        f.write("0," * n)
        f.write("0]}\n")


def max_depth(path: Path) -> None:
    d = MAX_DEPTH - 2
    path.write_text("instance: deep\napi: " + "{a: " * d + "1" + "}" * d + "\n")


def plant(n_signals: int) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        with path.open("w") as f:
            f.write(f"instance: plant{n_signals}\nsignals:\n")
            for k in range(n_signals):
                f.write(f"  - {{name: area{k % 100}.sig{k}, type: float, unit: m, "
                        f"min: 0, max: 100}}\n")
    return make


def baseline(path: Path) -> None:
    path.write_text("instance: base\nsignals: [{name: a, type: bool}]\n")


CASES: list[tuple[str, Callable[[Path], None] | None]] = [
    ("baseline", baseline),
    ("alias bomb 9^9", alias_bomb),
    ("50 MB file", fifty_mb),
    ("/dev/zero", None),
    ("16 MiB of [0,0,...]", under_limit_small_values),
    (f"nesting depth {MAX_DEPTH - 1}", max_depth),
    ("plant 10k signals", plant(10_000)),
    ("plant 100k signals", plant(100_000)),
]


def run_check(path: str) -> dict[str, Any]:
    """One ``petra check`` in a child: seconds, peak RSS in MB, exit status, first line."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "petra", "check", "-q", path],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    first = err.decode(errors="replace").splitlines()[:1]
    return {"seconds": seconds, "peak_mb": usage.ru_maxrss / 1024, "exit": proc.returncode,
            "message": first[0][:110] if first else ""}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", default="config_load.json", help="result file")
    ap.add_argument("--keep", default=None, help="write the generated files here")
    args = ap.parse_args()
    workdir = Path(args.keep or tempfile.mkdtemp(prefix="petra-config-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    rows = []
    for name, make in CASES:
        if make is None:
            path = name
        else:
            file = workdir / (name.replace(" ", "_").replace("/", "") + ".yaml")
            make(file)
            path = str(file)
        runs = [run_check(path) for _ in range(args.reps)]
        size = os.stat(path).st_size if make is not None else 0
        results[name] = {"file_bytes": size, "runs": runs,
                         "seconds": median(r["seconds"] for r in runs),
                         "peak_mb": median(r["peak_mb"] for r in runs)}
        rows.append([name, f"{size / 1e6:.1f}", results[name]["seconds"],
                     results[name]["peak_mb"], runs[-1]["exit"], runs[-1]["message"][:60]])
        if make is not None and args.keep is None:
            Path(path).unlink()
    if args.keep is None:
        workdir.rmdir()
    print_table(rows, ["case", "MB", "seconds", "peak MB", "exit", "first line of stderr"])
    write_json(args.json, {"schema": SCHEMA, "machine": machine_info(),
                           "load_avg": os.getloadavg(), "reps": args.reps, "cases": results})
    print(f"\nmedians of {args.reps} runs; JSON in {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
