"""Scale benchmark: what a plant of N signals and N/10 built-in blocks costs (issue 18).

    python bench/scale.py --json PATH [--sizes 1k,10k,100k] [--reps 3] [--big] [--quick]

For each size N (plants from ``bench/plantgen.py``, 10 % stateful or timed blocks):

- ``check_s_<N>`` / ``check_mib_<N>``: ``petra check -q`` in a fresh interpreter:
  wall time and peak RSS of that child (``wait4``);
- ``start_s_<N>``: ``petra run`` until the scan's first cycle shows in the segment's
  stats (attach by instance name, poll every 20 ms); NaN when it did not start within
  ``--start-timeout`` seconds;
- ``create_ms_<N>`` / ``attach_ms_<N>``: ``Segment.create`` and ``Segment.attach`` of
  the plant's signal table, in this process;
- ``cycle_us_<N>_<idle|1pct>_<full|event>``: p50 of the scan cycle (copy-in, blocks,
  copy-out; the C cycle's own ``exec`` time) through :class:`ScanEngine` in this
  process, full cycle and event mode, with no input changing and with 1 % of the N
  signals (drawn from those no block writes) rewritten with new values before each
  cycle; ``ran_<N>_<...>_event``: blocks run per cycle in event mode;
- ``create_s_1m`` (``--big``): creating the 1M-signal segment.

The acceptance keys of the issue are also written under their own names:
``check_s_100k``, ``start_s_100k``, ``attach_ms_100k``, ``cycle_us_100k_1pct``
(event mode), ``cycle_us_100k_idle`` (event mode), ``create_s_1m``. Every figure is
the median of ``--reps`` runs; the JSON keeps the runs and the machine's load.
Figures are facts about this machine, not test assertions.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, median, print_table, write_json
from plantgen import Plant, plant, write_yaml

from petra.blocks import compile_program
from petra.scan import MonotonicClock, ScanEngine
from petra.shm import Segment, read_stats, unlink_instance

SCHEMA = 1
SIZES = {"1k": 1_000, "10k": 10_000, "100k": 100_000, "1m": 1_000_000}


def run_check(path: Path) -> tuple[float, float]:
    """``petra check -q``: seconds and peak RSS (MiB) of the child."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "petra", "check", "-q", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"petra check {path} failed")
    return seconds, usage.ru_maxrss / 1024


def run_start(path: Path, instance: str, timeout: float, workdir: Path) -> float:
    """``petra run`` to the scan's first cycle, in seconds (NaN past ``timeout``)."""
    unlink_instance(instance)
    env = dict(os.environ, PETRA_STATE_DIR=str(workdir))
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "petra", "run", "--health", "off",
                             "--log-level", "warning", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                            start_new_session=True)
    seg: Segment | None = None
    took = float("nan")
    try:
        while time.perf_counter() - t0 < timeout and proc.poll() is None:
            if seg is None:
                try:
                    seg = Segment.attach(instance, readonly=True)
                except Exception:  # not there yet (or half made): try again
                    time.sleep(0.02)
                    continue
            if read_stats(seg).cycles > 0:
                took = time.perf_counter() - t0
                break
            time.sleep(0.02)
    finally:
        if seg is not None:
            seg.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        unlink_instance(instance)
    return took


def segment_times(p: Plant, instance: str) -> tuple[float, float]:
    """Create and attach of the plant's segment, in ms."""
    unlink_instance(instance)
    t0 = time.perf_counter()
    seg = Segment.create(instance, p.signals)
    t1 = time.perf_counter()
    other = Segment.attach(instance)
    t2 = time.perf_counter()
    other.close()
    seg.close()
    unlink_instance(instance)
    return (t1 - t0) * 1e3, (t2 - t1) * 1e3


def cycle_times(p: Plant, instance: str, cycles: int, period_ns: int,
                rng: np.random.Generator) -> dict[str, tuple[float, float]]:
    """p50 cycle (us) and blocks run per cycle, per mode and load."""
    unlink_instance(instance)
    seg = Segment.create(instance, p.signals, journal_capacity=1 << 18)
    out: dict[str, tuple[float, float]] = {}
    inputs = np.array(p.inputs, np.uint32)
    n_change = max(len(p.signals) // 100, 1)
    try:
        for event in (False, True):
            program = compile_program(p.blocks, len(seg), event=event)
            trace = np.zeros((8 + 2 * cycles, 2), np.int64)  # row k: cycle k (ns)
            engine = ScanEngine(seg, program, period_ns, MonotonicClock(), trace=trace,
                                record_stats=False)
            engine.run(lambda: False, max_cycles=8)  # cold start, priming, pages
            ev = getattr(program, "event", None)
            for load in ("idle", "1pct"):
                ran: list[int] = []
                ex: list[int] = []
                for _ in range(cycles):
                    if load == "1pct":
                        idx = rng.choice(inputs, n_change, replace=False)
                        seg.write_batch_f64(idx, rng.integers(0, 2, n_change).astype(float))
                    done = engine.counters.cycles
                    engine.run(lambda: False, max_cycles=done + 1)
                    ex.append(int(trace[done, 1]))
                    if ev is not None:
                        ran.append(ev.ran)
                key = f"{load}{'_event' if event else ''}"
                out[key] = (float(np.percentile(ex, 50)) / 1e3,
                            float(np.mean(ran)) if ran else float(len(p.blocks)))
    finally:
        seg.close()
        unlink_instance(instance)
    return out


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> int:  # noqa: PLR0912, PLR0915  # a linear script: measure, then report
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", required=True, help="result file")
    ap.add_argument("--sizes", default="1k,10k,100k", help="comma list of 1k,10k,100k,1m")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--cycles", type=int, default=300, help="cycles per cycle figure")
    ap.add_argument("--big", action="store_true", help="also create the 1M segment")
    ap.add_argument("--stateful", type=float, default=0.1, help="share of stateful blocks")
    ap.add_argument("--start-timeout", type=float, default=60.0)
    ap.add_argument("--skip", default="", help="comma list of check,start,segment,cycle")
    ap.add_argument("--quick", action="store_true", help="1k and 10k, 1 rep, 100 cycles")
    args = ap.parse_args()
    if args.quick:
        args.sizes, args.reps, args.cycles = "1k,10k", 1, 100
    skip = set(filter(None, args.skip.split(",")))
    sizes = [s.strip().lower() for s in args.sizes.split(",") if s.strip()]
    workdir = Path(tempfile.mkdtemp(prefix="petra-scale-"))
    rng = np.random.default_rng(18)
    runs: dict[str, list[float]] = {}
    load: list[list[float]] = [_load()]

    def add(key: str, value: float) -> None:
        runs.setdefault(key, []).append(value)

    for name in sizes:
        n = SIZES[name]
        p = plant(n, args.stateful)
        instance = f"scale{name}-{os.getpid()}"
        path = workdir / f"plant{name}.yaml"
        write_yaml(p, path, instance, period_ms=10.0)
        for _ in range(args.reps):
            if "check" not in skip:
                s, mib = run_check(path)
                add(f"check_s_{name}", s)
                add(f"check_mib_{name}", mib)
            if "segment" not in skip:
                c, a = segment_times(p, instance)
                add(f"create_ms_{name}", c)
                add(f"attach_ms_{name}", a)
            if "start" not in skip:
                add(f"start_s_{name}", run_start(path, instance, args.start_timeout, workdir))
            if "cycle" not in skip and n <= 100_000:
                period = 2_000_000 if n <= 100_000 else 20_000_000
                for key, (us, ran) in cycle_times(p, instance, args.cycles, period,
                                                  rng).items():
                    load_name, _, ev = key.partition("_")
                    suffix = "_event" if ev else "_full"
                    add(f"cycle_us_{name}_{load_name}{suffix}", us)
                    if ev:
                        add(f"ran_{name}_{load_name}_event", ran)
            load.append(_load())
    if args.big or "1m" in sizes:
        p = plant(1_000_000, args.stateful)
        for _ in range(args.reps):
            c, a = segment_times(p, f"scale1m-{os.getpid()}")
            add("create_s_1m", c / 1e3)
            add("attach_ms_1m", a)
        load.append(_load())

    result: dict[str, Any] = {k: median(v) for k, v in runs.items()}
    # The acceptance keys: event mode is the one the targets are for.
    for key, src in (("cycle_us_100k_1pct", "cycle_us_100k_1pct_event"),
                     ("cycle_us_100k_idle", "cycle_us_100k_idle_event")):
        if src in result:
            result[key] = result[src]
    rows = []
    for name in sizes:
        if name == "1m":
            continue

        def g(key: str, name: str = name) -> float:
            return float(result.get(key.format(name), float("nan")))

        rows.append([name, g("check_s_{}"), g("check_mib_{}"), g("start_s_{}"),
                     g("create_ms_{}"), g("attach_ms_{}"),
                     g("cycle_us_{}_idle_full"), g("cycle_us_{}_1pct_full"),
                     g("cycle_us_{}_idle_event"), g("cycle_us_{}_1pct_event"),
                     g("ran_{}_1pct_event")])
    print_table(rows, ["N", "check s", "check MiB", "run->cycle s", "create ms", "attach ms",
                       "idle us", "1% us", "idle ev us", "1% ev us", "ran 1% ev"])
    if "create_s_1m" in result:
        print(f"1M: create {result['create_s_1m']:.2f} s, attach {result['attach_ms_1m']:.0f} ms")
    print(f"load average during the run: {load}")
    write_json(args.json, {"schema": SCHEMA, "machine": machine_info(), "load": load,
                           "stateful_share": args.stateful, "reps": args.reps,
                           "cycles": args.cycles, "runs": runs, **result})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
