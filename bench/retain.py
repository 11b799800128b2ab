"""Benchmark of the retain area: what the per-cycle commit of the block state costs.

For 1k and 10k built-in blocks (the mix of ``bench/blocks.py``: 20 types, stateful
and not), it measures (several repetitions, medians reported):

- ``commit_us``: one ``petra_retain_commit`` call, as the scan makes it after each
  cycle's copy-out (a memcpy of the state array into the other buffer, two release
  stores), with the cffi call;
- ``blocks_us``: one ``petra_blocks_run`` call over the same program, for scale;
- ``read_restore_ms``: a restarted scan's work: read the snapshot and match every block.

Usage: ``python bench/retain.py [--json PATH] [--reps 7] [--iters 5000]``
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_info, median, print_table, write_json
from blocks import MIX, time_per_call

import petra.blocks as pb
from petra._core import lib
from petra.blocks import _retain as br
from petra.shm import RetainArea, unlink_retain

SCHEMA = 1


def mixed(n_blocks: int) -> tuple[list[pb.BlockInstance], int]:
    """``bench/blocks.py``'s mix of 20 types, with room for 10k blocks: inputs among
    the first 10k signals, one output signal per block after them."""
    rng = np.random.default_rng(7)
    n_in_signals = 10_000
    blocks = []
    for i in range(n_blocks):
        type_name, params, n_in = MIX[i % len(MIX)]
        spec = pb.get_spec(type_name)
        ports = [p.name for p in spec.input_ports(n_in if spec.variadic else None)][:n_in]
        ins: dict[str, int | pb.Const] = {p: int(rng.integers(0, n_in_signals)) for p in ports}
        blocks.append(pb.BlockInstance(f"b{i}", type_name, ins,
                                       {spec.outputs[0].name: n_in_signals + i}, params))
    return blocks, n_in_signals + n_blocks


def bench(n_blocks: int, iters: int, reps: int) -> dict[str, Any]:
    blocks, n_signals = mixed(n_blocks)
    program = pb.compile_program(blocks, n_signals)
    names = [f"s{i}" for i in range(n_signals)]
    inst = f"bench-retain-{os.getpid()}"
    area = RetainArea.create(inst)
    try:
        rows = br.retain_rows(program, names)
        meta = br.encode_meta(rows, inst)
        area.prepare(meta, program.state)
        args = area.commit_args(program.state)
        commit = lib.petra_retain_commit

        def one(k: int) -> None:
            commit(*args, k)

        commit_ns = time_per_call(one, iters, reps)
        img, quality = program.new_image()
        quality[:n_signals] = 2

        def run(k: int) -> None:
            program.run(img, quality, k * 1_000_000, 1_000_000, k == 0)

        blocks_ns = time_per_call(run, iters, reps)
        restore_ms = []
        for _ in range(reps):
            fresh = pb.compile_program(mixed(n_blocks)[0], n_signals)
            t0 = time.perf_counter_ns()
            snap = area.read()
            assert snap is not None
            _, back = br.decode_meta(snap.meta, len(snap.state))
            report = br.restore(fresh, names, back, snap.state)
            restore_ms.append((time.perf_counter_ns() - t0) / 1e6)
            assert not report.reset
        return {
            "blocks": n_blocks,
            "state_values": len(program.state),
            "state_bytes": program.state.nbytes,
            "table_bytes": len(meta),
            "area_bytes": area.size,
            "commit_us": median(commit_ns) / 1e3,
            "blocks_us": median(blocks_ns) / 1e3,
            "read_restore_ms": median(restore_ms),
        }
    finally:
        area.close()
        unlink_retain(inst)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--iters", type=int, default=5000)
    args = ap.parse_args(argv)
    results: dict[str, Any] = {"schema": SCHEMA, "machine": machine_info(),
                               "reps": args.reps, "iters": args.iters, "runs": []}
    rows = []
    for n in (1000, 10_000):
        r = bench(n, args.iters if n == 1000 else max(args.iters // 5, 200), args.reps)
        results["runs"].append(r)
        rows.append((f"{n} blocks", f"{r['state_bytes'] / 1024:.0f} KiB",
                     f"{r['commit_us']:.2f} us", f"{r['blocks_us']:.2f} us",
                     f"{r['read_restore_ms']:.1f} ms"))
    print_table(rows, ("program", "state", "commit / cycle", "blocks / cycle",
                       "read + restore"))
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
