"""Start-up at scale: ``petra check`` and ``petra run`` to the first cycle (issue 18).

    python bench/startup.py [--sizes 1000,10000,100000] [--reps 3] [--json PATH]

For each size N a plant of N float signals and N/10 built-in ADD blocks is generated
(9/10 of the signals inputs, 1/10 block outputs, one flow mapping per line, as a
generator writes it). Then, each ``--reps`` times in a fresh interpreter:

- ``petra check -q``: wall time, CPU time (user + system; the machine is shared, so the
  CPU time is the steadier figure) and peak resident memory of that child (``wait4``);
- ``petra run --health off``: wall time from the spawn to the supervisor's
  ``event=plant_ready`` log line (it logs it when the stats block counts the first cycle),
  and how the plant reached the scan (``plant_data_unusable`` means it loaded the file
  again).

The table and the JSON give medians; the JSON keeps every run, the machine and its load
average before and after. Figures are facts about this machine, never test assertions.
JSON keys: ``check_s_<N>``, ``check_cpu_s_<N>``, ``check_mb_<N>``, ``start_s_<N>``.
"""

from __future__ import annotations

import argparse
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, median, print_table, write_json

SCHEMA = 1
START_TIMEOUT_S = 300.0


def write_plant(path: Path, n: int) -> None:
    """N signals, N/10 ADD blocks each reading two inputs and writing one output."""
    nb = n // 10
    nin = n - nb
    with path.open("w") as f:
        f.write(f"instance: startup{n}\nscan:\n  period: 10ms\nsignals:\n")
        for k in range(nin):
            f.write(f"  - {{name: area{k % 100}.in{k}, type: float, unit: m, min: 0, "
                    f"max: 100, writable: true}}\n")
        for j in range(nb):
            f.write(f"  - {{name: area{j % 100}.out{j}, type: float}}\n")
        f.write("blocks:\n")
        for j in range(nb):
            a, b = (2 * j) % nin, (2 * j + 1) % nin
            f.write(f"  - {{name: b{j}, type: ADD, inputs: {{in1: area{a % 100}.in{a}, "
                    f"in2: area{b % 100}.in{b}}}, outputs: {{out: area{j % 100}.out{j}}}}}\n")


def run_check(path: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "petra", "check", "-q", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    return {"seconds": time.perf_counter() - t0,
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_mb": usage.ru_maxrss / 1024,
            "exit": os.waitstatus_to_exitcode(status),
            "stderr": err.decode(errors="replace")[:200]}


def run_start(path: Path, instance: str, runtime: Path) -> dict[str, Any]:
    env = {**os.environ, "PETRA_RUNTIME_DIR": str(runtime)}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "petra", "run", str(path), "--instance", instance,
         "--health", "off", "--log-level", "info"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    assert proc.stderr is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stderr, selectors.EVENT_READ)
    buf = b""
    ready_s: float | None = None
    deadline = t0 + START_TIMEOUT_S
    try:
        while ready_s is None and time.perf_counter() < deadline and proc.poll() is None:
            if not sel.select(timeout=0.5):
                continue
            chunk = os.read(proc.stderr.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
            if b"event=plant_ready" in buf:
                ready_s = time.perf_counter() - t0
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            rest, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            rest, _ = proc.communicate()
        buf += rest or b""
    log = buf.decode(errors="replace")
    return {"seconds": ready_s, "handed_over": "plant_data_unusable" not in log,
            "hung_kills": log.count("event=child_hung"), "exit": proc.returncode}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", default="startup.json", help="result file")
    ap.add_argument("--no-run", action="store_true", help="only petra check")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    load_before = os.getloadavg()
    out: dict[str, Any] = {"schema": SCHEMA, "machine": machine_info(),
                           "load_avg_before": load_before, "reps": args.reps, "sizes": {}}
    rows = []
    with tempfile.TemporaryDirectory(prefix="petra-startup-bench-") as tmp:
        for n in sizes:
            plant = Path(tmp) / f"plant{n}.yaml"
            write_plant(plant, n)
            checks = [run_check(plant) for _ in range(args.reps)]
            starts = [] if args.no_run else [
                run_start(plant, f"startup{n}-{os.getpid()}", Path(tmp))
                for _ in range(args.reps)]
            ok_starts = [s["seconds"] for s in starts if s["seconds"] is not None]
            res = {"checks": checks, "starts": starts,
                   "check_s": median(c["seconds"] for c in checks),
                   "check_cpu_s": median(c["cpu_s"] for c in checks),
                   "check_mb": median(c["peak_mb"] for c in checks),
                   "start_s": median(ok_starts) if len(ok_starts) == len(starts) and starts
                   else None}
            out["sizes"][str(n)] = res
            out[f"check_s_{n}"] = res["check_s"]
            out[f"check_cpu_s_{n}"] = res["check_cpu_s"]
            out[f"check_mb_{n}"] = res["check_mb"]
            out[f"start_s_{n}"] = res["start_s"]
            rows.append([n, res["check_s"], res["check_cpu_s"], res["check_mb"],
                         res["start_s"] if res["start_s"] is not None else "never",
                         all(s["handed_over"] for s in starts) if starts else "-"])
    out["load_avg_after"] = os.getloadavg()
    print_table(rows, ["signals", "check s", "check cpu s", "check MB", "run to 1st cycle s",
                       "handed over"])
    write_json(args.json, out)
    print(f"\nmedians of {args.reps} runs; load average before {load_before[0]:.1f}, after "
          f"{out['load_avg_after'][0]:.1f}; JSON in {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
