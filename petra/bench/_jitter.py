"""``petra-bench jitter``: can this box hold the scan period? Measured, not guessed.

It runs the real scan loop (:class:`petra.scan.ScanEngine`, the code path of the scan
process) against a private segment with a synthetic block load, optionally under a
stress load on the other CPUs, records every cycle's wake-up latency, and reports
the distribution the way cyclictest does. When ``cyclictest`` is installed it runs
with the same period, policy, priority and CPU in the same invocation, so the two
are compared on the same machine in the same minute; the ratio is Petra's p99.9 over
cyclictest's.

Never read one run as the truth on a VM: the host injects rare multi-millisecond
stalls (steal time) into every process, cyclictest included. Compare percentiles,
run several times, look at the worst cycles' numbers to see whether they cluster.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import platform
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from petra.errors import PetraError

SCHEMA_VERSION = 1
PERCENTILES = (50.0, 90.0, 99.0, 99.9, 99.99)
HIST_LIMIT_US = 1000
CYCLICTEST_HIST_US = 20000  # wide enough that the VM's multi-ms stalls stay countable

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ns|us|ms|s|m)?\s*$")
_UNITS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000}


def parse_duration_ns(text: str, default_unit: str = "ms") -> int:
    """``"1ms"``, ``"500us"``, ``"60s"``, ``"2m"``; a bare number is ``default_unit``."""
    m = _DURATION.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (try 1ms, 500us, 60s)")
    value = float(m.group(1)) * _UNITS[m.group(2) or default_unit]
    if value <= 0:
        raise argparse.ArgumentTypeError(f"duration must be positive: {text!r}")
    return int(value)


@dataclass(frozen=True, slots=True)
class JitterSettings:
    period_ns: int = 1_000_000
    duration_ns: int = 10_000_000_000
    cpu: int | None = None
    policy: str = "other"
    priority: int = 80
    wait: str = "sleep"            # sleep | hybrid
    spin_ns: int = 200_000
    blocks: int = 100
    signals: int = 1000
    load: str | None = None        # cpu | mem | io
    cyclictest: bool = True


def distribution(lat_ns: npt.NDArray[np.int64]) -> dict[str, Any]:
    """min/avg/max and percentiles (us) of a latency sample."""
    if len(lat_ns) == 0:
        return {"samples": 0}
    us = lat_ns.astype(np.float64) / 1e3
    out: dict[str, Any] = {
        "samples": len(us),
        "min_us": float(us.min()),
        "avg_us": float(us.mean()),
        "max_us": float(us.max()),
    }
    for p in PERCENTILES:
        out[_pkey(p)] = float(np.percentile(us, p))
    return out


def _pkey(p: float) -> str:
    return "p" + f"{p:g}".replace(".", "")


def histogram(lat_ns: npt.NDArray[np.int64], limit_us: int = HIST_LIMIT_US) -> dict[str, Any]:
    """1-us buckets up to ``limit_us`` and an overflow count (cyclictest's -h)."""
    us = lat_ns // 1000
    counts = np.bincount(np.clip(us, 0, limit_us), minlength=limit_us + 1)
    buckets = {int(k): int(v) for k, v in enumerate(counts[:limit_us]) if v}
    return {"bucket_us": 1, "limit_us": limit_us, "buckets": buckets,
            "overflow": int(counts[limit_us])}


def worst_cycles(lat_ns: npt.NDArray[np.int64], n: int = 10) -> list[dict[str, float]]:
    idx = np.argsort(lat_ns)[::-1][:n]
    return [{"cycle": int(i), "latency_us": float(lat_ns[i]) / 1e3} for i in sorted(idx)]


# --------------------------------------------------------------------------- load
def _load_worker(kind: str, stop_at: float, cpu: int | None) -> None:
    if cpu is not None:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {cpu})
    if kind == "cpu":
        x = 0
        while time.monotonic() < stop_at:
            for _ in range(100_000):
                x += 1
    elif kind == "mem":
        a = np.ones(32 << 20, np.uint8)
        b = np.empty_like(a)
        while time.monotonic() < stop_at:
            np.copyto(b, a)
    elif kind == "io":
        with tempfile.TemporaryFile() as f:
            block = os.urandom(1 << 20)
            while time.monotonic() < stop_at:
                f.seek(0)
                for _ in range(8):
                    f.write(block)
                f.flush()
                os.fsync(f.fileno())


def start_load(kind: str | None, scan_cpu: int | None, seconds: float) -> list[Any]:
    """One load process per CPU other than the scan's (all CPUs when not pinned)."""
    if kind is None:
        return []
    if kind not in ("cpu", "mem", "io"):
        raise PetraError(f"--load must be cpu, mem or io, not {kind!r}")
    cpus = sorted(os.sched_getaffinity(0) - ({scan_cpu} if scan_cpu is not None else set()))
    ctx = mp.get_context("fork")
    stop_at = time.monotonic() + seconds
    targets: list[int | None] = list(cpus) if cpus else [None]
    procs = [ctx.Process(target=_load_worker, args=(kind, stop_at, c), daemon=True)
             for c in targets]
    for p in procs:
        p.start()
    return procs


def stop_load(procs: list[Any]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        p.join(timeout=5)


# --------------------------------------------------------------------------- petra
def synthetic_program(n_signals: int, n_blocks: int) -> Any:
    """A block load of built-ins that reads and writes real signals every cycle."""
    from petra.blocks import BlockInstance, Const, compile_program

    instances = []
    for i in range(n_blocks):
        a, b = (2 * i) % n_signals, (2 * i + 1) % n_signals
        out = (n_signals // 2 + i) % n_signals
        kind = ("ADD", "MUL", "MAX", "SUB")[i % 4]
        instances.append(BlockInstance(f"b{i}", kind, {"in1": a, "in2": Const(1.0) if i % 3
                                                       else b}, {"out": out}, {}))
    return compile_program(instances, n_signals)


def run_petra(settings: JitterSettings) -> dict[str, Any]:
    """Measure the scan loop; returns the distribution, histogram and counters."""
    from petra.scan import MonotonicClock, RtSettings, ScanEngine, apply
    from petra.shm import Segment, SignalDef, SignalType

    instance = f"bench-{os.getpid()}"
    signals = [SignalDef(f"s{i}", SignalType.FLOAT) for i in range(settings.signals)]
    seg = Segment.create(instance, signals, journal_capacity=1 << 16)
    try:
        program = synthetic_program(settings.signals, settings.blocks)
        n = max(1, int(settings.duration_ns // settings.period_ns))
        trace = np.zeros((n, 2), np.int64)
        spin = settings.spin_ns if settings.wait == "hybrid" else 0
        engine = ScanEngine(seg, program, settings.period_ns, MonotonicClock(spin_ns=spin),
                            trace=trace)
        rt = apply(RtSettings(cpu=settings.cpu, policy=settings.policy,
                              priority=settings.priority, require=settings.policy == "fifo"))
        try:
            counters = engine.run(lambda: False, max_cycles=n)
        finally:
            rt.release()
            if settings.policy == "fifo":
                os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        lat = trace[: counters.cycles, 0]
        exe = trace[: counters.cycles, 1]
        return {
            "wake": distribution(lat),
            "exec": distribution(exe),
            "histogram": histogram(lat),
            "worst": worst_cycles(lat),
            "cycles": counters.cycles,
            "overruns": counters.overruns,
            "skipped": counters.skipped,
            "rt": {"cpu": rt.cpu, "fifo": rt.fifo, "mlocked": rt.mlocked,
                   "dma_latency_held": rt.dma_fd >= 0, "notes": rt.notes},
            "_trace": trace[: counters.cycles],
        }
    finally:
        seg.close()
        seg.unlink()


# --------------------------------------------------------------------------- cyclictest
def run_cyclictest(settings: JitterSettings) -> dict[str, Any] | None:
    """Run cyclictest with the same settings; None when it is not installed."""
    exe = shutil.which("cyclictest")
    if exe is None or not settings.cyclictest:
        return None
    seconds = max(1, round(settings.duration_ns / 1e9))
    argv = [exe, "-q", "-m", "-t1", f"-i{settings.period_ns // 1000}", f"-D{seconds}s",
            f"-h{CYCLICTEST_HIST_US}"]
    if settings.policy == "fifo":
        argv += [f"-p{settings.priority}", "--policy=fifo"]
    else:
        argv += ["-p0", "--policy=other"]
    if settings.cpu is not None:
        argv += [f"-a{settings.cpu}"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30,
                          check=False)
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout).strip()[:500], "argv": argv}
    return {"argv": argv, **parse_cyclictest(proc.stdout)}


def parse_cyclictest(text: str) -> dict[str, Any]:
    """Percentiles from cyclictest's -h histogram (1-us buckets, one thread)."""
    counts: dict[int, int] = {}
    overflow = 0
    maximum = minimum = average = None
    for line in text.splitlines():
        m = re.match(r"^(\d{6})\s+(\d+)", line)
        if m:
            counts[int(m.group(1))] = int(m.group(2))
            continue
        if line.startswith("# Histogram Overflows:"):
            overflow = int(line.split(":")[1].split()[0])
        elif line.startswith("# Max Latencies:"):
            maximum = int(line.split(":")[1].split()[0])
        elif line.startswith("# Min Latencies:"):
            minimum = int(line.split(":")[1].split()[0])
        elif line.startswith("# Avg Latencies:"):
            average = int(line.split(":")[1].split()[0])
    total = sum(counts.values()) + overflow
    out: dict[str, Any] = {"samples": total, "overflow": overflow,
                           "histogram": {"bucket_us": 1, "buckets": {
                               k: v for k, v in sorted(counts.items()) if v},
                               "overflow": overflow},
                           "min_us": float(minimum) if minimum is not None else None,
                           "avg_us": float(average) if average is not None else None,
                           "max_us": float(maximum) if maximum is not None else None}
    if total == 0:
        return out
    keys = sorted(counts)
    for p in PERCENTILES:
        rank = p / 100 * total
        acc = 0
        val: float | None = None  # in the overflow bucket: unknown beyond the limit
        for k in keys:
            acc += counts[k]
            if acc >= rank:
                val = float(k)
                break
        out[_pkey(p)] = val
    return out


# --------------------------------------------------------------------------- report
def measure(settings: JitterSettings) -> dict[str, Any]:
    load = start_load(settings.load, settings.cpu,
                      2 * settings.duration_ns / 1e9 + 60 if settings.cyclictest else
                      settings.duration_ns / 1e9 + 30)
    try:
        petra = run_petra(settings)
        cyc = run_cyclictest(settings)
    finally:
        stop_load(load)
    trace = petra.pop("_trace")
    result: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "tool": "petra-bench jitter",
        "settings": {"period_us": settings.period_ns / 1e3,
                     "duration_s": settings.duration_ns / 1e9, "cpu": settings.cpu,
                     "policy": settings.policy, "priority": settings.priority,
                     "wait": settings.wait, "spin_us": settings.spin_ns / 1e3,
                     "blocks": settings.blocks, "signals": settings.signals,
                     "load": settings.load},
        "machine": {"cpus": os.cpu_count(), "kernel": platform.release(),
                    "version": platform.version()},
        **petra,
    }
    if cyc is not None:
        result["cyclictest"] = cyc
        p999 = cyc.get("p999")
        if isinstance(p999, float) and "p999" in petra["wake"]:
            result["cyclictest"]["ratio_p999"] = petra["wake"]["p999"] / max(p999, 1.0)
    result["_trace"] = trace
    return result


def format_table(result: dict[str, Any]) -> str:
    s = result["settings"]
    lines = [f"petra-bench jitter: period {s['period_us']:g} us, {s['duration_s']:g} s, "
             f"policy {s['policy']}, cpu {s['cpu']}, wait {s['wait']}, load {s['load']}, "
             f"{s['blocks']} blocks"]
    cols = ["min_us", "avg_us", "p50", "p90", "p99", "p999", "p9999", "max_us"]
    head = f"{'':14}" + "".join(f"{c.replace('_us', ''):>10}" for c in cols)
    lines.append(head)

    def row(name: str, d: dict[str, Any]) -> str:
        cells = []
        for c in cols:
            v = d.get(c)
            cells.append(f"{v:>10.1f}" if isinstance(v, int | float) and v is not None
                         else f"{'-':>10}")
        return f"{name:14}" + "".join(cells)

    lines.append(row("petra wake us", result["wake"]))
    if "cyclictest" in result and "error" not in result["cyclictest"]:
        lines.append(row("cyclictest us", result["cyclictest"]))
        ratio = result["cyclictest"].get("ratio_p999")
        if ratio is not None:
            lines.append(f"p99.9 ratio petra/cyclictest: {ratio:.2f}")
    elif "cyclictest" in result:
        lines.append(f"cyclictest failed: {result['cyclictest']['error']}")
    else:
        lines.append("cyclictest: not installed (apt-get install rt-tests) - no comparison")
    lines.append(row("petra exec us", result["exec"]))
    lines.append(f"cycles {result['cycles']}  overruns {result['overruns']}  "
                 f"skipped {result['skipped']}  histogram overflow (>{HIST_LIMIT_US} us) "
                 f"{result['histogram']['overflow']}")
    worst = ", ".join(f"#{w['cycle']}:{w['latency_us']:.0f}us" for w in result["worst"][:5])
    lines.append(f"worst cycles: {worst}")
    if result["rt"]["notes"]:
        lines.append("real-time notes: " + "; ".join(result["rt"]["notes"]))
    return "\n".join(lines)


def plot_hint() -> str:
    """How to get matplotlib: from the checkout when petra runs from one (an index
    install of ``petra[plot]`` would fetch another petra), else from the index."""
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file() and (root / "petra").is_dir():
        return f"cd {root} && .venv/bin/pip install -e '.[plot]'"
    return "pip install 'petra[plot]'"


def require_matplotlib() -> None:
    """Fail before measuring, not after a minute of it, when --plot cannot work."""
    try:
        import matplotlib  # noqa: F401  # the check is the import
    except ImportError:
        raise PetraError(f"--plot needs matplotlib, which is not installed: "
                         f"{plot_hint()}") from None


def _marks(ax: Any, d: dict[str, Any], period_us: float, *, vertical: bool) -> None:
    """The period and the p99/p99.9 of one distribution as lines across ``ax``."""
    line = ax.axvline if vertical else ax.axhline
    line(period_us, color="black", linewidth=1.0, label=f"period {period_us:g} us")
    for key, label, style in (("p99", "p99", "--"), ("p999", "p99.9", ":")):
        v = d.get(key)
        if isinstance(v, int | float):
            line(v, color="tab:red", linestyle=style, linewidth=1.0,
                 label=f"{label} {v:.1f} us")


def _bars(ax: Any, buckets: dict[Any, int], overflow: int, xmax: float, color: str) -> None:
    """A 1-us histogram drawn up to ``xmax``; what lies beyond goes in the last bar."""
    xs = np.array([int(k) for k in buckets], dtype=np.int64)
    ns = np.array([int(v) for v in buckets.values()], dtype=np.int64)
    beyond = int(ns[xs >= xmax].sum()) + overflow if len(xs) else overflow
    keep = xs < xmax
    width = max(1.0, xmax / 200)
    edges = np.arange(0.0, xmax + width, width)
    counts, _ = np.histogram(xs[keep], bins=edges, weights=ns[keep])
    if beyond:
        counts[-1] += beyond
    ax.bar(edges[:-1], np.maximum(counts, 0), width=width, align="edge", color=color,
           log=True)


def _cyclictest_panel(ax: Any, cyc: dict[str, Any], period: float, xmax: float) -> None:
    if "histogram" in cyc:
        _bars(ax, cyc["histogram"]["buckets"], int(cyc["histogram"]["overflow"]), xmax,
              "tab:green")
        _marks(ax, cyc, period, vertical=True)
        ax.set_title(f"cyclictest, same settings: {cyc.get('samples', 0)} cycles")
        ax.legend(fontsize="small")
    else:
        why = cyc.get("error") or "not installed (apt-get install rt-tests)"
        ax.text(0.5, 0.5, f"cyclictest: {why}"[:120], ha="center", va="center",
                transform=ax.transAxes, wrap=True)
        ax.set_title("cyclictest")
    ax.set_xlabel("wake-up latency (us)")


def plot(result: dict[str, Any], path: Path) -> None:
    """Petra beside cyclictest: both wake-up histograms on one latency axis, each with
    the period and its p99/p99.9 marked, and Petra's per-cycle latency below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    period = float(result["settings"]["period_us"])
    wake = result["wake"]
    cyc = result.get("cyclictest") or {}
    has_cyc = "histogram" in cyc
    tops = [period, *(d.get(k) for d in (wake, cyc) for k in ("p999", "p99"))]
    xmax = min(CYCLICTEST_HIST_US, 1.3 * max(float(v) for v in tops if isinstance(
        v, int | float)))
    fig = plt.figure(figsize=(12, 8))
    grid = fig.add_gridspec(2, 2, height_ratios=(1, 1))
    left = fig.add_subplot(grid[0, 0])
    right = fig.add_subplot(grid[0, 1], sharex=left, sharey=left)
    below = fig.add_subplot(grid[1, :])
    hist = result["histogram"]
    trace = result["_trace"]
    lat_us = trace[:, 0] / 1e3
    # Petra's own histogram stops at HIST_LIMIT_US; the trace has every cycle.
    us = (trace[:, 0] // 1000).astype(np.int64)
    vals, counts = np.unique(us, return_counts=True)
    _bars(left, dict(zip(vals.tolist(), counts.tolist(), strict=True)), 0, xmax, "tab:blue")
    _marks(left, wake, period, vertical=True)
    left.set_title(f"petra scan: {wake.get('samples', 0)} cycles, "
                   f"{hist['overflow']} beyond {HIST_LIMIT_US} us")
    left.set_xlabel("wake-up latency (us); the last bar holds everything beyond")
    left.set_ylabel("cycles")
    left.legend(fontsize="small")
    _cyclictest_panel(right, cyc, period, xmax)
    below.plot(np.arange(len(lat_us)), np.maximum(lat_us, 0.01), linewidth=0.4,
               color="tab:blue", label="petra, per cycle")
    _marks(below, wake, period, vertical=False)
    if has_cyc:
        for key, label in (("p99", "cyclictest p99"), ("p999", "cyclictest p99.9")):
            v = cyc.get(key)
            if isinstance(v, int | float):
                below.axhline(v, color="tab:green", linestyle="--" if key == "p99" else ":",
                              linewidth=1.0, label=f"{label} {v:.1f} us")
    below.set_yscale("log")
    below.set_xlabel("cycle")
    below.set_ylabel("wake-up latency (us)")
    below.legend(fontsize="small", loc="upper right")
    s = result["settings"]
    fig.suptitle(f"petra-bench jitter: period {period:g} us, {s['duration_s']:g} s, "
                 f"policy {s['policy']}, cpu {s['cpu']}, wait {s['wait']}, load {s['load']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "jitter", help="measure scan wake-up latency (and cyclictest alongside)")
    p.add_argument("--period", type=parse_duration_ns, default=1_000_000, help="e.g. 1ms")
    p.add_argument("--duration", type=lambda t: parse_duration_ns(t, "s"),
                   default=10_000_000_000, help="e.g. 60s")
    p.add_argument("--cpu", type=int, default=None)
    p.add_argument("--policy", choices=("fifo", "other"), default="other")
    p.add_argument("--priority", type=int, default=80)
    p.add_argument("--wait", choices=("sleep", "hybrid"), default="sleep")
    p.add_argument("--spin", type=lambda t: parse_duration_ns(t, "us"), default=200_000)
    p.add_argument("--blocks", type=int, default=100)
    p.add_argument("--signals", type=int, default=1000)
    p.add_argument("--load", choices=("cpu", "mem", "io"), default=None)
    p.add_argument("--no-cyclictest", action="store_true")
    p.add_argument("--json", type=Path, default=None,
                   help="write the result here (with --plot alone: beside the PNG)")
    p.add_argument("--plot", type=Path, default=None,
                   help="write a PNG here: petra beside cyclictest, period and p99/p99.9 "
                        "marked (needs matplotlib, checked before measuring)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.spin >= args.period and args.wait == "hybrid":
        raise PetraError("--spin must be shorter than --period")
    if args.signals < 2:
        raise PetraError("--signals must be at least 2")
    settings = JitterSettings(period_ns=args.period, duration_ns=args.duration, cpu=args.cpu,
                              policy=args.policy, priority=args.priority, wait=args.wait,
                              spin_ns=args.spin, blocks=args.blocks, signals=args.signals,
                              load=args.load, cyclictest=not args.no_cyclictest)
    if args.plot:
        require_matplotlib()
    result = measure(settings)
    print(format_table(result))
    trace = result.pop("_trace")
    out: Path | None = args.json
    if out is None and args.plot:  # a plot comes with its numbers
        out = args.plot.with_suffix(".json")
    if out is not None:  # first: a plot that fails must not lose the measurement
        out.write_text(json.dumps(result, indent=2, default=float))
        print(f"json: {out}")
    if args.plot:
        plot({**result, "_trace": trace}, args.plot)
        print(f"plot: {args.plot}")
    return 0
