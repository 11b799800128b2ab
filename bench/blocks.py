"""Benchmark of the block library: the C kernel, the upstream AND workload, custom blocks.

Measures (several repetitions, medians reported):

- ``mixed_1k``: 1,000 built-in blocks of 20 types over 10k signals, one
  ``petra_blocks_run`` call per cycle (direct, and through ``Program.run``);
  ``per_block_ns`` = kernel time / 1000 (goal <= 20 ns).
- ``and_chain_10k_50`` / ``_100``: upstream Petra's published workload: N = 10k float
  signals, M two-input AND blocks where block i reads signals i and i+1.
- ``python_block``: 100 custom Python blocks, per-block cost in microseconds.

Usage: ``python bench/blocks.py [--json PATH] [--reps 7] [--iters 2000]``
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_info, median, print_table, write_json

import petra.blocks as pb
from petra._core import ffi, lib

N_SIGNALS = 10_000
DT_NS = 1_000_000
SCHEMA = 1

MIX: list[tuple[str, dict[str, Any], int]] = [  # type, params, number of inputs
    ("AND", {}, 3),
    ("OR", {}, 2),
    ("NOT", {}, 1),
    ("GT", {}, 2),
    ("EQ", {"tolerance": 0.01}, 2),
    ("ADD", {}, 3),
    ("SUB", {}, 2),
    ("MUL", {}, 2),
    ("DIV", {}, 2),
    ("LIMIT", {}, 3),
    ("SCALE", {"in_min": 0.0, "in_max": 10.0, "out_min": 4.0, "out_max": 20.0}, 1),
    ("SEL", {}, 3),
    ("MOVE", {}, 1),
    ("R_TRIG", {}, 1),
    ("TON", {"pt": 0.5}, 1),
    ("CTU", {"pv": 10}, 1),
    ("PID", {"kp": 1.0, "ti": 5.0}, 2),
    ("LAG", {"tau": 1.0}, 1),
    ("RAMP", {"rise": 1.0, "fall": 1.0}, 1),
    ("AVERAGE", {"n": 8}, 1),
]


def mixed_blocks(n_blocks: int, rng: np.random.Generator) -> list[pb.BlockInstance]:
    blocks = []
    for i in range(n_blocks):
        type_name, params, n_in = MIX[i % len(MIX)]
        spec = pb.get_spec(type_name)
        n_var = n_in if spec.variadic else None
        ports = [p.name for p in spec.input_ports(n_var)][:n_in]
        ins: dict[str, int | pb.Const] = {p: int(rng.integers(0, N_SIGNALS // 2)) for p in ports}
        outs = {spec.outputs[0].name: N_SIGNALS // 2 + i}
        blocks.append(pb.BlockInstance(f"b{i}", type_name, ins, outs, params))
    return blocks


def and_chain(m: int) -> list[pb.BlockInstance]:
    return [
        pb.BlockInstance(f"and{i}", "AND", {"in1": i, "in2": i + 1}, {"out": N_SIGNALS // 2 + i})
        for i in range(m)
    ]


class Gain(pb.CustomBlock):
    spec = pb.BlockSpec(
        name="BENCH_GAIN",
        category="custom",
        doc="out = k * in",
        inputs=(pb.Port("in", pb.PortType.NUM),),
        outputs=(pb.Port("out", pb.PortType.FLOAT),),
        params=(pb.Param("k", float, 2.0),),
    )

    def init(self, params: Mapping[str, Any]) -> None:
        self.k = float(params["k"])

    def step(self, inputs: Mapping[str, float], ctx: pb.StepContext) -> Mapping[str, float]:
        return {"out": self.k * inputs["in"]}


def time_per_call(fn: Callable[[int], None], iters: int, reps: int) -> list[float]:
    """Mean ns per call, one figure per repetition."""
    out = []
    fn(0)  # warm up, first scan
    for _ in range(reps):
        t0 = time.perf_counter_ns()
        for k in range(iters):
            fn(k + 1)
        out.append((time.perf_counter_ns() - t0) / iters)
    return out


def bench_program(program: pb.Program, iters: int, reps: int) -> tuple[list[float], list[float]]:
    """(ns per Program.run, ns per direct kernel call when the program is one run)."""
    img, quality = program.new_image()
    img[:N_SIGNALS] = np.random.default_rng(1).random(N_SIGNALS) * 10
    quality[:N_SIGNALS] = 2

    def run(k: int) -> None:
        program.run(img, quality, k * DT_NS, DT_NS, k == 0)

    via_program = time_per_call(run, iters, reps)
    direct: list[float] = []
    if program.n_builtin:
        prog = ffi.from_buffer("petra_instr_t[]", program.instructions)
        ip, qp = ffi.from_buffer("double[]", img), ffi.from_buffer("uint8_t[]", quality)
        sp = ffi.from_buffer("double[]", program.state) if len(program.state) else ffi.NULL
        pp = ffi.from_buffer("double[]", program.params) if len(program.params) else ffi.NULL
        n = program.n_builtin
        run_c = lib.petra_blocks_run

        def call(k: int) -> None:
            run_c(prog, n, ip, qp, sp, pp, k * DT_NS, DT_NS, 0)

        direct = time_per_call(call, iters, reps)
    return via_program, direct


def empty_call_ns(iters: int, reps: int) -> list[float]:
    """Cost of a petra_blocks_run call with no instruction: the cffi overhead."""
    img = np.zeros(1)
    quality = np.zeros(1, dtype=np.uint8)
    ip, qp = ffi.from_buffer("double[]", img), ffi.from_buffer("uint8_t[]", quality)
    run_c = lib.petra_blocks_run

    def call(k: int) -> None:
        run_c(ffi.NULL, 0, ip, qp, ffi.NULL, ffi.NULL, k, DT_NS, 0)

    return time_per_call(call, iters, reps)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--iters", type=int, default=2000)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(7)
    reps, iters = args.reps, args.iters

    overhead = median(empty_call_ns(iters * 5, reps))
    mixed = pb.compile_program(mixed_blocks(1000, rng), N_SIGNALS)
    mixed_prog, mixed_direct = bench_program(mixed, iters, reps)
    results: dict[str, Any] = {
        "schema": SCHEMA,
        "machine": machine_info(),
        "reps": reps,
        "iters": iters,
        "call_overhead_ns": overhead,
        "mixed_1k_us": median(mixed_direct) / 1e3,
        "mixed_1k_program_us": median(mixed_prog) / 1e3,
        "per_block_ns": median(mixed_direct) / 1000,
        "per_block_ns_net": (median(mixed_direct) - overhead) / 1000,
    }
    for m in (50, 100):
        prog, direct = bench_program(pb.compile_program(and_chain(m), N_SIGNALS), iters, reps)
        results[f"and_chain_10k_{m}_us"] = median(prog) / 1e3
        results[f"and_chain_10k_{m}_direct_us"] = median(direct) / 1e3

    pb.register_custom(Gain)
    custom = [
        pb.BlockInstance(f"g{i}", "BENCH_GAIN", {"in": i}, {"out": N_SIGNALS // 2 + i})
        for i in range(100)
    ]
    py_prog, _ = bench_program(pb.compile_program(custom, N_SIGNALS), max(iters // 10, 50), reps)
    results["python_block_us"] = median(py_prog) / 1e3 / 100

    rows = [
        ("cffi call, no blocks", f"{overhead:.0f} ns", "-"),
        ("1k mixed built-ins, kernel call", f"{results['mixed_1k_us']:.2f} us", "-"),
        ("1k mixed built-ins, Program.run", f"{results['mixed_1k_program_us']:.2f} us", "-"),
        ("per built-in block", f"{results['per_block_ns']:.1f} ns", "<= 20 ns"),
        ("AND chain 10k signals, 50 blocks", f"{results['and_chain_10k_50_us']:.2f} us",
         "upstream 8.57 us"),
        ("AND chain 10k signals, 100 blocks", f"{results['and_chain_10k_100_us']:.2f} us",
         "upstream 16.9 us"),
        ("custom Python block", f"{results['python_block_us']:.2f} us", "-"),
    ]  # fmt: skip
    print_table(rows, ("measure (median of reps)", "value", "goal / reference"))
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
