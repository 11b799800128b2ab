"""``petra replay PLANT --from T1 --to T2``: what would this plant have done yesterday?

Runs the scan engine of a (changed) plant with a fake clock over the recorded *inputs*
of a window, as fast as the CPU allows, and compares its outputs with the recorded
ones. Inputs are the signals the plant's blocks read that no block writes (driver and
operator signals); outputs are the signals blocks write.

How
---
- The recording is read from the plant's Parquet history (``--history DIR`` for
  another directory). Each input starts at its last recorded value at or before the
  start, and every later sample is written into a private segment just before the
  first cycle at or after its time, as a driver's write would have landed.
- Cycles run on the plant's period from the first recorded output write at or after
  ``--from`` (the real scan's grid), on a :class:`~petra.scan.FakeClock`, so timers,
  PID and generators see exact periods. Block state starts fresh: replay a window that
  starts at a plant start to compare like with like.
- Comparison per output on every cycle: the replayed value against the recorded one
  (a step function: a value holds until the next sample). Documented timing effects are
  tolerated: the real scan woke with jitter and wrote on its own grid, so a replayed
  value matches if it is within ``--atol + --rtol * |recorded|`` of the recorded value
  one period before, at, or one period after the cycle; recording deadbands widen the
  tolerance of their signal.

Output: a table (or ``--json``) per output signal: cycles compared, cycles that differ,
the first difference, the largest deviation; ``--plot`` draws recorded vs replayed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from petra.errors import ConfigError

if TYPE_CHECKING:
    from petra.config import Plant

LOOKBACK_S = 3600.0


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "replay", help="run a plant over recorded inputs and diff its outputs")
    p.add_argument("plant", help="plant YAML file (the changed plant to try)")
    p.add_argument("--from", dest="t_from", required=True,
                   help="start: ISO 8601 (UTC if no zone), -2h, epoch s")
    p.add_argument("--to", dest="t_to", required=True, help="end")
    p.add_argument("--history", default=None,
                   help="Parquet directory of the recording (default: the plant's)")
    p.add_argument("--instance", "-i", default=None, help="for {instance} in history.dir")
    p.add_argument("--speed", default="max", help="max (as fast as possible) or a factor")
    p.add_argument("--atol", type=float, default=1e-6, help="absolute tolerance")
    p.add_argument("--rtol", type=float, default=1e-3, help="relative tolerance")
    p.add_argument("--lookback", type=float, default=LOOKBACK_S,
                   help="seconds before --from searched for the inputs' start values")
    p.add_argument("--plot", default=None, help="PNG: recorded vs replayed outputs")
    p.add_argument("--json", dest="as_json", action="store_true", help="JSON report")
    p.set_defaults(func=run)


@dataclass
class OutputDiff:
    signal: str
    cycles: int
    differing: int
    first_diff_ts: str | None
    first_replayed: float | None
    first_recorded: float | None
    max_abs_dev: float


@dataclass
class ReplayResult:
    cycles: int
    period_s: float
    window_s: float
    wall_s: float
    speedup: float
    inputs: int
    input_samples: int
    outputs: list[OutputDiff]


def _steps(table: Any, names: list[str]) -> dict[str, tuple[Any, Any]]:
    """signal -> (ts ns array, value array), sorted by time."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    out: dict[str, tuple[Any, Any]] = {}
    for name in names:
        sub = table.filter(pc.equal(table.column("signal"), name))
        ts = sub.column("ts").cast(pa.int64()).to_numpy()
        val = sub.column("value").to_numpy(zero_copy_only=False).astype(np.float64)
        out[name] = (ts, val)
    return out


def replay(plant: Plant, recording: Any, t_from: int, t_to: int, *, atol: float = 1e-6,
           rtol: float = 1e-3, speed: float | None = None,
           keep_series: bool = False) -> tuple[ReplayResult, dict[str, Any]]:
    """Replay ``plant`` over ``recording`` (an Arrow table from
    :func:`petra.history._query.read_samples` covering the window and a lookback)."""
    import numpy as np

    writers = set(plant.block_writers)
    outputs = [s.name for s in plant.config.signals if s.name in writers]
    read_by_blocks = {ref for b in plant.blocks for ref in b.inputs.values()
                      if isinstance(ref, str)}
    inputs = [s.name for s in plant.config.signals
              if s.name in read_by_blocks and s.name not in writers]
    rec_in = _steps(recording, inputs)
    rec_out = _steps(recording, outputs)
    period = plant.config.scan.period_ns
    t0 = _first_cycle(rec_out, t_from)
    last = max((int(ts[-1]) for ts, _ in (*rec_out.values(), *rec_in.values()) if len(ts)),
               default=t0)
    t_end = min(t_to, last + period)  # compare only where there is a recording
    n_cycles = max(0, (t_end - t0) // period)
    series, n_events, wall = _run(plant, rec_in, outputs, t0, period=period,
                                  n_cycles=n_cycles, speed=speed)
    cyc_t = t0 + np.arange(n_cycles, dtype=np.int64) * period
    diffs = [_compare(name, series[:, j], cyc_t, rec_out[name], period=period, atol=atol,
                      rtol=rtol)
             for j, name in enumerate(outputs)]
    window = n_cycles * period / 1e9
    result = ReplayResult(int(n_cycles), period / 1e9, window, wall,
                          window / wall if wall > 0 else 0.0, len(inputs), n_events, diffs)
    extra = {"t": cyc_t, "series": series, "outputs": outputs, "recorded": rec_out} \
        if keep_series else {}
    return result, extra


def _run(plant: Plant, rec_in: dict[str, tuple[Any, Any]], outputs: list[str], t0: int, *,
         period: int, n_cycles: int, speed: float | None) -> tuple[Any, int, float]:
    """Run the scan engine on a private segment and a fake clock; the outputs after each
    cycle (rows), the number of input samples applied, and the wall time."""
    import os

    import numpy as np

    from petra.scan import FakeClock, ScanEngine, ScanPlant, build_program
    from petra.shm import Segment

    instance = f"replay-{os.getpid()}-{time.monotonic_ns() % 1_000_000}"
    seg = Segment.create(instance, plant.signal_defs(), journal_capacity=1 << 16)
    try:
        types = [info.type for info in seg.signals]
        # inputs: their value at t0, then the samples inside the window, in time order
        ev: list[tuple[Any, Any, Any]] = []
        for name, (ts, val) in rec_in.items():
            slot = seg.index(name)
            k = int(np.searchsorted(ts, t0, side="right"))
            if k > 0:
                seg.write_index(slot, _cast(types[slot], float(val[k - 1])))
            ev.append((ts[k:], np.full(len(ts) - k, slot, np.int64), val[k:]))
        et = np.concatenate([e[0] for e in ev]) if ev else np.zeros(0, np.int64)
        order = np.argsort(et, kind="stable")
        et = et[order]
        es = (np.concatenate([e[1] for e in ev]) if ev else np.zeros(0, np.int64))[order]
        evv = (np.concatenate([e[2] for e in ev]) if ev else np.zeros(0))[order]
        out_idx = np.asarray([seg.index(n) for n in outputs], np.uint32)
        series = np.zeros((n_cycles, len(outputs)), np.float64)
        engine = ScanEngine(seg, build_program(ScanPlant.from_plant(plant), seg), period,
                            FakeClock(start_ns=t0 - period), offset_ns=t0 % period,
                            record_stats=False)
        state = [0, 0]  # next cycle, next input sample
        wall0 = time.perf_counter()

        def before_cycle() -> bool:
            k, e = state
            if k > 0 and len(out_idx):  # the previous cycle's outputs
                series[k - 1] = seg.read_batch_f64(out_idx)[0]
            if k >= n_cycles:
                return True
            t = t0 + k * period
            while e < len(et) and et[e] <= t:
                slot = int(es[e])
                seg.write_index(slot, _cast(types[slot], float(evv[e])))
                e += 1
            state[0], state[1] = k + 1, e
            if speed:
                ahead = (k * period / 1e9) / speed - (time.perf_counter() - wall0)
                if ahead > 0:
                    time.sleep(ahead)
            return False

        engine.run(before_cycle)
        return series, len(et), time.perf_counter() - wall0
    finally:
        seg.close()
        seg.unlink()


def _compare(name: str, got: Any, cyc_t: Any, rec: tuple[Any, Any], *, period: int,
             atol: float, rtol: float) -> OutputDiff:
    """Replayed values (one per cycle) against the recorded step function, allowing the
    recorded value of one period before or after (the real scan's grid and jitter)."""
    import numpy as np

    from petra.history._query import format_ts

    rts, rval = rec
    n = len(cyc_t)
    if len(rts) == 0 or n == 0:
        return OutputDiff(name, 0, 0, None, None, None, 0.0)
    best = np.full(n, np.inf)
    at_t = np.full(n, np.nan)
    for shift in (-period, 0, period):
        k = np.searchsorted(rts, cyc_t + shift, side="right") - 1
        ref = np.where(k >= 0, rval[np.clip(k, 0, None)], np.nan)
        if shift == 0:
            at_t = ref
        dev = np.where(np.isnan(ref), np.inf, np.abs(got - ref))
        tol = atol + rtol * np.abs(np.nan_to_num(ref))
        best = np.minimum(best, np.where(dev <= tol, 0.0, dev))
    valid = np.isfinite(best)
    bad = np.flatnonzero(valid & (best > 0))
    if not len(bad):
        return OutputDiff(name, int(valid.sum()), 0, None, None, None, 0.0)
    first = int(bad[0])
    return OutputDiff(name, int(valid.sum()), len(bad), format_ts(int(cyc_t[first])),
                      float(got[first]), float(at_t[first]), float(best[valid].max()))


def _first_cycle(rec_out: dict[str, tuple[Any, Any]], t_from: int) -> int:
    """The time of the real scan's first recorded cycle at or after ``t_from``: the
    earliest output sample there, except the history's start-up record of initial
    values (many signals at one instant, the segment's creation), which no scan wrote."""
    import numpy as np

    firsts = []
    for ts, _ in rec_out.values():
        k = int(np.searchsorted(ts, t_from))
        if k < len(ts):
            firsts.append((int(ts[k]), ts[k:]))
    if not firsts:
        return t_from
    tmin = min(t for t, _ in firsts)
    if sum(1 for t, _ in firsts if t == tmin) < 2:
        return tmin
    later = [int(ts[np.searchsorted(ts, tmin, side="right")]) for _, ts in firsts
             if np.searchsorted(ts, tmin, side="right") < len(ts)]
    return min(later) if later else tmin


def _cast(t: Any, v: float) -> bool | int | float:
    from petra.types import SignalType

    if t == SignalType.BOOL:
        return v != 0.0
    if t == SignalType.INT:
        return int(v)
    return v


def run(args: argparse.Namespace) -> int:
    from petra.config import load_plant
    from petra.history import resolve_dir
    from petra.history._query import parse_time, read_samples

    try:
        plant = load_plant(args.plant)
    except OSError as exc:
        raise ConfigError(f"cannot read {args.plant}: {exc.strerror}") from None
    now = time.time_ns()
    try:
        t_from = parse_time(args.t_from, now)
        t_to = parse_time(args.t_to, now)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if t_to <= t_from:
        raise ConfigError("--to is not after --from")
    speed = None if args.speed == "max" else float(args.speed)
    if args.history:
        pq_dir = Path(args.history)
    else:
        hist = plant.config.history
        if hist is None:
            raise ConfigError("the plant has no history: section; give --history DIR",
                              file=args.plant)
        pq_dir = resolve_dir(hist, args.instance or plant.config.instance, args.plant) / (
            hist.parquet.dir)
    try:
        recording = read_samples(pq_dir, [], t_from - int(args.lookback * 1e9), t_to)
    except FileNotFoundError as exc:
        raise ConfigError(str(exc)) from None
    result, extra = replay(plant, recording, t_from, t_to, atol=args.atol, rtol=args.rtol,
                           speed=speed, keep_series=bool(args.plot))
    if args.as_json:
        print(json.dumps(asdict(result), indent=2))
    else:
        _print(result)
    if args.plot:
        _plot(extra, result, Path(args.plot))
    return 0


def _print(r: ReplayResult) -> None:
    print(f"replayed {r.cycles} cycles ({r.window_s:.1f} s of plant time, period "
          f"{r.period_s * 1e3:g} ms) in {r.wall_s:.2f} s: {r.speedup:.0f}x real time; "
          f"{r.inputs} inputs, {r.input_samples} input samples")
    head = ("output", "cycles", "differ", "first difference (replayed vs recorded)",
            "max |dev|")
    rows = []
    for d in r.outputs:
        first = "" if d.first_diff_ts is None else (
            f"{d.first_diff_ts}: {d.first_replayed:.6g} vs {d.first_recorded:.6g}")
        rows.append((d.signal, str(d.cycles), str(d.differing), first, f"{d.max_abs_dev:.3g}"))
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
              for i, h in enumerate(head)]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip())
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    changed = sum(1 for d in r.outputs if d.differing)
    print(f"{changed} of {len(r.outputs)} outputs differ", file=sys.stderr)


def _plot(extra: dict[str, Any], r: ReplayResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    show = [d.signal for d in r.outputs if d.differing][:6] or [
        d.signal for d in r.outputs][:3]
    outputs = extra["outputs"]
    fig, axes = plt.subplots(len(show), 1, figsize=(10, 2.4 * max(1, len(show))),
                             squeeze=False, sharex=True)
    t = extra["t"].astype("datetime64[ns]")
    for ax, name in zip(axes[:, 0], show, strict=True):
        rts, rval = extra["recorded"][name]
        ax.step(rts.astype("datetime64[ns]"), rval, where="post", label="recorded")
        ax.step(t, extra["series"][:, outputs.index(name)], where="post", label="replayed",
                alpha=0.8)
        ax.set_ylabel(name, fontsize="small")
        ax.legend(loc="best", fontsize="x-small")
        ax.grid(True, alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    print(f"wrote {path}")
