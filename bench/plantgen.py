"""A synthetic plant of N signals and N/10 built-in blocks, for the scale benchmark.

    python bench/plantgen.py N plant.yaml [--stateful 0.1] [--instance NAME]

Every block owns ten signals: nine it may read (bools and floats, as a driver would
write them; most of them no block reads, like most telemetry) and the one it writes.
Block types cycle through a fixed list of combinational built-ins (AND, OR, GT, ADD,
SCALE, LIMIT, MOVE, SEL) with a ``--stateful`` share of blocks that keep state or
read time (TON, SR, R_TRIG, HYSTERESIS, spread evenly); every third block takes one
input from the previous block's output, so changes travel along short chains.

:func:`plant` gives the same plant as signal definitions and block instances (by
segment index) for in-process use; :func:`write_yaml` writes it as a plant file that
``petra check`` and ``petra run`` read.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from petra.blocks import BlockInstance, Const
from petra.shm import SignalDef, SignalType

PURE = ("AND", "OR", "GT", "ADD", "SCALE", "LIMIT", "MOVE", "SEL")
STATEFUL = ("TON", "SR", "R_TRIG", "HYSTERESIS")
PER_BLOCK = 10
B, F = SignalType.BOOL, SignalType.FLOAT
# ports: (name, kind) where kind is "b"/"f" (a signal of the group) or a constant
PORTS: dict[str, tuple[list[tuple[str, Any]], SignalType, dict[str, Any], str]] = {
    "AND": ([("in1", "b"), ("in2", "b")], B, {}, "out"),
    "OR": ([("in1", "b"), ("in2", "b")], B, {}, "out"),
    "GT": ([("in1", "f"), ("in2", "f")], B, {}, "out"),
    "ADD": ([("in1", "f"), ("in2", "f")], F, {}, "out"),
    "SCALE": ([("in", "f")], F, {"in_min": 0, "in_max": 10, "out_min": 0, "out_max": 100},
              "out"),
    "LIMIT": ([("mn", 0.0), ("in", "f"), ("mx", 50.0)], F, {}, "out"),
    "MOVE": ([("in", "f")], F, {}, "out"),
    "SEL": ([("g", "b"), ("in0", "f"), ("in1", "f")], F, {}, "out"),
    "TON": ([("in", "b"), ("pt", 0.5)], B, {}, "q"),
    "SR": ([("s1", "b"), ("r", "b")], B, {}, "q1"),
    "R_TRIG": ([("clk", "b")], B, {}, "q"),
    "HYSTERESIS": ([("in", "f")], B, {"high": 60.0, "low": 40.0}, "q"),
}


@dataclass(frozen=True)
class Plant:
    signals: list[SignalDef]
    blocks: list[BlockInstance]
    inputs: list[int]  # signals no block writes (what a driver would write)


def block_types(n_blocks: int, stateful: float) -> list[str]:
    """The type of each block: the pure list cycled, with ``stateful`` of them
    (evenly spread) replaced by the stateful list cycled."""
    out = [PURE[i % len(PURE)] for i in range(n_blocks)]
    n_st = round(n_blocks * stateful)
    if n_st:
        step = n_blocks / n_st
        for j in range(n_st):
            out[int(j * step)] = STATEFUL[j % len(STATEFUL)]
    return out


def plant(n_signals: int, stateful: float = 0.1) -> Plant:
    """N signals (rounded down to a multiple of 10), N/10 blocks."""
    n_blocks = n_signals // PER_BLOCK
    signals: list[SignalDef] = []
    blocks: list[BlockInstance] = []
    inputs: list[int] = []
    prev_out: tuple[int, SignalType] | None = None
    for i, t in enumerate(block_types(n_blocks, stateful)):
        ports, out_type, params, out_port = PORTS[t]
        base = len(signals)
        # signals 0..3 bool, 4..8 float, 9 the output
        for j in range(PER_BLOCK - 1):
            signals.append(SignalDef(f"g{i}.s{j}", B if j < 4 else F))
            inputs.append(base + j)
        signals.append(SignalDef(f"g{i}.out", out_type))
        ins: dict[str, int | Const] = {}
        nb, nf = 0, 4
        for name, kind in ports:
            if kind == "b":
                ins[name], nb = base + nb, nb + 1
            elif kind == "f":
                ins[name], nf = base + nf, nf + 1
            else:
                ins[name] = Const(kind)
        if i % 3 == 2 and prev_out is not None:
            want = B if ports[0][1] == "b" else F
            if ports[0][1] in ("b", "f") and prev_out[1] == want:
                ins[ports[0][0]] = prev_out[0]
        blocks.append(BlockInstance(f"b{i}", t, ins, {out_port: base + PER_BLOCK - 1},
                                    dict(params)))
        prev_out = (base + PER_BLOCK - 1, out_type)
    return Plant(signals, blocks, inputs)


def write_yaml(p: Plant, path: Path, instance: str, *, mode: str = "full",
               period_ms: float = 10.0) -> None:
    """The plant as a plant file (signals by name)."""
    names = [s.name for s in p.signals]
    with path.open("w") as f:
        f.write(f"instance: {instance}\nscan: {{period: {period_ms}, mode: {mode}}}\n")
        f.write("signals:\n")
        written = {int(v) for b in p.blocks for v in b.outputs.values()}
        for k, s in enumerate(p.signals):
            kind = "bool" if s.type == B else "float"
            extra = "" if k in written else ", writable: true"  # a driver's stand-in
            f.write(f"  - {{name: {s.name}, type: {kind}{extra}}}\n")
        f.write("blocks:\n")
        for b in p.blocks:
            ins = ", ".join(f"{k}: {v.value if isinstance(v, Const) else names[int(v)]}"
                            for k, v in b.inputs.items())
            outs = ", ".join(f"{k}: {names[int(v)]}" for k, v in b.outputs.items())
            line = f"  - {{name: {b.name}, type: {b.type}, inputs: {{{ins}}}, outputs: {{{outs}}}"
            if b.params:
                line += ", params: {" + ", ".join(f"{k}: {v}" for k, v in b.params.items()) + "}"
            f.write(line + "}\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("n", type=int, help="signals")
    ap.add_argument("path", type=Path)
    ap.add_argument("--stateful", type=float, default=0.1, help="share of stateful blocks")
    ap.add_argument("--instance", default=None)
    ap.add_argument("--mode", choices=("full", "event"), default="full")
    args = ap.parse_args()
    write_yaml(plant(args.n, args.stateful), args.path, args.instance or f"scale{args.n}",
               mode=args.mode)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
