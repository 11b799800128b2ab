"""Benchmark of the shared segment: single and batch access, the journal, memory, and the
naive alternative (``multiprocessing.shared_memory`` + numpy + a Lock) in the same run.

    python bench/segment.py [--reps 5] [--signals 10000] [--kills 400] [--json PATH]

Each figure is measured ``--reps`` times; the table and the JSON report medians (the JSON
also keeps every repetition under ``reps``). Numbers are facts about this machine, not
assertions: tests never check speed. Once per run, a short kill campaign
(``tests/stress/kill_campaign.py``) kills ``--kills`` writers at random moments and
reports what was left unusable after repair (``kill_campaign_unusable_after_repair``:
must be 0) beside the other figures.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from multiprocessing import shared_memory
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "stress"))
from _common import machine_info, median, print_table, write_json
from kill_campaign import run_campaign

from petra._core import ffi, lib
from petra.shm import JournalConsumer, Segment, SignalDef, SignalType

CTX = mp.get_context("fork")
SCHEMA = 1


def _name() -> str:
    return f"bench-{uuid.uuid4().hex[:10]}"


def _create(n: int, capacity: int = 1 << 16) -> Segment:
    return Segment.create(_name(), [SignalDef(f"sig{k}", SignalType.FLOAT) for k in range(n)],
                          journal_capacity=capacity)


def _rate(count: int, fn: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    fn()
    return count / (time.perf_counter() - t0)


# ------------------------------------------------------------------ single signal
def bench_single(seg: Segment, ops: int) -> dict[str, float]:
    get_index, read_index, write_index = seg.get_index, seg.read_index, seg.write_index
    get, write = seg.get, seg.write
    k = 17
    name = f"sig{k}"
    rng = range(ops)

    def g() -> None:
        for _ in rng:
            get_index(k)

    def r() -> None:
        for _ in rng:
            read_index(k)

    def w() -> None:
        for _ in rng:
            write_index(k, 1.5)

    def gn() -> None:
        for _ in rng:
            get(name)

    def wn() -> None:
        for _ in rng:
            write(name, 2.5)

    return {
        "single_read_ops_per_s": _rate(ops, g),
        "single_read_sample_ops_per_s": _rate(ops, r),
        "single_write_ops_per_s": _rate(ops, w),
        "single_read_by_name_ops_per_s": _rate(ops, gn),
        "single_write_by_name_ops_per_s": _rate(ops, wn),
    }


# ------------------------------------------------------------------ batches
def bench_batch(seg: Segment, iters: int) -> dict[str, float]:
    n = len(seg)
    out = seg.read_batch()
    vals = np.zeros(n, np.float64)
    q = np.zeros(n, np.uint8)
    bits = np.full(n, 0x3FF0000000000000, np.uint64)
    qual = np.full(n, 2, np.uint8)

    def rd() -> None:
        for _ in range(iters):
            seg.read_batch(out=out)

    def rd64() -> None:
        for _ in range(iters):
            seg.read_batch_f64(values=vals, quality=q)

    def wr() -> None:
        for _ in range(iters):
            seg.write_batch(None, bits, qual)

    res = {
        "batch_read_slots_per_s": _rate(n * iters, rd),
        "batch_read_f64_slots_per_s": _rate(n * iters, rd64),
        "batch_write_slots_per_s": _rate(n * iters, wr),
    }
    vb = ffi.from_buffer("uint64_t[]", out.values)
    qb = ffi.from_buffer("uint8_t[]", out.quality)
    ns = lib.petra_bench_read_range(seg.handle, 0, n, iters, vb, qb)
    res["c_batch_read_slots_per_s"] = n * iters / (ns / 1e9)
    ns = lib.petra_bench_write_range(seg.handle, 0, n, iters, ffi.from_buffer("uint64_t[]", bits),
                                     ffi.from_buffer("uint8_t[]", qual))
    res["c_batch_write_slots_per_s"] = n * iters / (ns / 1e9)
    res["python_overhead_read_ratio"] = (res["c_batch_read_slots_per_s"]
                                         / res["batch_read_slots_per_s"])
    res["python_overhead_write_ratio"] = (res["c_batch_write_slots_per_s"]
                                          / res["batch_write_slots_per_s"])
    return res


def _hammer(instance: str, ready: Any, stop: Any) -> None:
    seg = Segment.attach(instance)
    vals = np.arange(len(seg), dtype=np.float64)
    ready.set()
    while not stop.is_set():
        vals += 1.0
        seg.write_batch_f64(None, vals)
    seg.close()


def bench_cross_process_read(seg: Segment, iters: int) -> dict[str, float]:
    """Batch reads while another process rewrites the same slots continuously."""
    ready, stop = CTX.Event(), CTX.Event()
    p = CTX.Process(target=_hammer, args=(seg.instance, ready, stop))
    p.start()
    ready.wait(30)
    out = seg.read_batch()
    busy = 0

    def rd() -> None:
        nonlocal busy
        for _ in range(iters):
            busy += seg.read_batch(out=out).busy

    rate = _rate(len(seg) * iters, rd)
    stop.set()
    p.join(30)
    return {"cross_process_batch_read_slots_per_s": rate, "cross_process_busy": float(busy)}


# ------------------------------------------------------------------ journal
def _produce(instance: str, entries: int, chunk: int, go: Any, out: Any) -> None:
    seg = Segment.attach(instance)
    bits = np.full(chunk, 0x4000000000000000, np.uint64)
    go.wait(30)
    t0 = time.perf_counter()
    for _ in range(entries // chunk):
        seg.write_batch(None, bits, first=0)
    out.put(entries // chunk * chunk / (time.perf_counter() - t0))
    seg.close()


def bench_journal(n: int, entries: int) -> dict[str, float]:
    """A producer process appends ``entries`` (batch writes of ``n`` slots) into a ring
    big enough to hold them; this process then drains the backlog in batches. Also a
    concurrent run: consumer reading while the producer produces."""
    capacity = 1 << max(1, (entries - 1).bit_length())
    seg = _create(n, capacity)
    try:
        res: dict[str, float] = {}
        for mode in ("backlog", "concurrent"):
            cons = JournalConsumer(seg, batch=1 << 16)
            go, out = CTX.Event(), CTX.Queue()
            p = CTX.Process(target=_produce, args=(seg.instance, entries, n, go, out))
            p.start()
            got = 0
            if mode == "backlog":
                go.set()
                res["journal_produce_entries_per_s"] = out.get(timeout=300)
                p.join(30)
                t0 = time.perf_counter()
                while len(b := cons.read()) > 0:
                    got += len(b)
                res["journal_consume_entries_per_s"] = got / (time.perf_counter() - t0)
                res["journal_backlog_lost"] = float(cons.lost)
            else:
                go.set()
                t0 = time.perf_counter()
                while p.is_alive() or cons.count_pending():
                    got += len(cons.read())
                    if cons.position >= seg.info().journal_head and not p.is_alive():
                        break
                dt = time.perf_counter() - t0
                out.get(timeout=30)
                p.join(30)
                res["journal_concurrent_consume_entries_per_s"] = got / dt
                res["journal_concurrent_lost"] = float(cons.lost)
        return res
    finally:
        seg.unlink()
        seg.close()


def _batch_writer(instance: str, iters: int, go: Any, out: Any) -> None:
    seg = Segment.attach(instance)
    n = len(seg)
    bits = np.full(n, 0x3FF0000000000000, np.uint64)
    qual = np.full(n, 2, np.uint8)
    go.wait(30)
    t0 = time.perf_counter()
    for _ in range(iters):
        seg.write_batch(None, bits, qual)
    out.put(n * iters / (time.perf_counter() - t0))
    seg.close()


def bench_two_writers(seg: Segment, iters: int) -> dict[str, float]:
    """Two processes batch-writing the same 10k slots at once: they contend for every
    slot's lock word and for the journal head (one claim per chunk of 32 slots)."""
    go, out = CTX.Event(), CTX.Queue()
    procs = [CTX.Process(target=_batch_writer, args=(seg.instance, iters, go, out))
             for _ in range(2)]
    for p in procs:
        p.start()
    go.set()
    rates = [out.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(30)
    return {"two_writers_batch_write_slots_per_s": sum(rates)}


# ------------------------------------------------------------------ kill campaign
def bench_kill_campaign(kills: int) -> dict[str, float]:
    res = run_campaign(_name(), seconds=0.0, min_kills=kills)
    return {
        "kill_campaign_kills": float(res.total_kills),
        "kill_campaign_kills_inside_sections": float(sum(
            v for k, v in res.repaired.items() if k.startswith("kills_"))),
        "kill_campaign_unusable_after_repair": float(res.unusable_after_repair),
        "kill_campaign_other_problems": float(len(res.problems) - res.unusable_after_repair),
        "kill_campaign_torn": float(res.torn + res.journal_bad),
        "kill_campaign_live_write_failures": float(res.honest_failures["live"]
                                                   + res.honest_failures["unexplained"]),
        "kill_campaign_max_consumer_wait_ms": res.max_stall_s * 1e3,
    }


# ------------------------------------------------------------------ the naive alternative
NAIVE_DTYPE = np.dtype([("value", "f8"), ("quality", "u1"), ("ts", "i8")])


def bench_naive(n: int, ops: int, iters: int) -> dict[str, float]:
    shm = shared_memory.SharedMemory(create=True, size=n * NAIVE_DTYPE.itemsize)
    try:
        table = np.ndarray((n,), dtype=NAIVE_DTYPE, buffer=shm.buf)
        lock = CTX.Lock()
        k = 17
        now = time.time_ns

        def w() -> None:
            for _ in range(ops):
                with lock:
                    table[k] = (1.5, 2, now())

        def r() -> None:
            for _ in range(ops):
                with lock:
                    table[k]["value"]

        def br() -> None:
            for _ in range(iters):
                with lock:
                    table.copy()

        res = {
            "naive_lock_single_write_ops_per_s": _rate(ops, w),
            "naive_lock_single_read_ops_per_s": _rate(ops, r),
            "naive_lock_batch_read_slots_per_s": _rate(n * iters, br),
        }
        table = np.empty(0, NAIVE_DTYPE)  # drop the view so shm.close() may unmap
        return res
    finally:
        shm.close()
        shm.unlink()


# ------------------------------------------------------------------ memory
PSS_CHILD = """
import sys, psutil
from petra.shm import Segment
s = Segment.attach(sys.argv[1], readonly=True)
s.read_batch()
s.read_batch_f64()
print(psutil.Process().memory_full_info().pss)
"""


def bench_memory(seg: Segment) -> dict[str, float]:
    n = len(seg)
    no_journal = int(lib.petra_segment_size(n, 2, 64))
    marginal = (int(lib.petra_segment_size(n, 2, 64))
                - int(lib.petra_segment_size(0, 2, 64))) / n
    out = subprocess.run([sys.executable, "-c", PSS_CHILD, seg.instance], capture_output=True,
                         text=True, check=True, timeout=120)
    return {
        "segment_bytes_per_signal": no_journal / n,
        "segment_marginal_bytes_per_signal": marginal,
        "segment_total_bytes": float(seg.size),
        "attached_process_pss_mb": int(out.stdout.strip()) / 2**20,
    }


# ------------------------------------------------------------------ main
ROWS = [
    ("single_read_ops_per_s", "single read by index, value (get_index)", "ops/s", 3e6),
    ("single_read_sample_ops_per_s", "single read by index, Sample (read_index)", "ops/s", None),
    ("single_write_ops_per_s", "single write by index", "ops/s", 3e6),
    ("single_read_by_name_ops_per_s", "single read by name (get)", "ops/s", 2e6),
    ("single_write_by_name_ops_per_s", "single write by name", "ops/s", 2e6),
    ("batch_read_slots_per_s", "batch read 10k -> numpy (Python)", "slots/s", 200e6),
    ("batch_read_f64_slots_per_s", "batch read 10k -> float64 (Python)", "slots/s", None),
    ("c_batch_read_slots_per_s", "batch read 10k timed in C", "slots/s", None),
    ("python_overhead_read_ratio", "  C rate / Python rate (read)", "x", None),
    ("batch_write_slots_per_s", "batch write 10k (Python)", "slots/s", 200e6),
    ("c_batch_write_slots_per_s", "batch write 10k timed in C", "slots/s", None),
    ("python_overhead_write_ratio", "  C rate / Python rate (write)", "x", None),
    ("two_writers_batch_write_slots_per_s", "batch write 10k, two processes at once",
     "slots/s", None),
    ("cross_process_batch_read_slots_per_s", "batch read while another process writes",
     "slots/s", 200e6),
    ("journal_produce_entries_per_s", "journal produce (other process)", "entries/s", None),
    ("journal_consume_entries_per_s", "journal consume backlog, batches", "entries/s", 20e6),
    ("journal_concurrent_consume_entries_per_s", "journal consume while producing (paced)",
     "entries/s", None),
    ("journal_concurrent_lost", "  entries lost in that run", "", None),
    ("naive_lock_single_write_ops_per_s", "naive: shared_memory+Lock single write", "ops/s",
     None),
    ("naive_lock_single_read_ops_per_s", "naive: single read under Lock", "ops/s", None),
    ("naive_lock_batch_read_slots_per_s", "naive: batch copy under Lock", "slots/s", None),
    ("segment_bytes_per_signal", "segment bytes/signal (journal excluded)", "B", None),
    ("attached_process_pss_mb", "PSS of a process mapping 10k signals", "MB", None),
    ("kill_campaign_kills", "kill campaign: writers killed -9", "", None),
    ("kill_campaign_kills_inside_sections", "  of which inside a section", "", None),
    ("kill_campaign_unusable_after_repair", "  objects unusable after repair (must be 0)",
     "", None),
    ("kill_campaign_torn", "  torn samples or entries (must be 0)", "", None),
    ("kill_campaign_other_problems", "  other failed checks (must be 0)", "", None),
    ("kill_campaign_live_write_failures", "  writes failed, no dead writer (must be 0)", "",
     None),
    ("kill_campaign_max_consumer_wait_ms", "  longest consumer wait at a position", "ms",
     None),
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--signals", type=int, default=10_000)
    ap.add_argument("--ops", type=int, default=300_000, help="single ops per repetition")
    ap.add_argument("--iters", type=int, default=200, help="batch calls per repetition")
    ap.add_argument("--journal-entries", type=int, default=2_000_000)
    ap.add_argument("--kills", type=int, default=400, help="kill campaign size (0: skip)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    reps: dict[str, list[float]] = {}
    seg = _create(args.signals)
    try:
        bench_single(seg, 50_000)  # warm up: caches, branch predictors, CPU clock
        for rep in range(args.reps):
            results: dict[str, float] = {}
            results |= bench_single(seg, args.ops)
            results |= bench_batch(seg, args.iters)
            results |= bench_two_writers(seg, args.iters)
            results |= bench_cross_process_read(seg, args.iters)
            results |= bench_journal(args.signals, args.journal_entries)
            results |= bench_naive(args.signals, args.ops // 3, args.iters)
            results |= bench_memory(seg)
            for key, v in results.items():
                reps.setdefault(key, []).append(v)
            print(f"repetition {rep + 1}/{args.reps} done", file=sys.stderr)
    finally:
        seg.unlink()
        seg.close()
    if args.kills:
        for key, v in bench_kill_campaign(args.kills).items():
            reps[key] = [v]
    medians = {k: median(v) for k, v in reps.items()}
    rows = []
    for key, label, unit, goal in ROWS:
        v = medians.get(key, float("nan"))
        verdict = ""
        if goal is not None:
            verdict = "ok" if v >= goal else "below goal"
        rows.append((label, v, unit, "" if goal is None else f">= {goal:,.0f}", verdict))
    print_table(rows, ["measure (median)", "value", "unit", "goal", ""])
    if args.json:
        doc: dict[str, Any] = {"schema": SCHEMA, "bench": "segment", "machine": machine_info(),
                               "runs": args.reps, "signals": args.signals, "reps": reps}
        doc |= medians
        write_json(args.json, doc)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
