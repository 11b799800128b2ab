"""Compiling a plant's blocks into a :class:`~petra.blocks._runtime.Program`.

What the compiler decides
-------------------------
Blocks arrive in execution order, with signals as segment indices (see
:class:`~petra.blocks.BlockInstance`). Each is checked against its spec
(:func:`resolve_params`, the ports), then, per block:

- **image slots**: a signal input reads its index; a constant gets a slot after the
  signals (equal float64 bits share one); an unconnected output gets a scratch slot
  after the constants (the layout is described in ``_runtime.py``);
- **parameters**: laid out in the spec's order in one float64 array, a choice encoded
  as its index;
- **state**: a slice of one float64 array, sized by the kernel (AVERAGE adds ``2*n``);
- **steps**: consecutive built-ins become one run of the instruction list, a custom
  block a Python step between runs.

The kernel's ``petra_blocks_check`` then validates the whole instruction list once,
so the cycle itself does no bounds checks.

Hot reload
----------
``compile_program(..., previous=old)`` keeps the state of every block whose name and
definition (type, inputs, outputs, params) are unchanged: the state slice of a
built-in is copied, a custom block keeps its object. Every other block is fresh: a
built-in carries ``PETRA_BF_FRESH`` until its first run (first-scan semantics for
it alone), a custom block gets ``first_scan=True`` on its first step. Inputs and
outputs are compared by signal index, so a reload that renumbers signals restarts
the blocks that touch them.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from petra import _core
from petra._core import ffi, lib
from petra.blocks._builtins import AVERAGE_MAX, KERNELS
from petra.blocks._custom import CustomBlock, custom_class
from petra.blocks._instance import BlockInstance, Const
from petra.blocks._runtime import FLAG_FRESH, CRun, CustomStep, Program, StateSlot
from petra.blocks._spec import REQUIRED, BlockSpec, Param, Port, get_spec
from petra.errors import ConfigError

MAX_IN, MAX_OUT = 8, 4

INSTR_DTYPE = np.dtype(
    [
        ("op", "<u2"),
        ("n_in", "u1"),
        ("n_out", "u1"),
        ("flags", "<u4"),
        ("in", "<u4", (MAX_IN,)),
        ("out", "<u4", (MAX_OUT,)),
        ("state", "<u4"),
        ("param", "<u4"),
    ]
)
assert INSTR_DTYPE.itemsize == ffi.sizeof("petra_instr_t") == _core.instr_size()
for _name in INSTR_DTYPE.names or ():
    assert INSTR_DTYPE.fields is not None
    assert INSTR_DTYPE.fields[_name][1] == ffi.offsetof("petra_instr_t", _name), _name


def compile_program(
    instances: Sequence[BlockInstance],
    n_signals: int,
    previous: Program | None = None,
) -> Program:
    """Compile blocks (in execution order, signals as indices) into a :class:`Program`.

    Raises :class:`ConfigError` for what the config validator should already have
    caught (unknown type, port or parameter, value out of range) and for what only
    the compiler sees (a signal index out of range, a signal still given by name).
    """
    compiler = _Compiler(n_signals, previous)
    seen: set[str] = set()
    for block in instances:
        if block.name in seen:
            raise _err(block, "duplicate block name")
        seen.add(block.name)
        compiler.add(block)
    return compiler.finish(instances)


def _err(block: BlockInstance, message: str, key: str = "") -> ConfigError:
    return ConfigError(message, key_path=f"blocks.{block.name}" + (f".{key}" if key else ""))


def _param_value(block: BlockInstance, p: Param) -> Any:
    """The block's value for ``p``, default filled and range checked."""
    if p.name not in block.params:
        if p.default is REQUIRED:
            raise _err(block, f"parameter {p.name!r} is required", f"params.{p.name}")
        return p.default
    v = block.params[p.name]
    where = f"params.{p.name}"
    if p.choices is not None:
        if v not in p.choices:
            raise _err(block, f"must be one of {', '.join(p.choices)}", where)
        return v
    if p.kind is bool:
        if not isinstance(v, bool):
            raise _err(block, "must be true or false", where)
        return v
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise _err(block, f"must be a number, got {v!r}", where)
    if p.kind is int and float(v) != int(v):
        raise _err(block, f"must be an integer, got {v!r}", where)
    if not math.isfinite(v):
        raise _err(block, f"must be finite, got {v!r}", where)
    if p.min is not None and (v <= p.min if p.min_exclusive else v < p.min):
        raise _err(block, f"must be {'>' if p.min_exclusive else '>='} {p.min}, got {v}", where)
    if p.max is not None and v > p.max:
        raise _err(block, f"must be <= {p.max}, got {v}", where)
    return v


def resolve_params(block: BlockInstance, spec: BlockSpec) -> dict[str, Any]:
    """All of the block's parameters with defaults, checked against the spec."""
    known = {p.name for p in spec.params}
    for k in block.params:
        if k not in known:
            raise _err(block, f"unknown parameter {k!r} for {spec.name}", f"params.{k}")
    values = {p.name: _param_value(block, p) for p in spec.params}
    check = spec.extra.get("check")
    if check is not None:
        for message in check(values):
            raise _err(block, message, "params")
    return values


def _encode(p: Param, v: Any) -> float:
    if p.choices is not None:
        return float(p.choices.index(v))
    return float(v)


def _ports(block: BlockInstance, spec: BlockSpec) -> list[Port]:
    n_var = None
    if spec.variadic is not None:
        pre = spec.variadic
        n_var = sum(1 for k in block.inputs if k.startswith(pre) and k[len(pre) :].isdigit())
        if not spec.min_inputs <= n_var <= spec.max_inputs:
            raise _err(
                block,
                f"{spec.name} takes {spec.min_inputs}..{spec.max_inputs} inputs "
                f"{pre}1..{pre}N, got {n_var}",
                "inputs",
            )
    ports = list(spec.input_ports(n_var))
    names = {p.name for p in ports}
    for k in block.inputs:
        if k not in names:
            raise _err(block, f"unknown input port {k!r} for {spec.name}", f"inputs.{k}")
    for k in block.outputs:
        if k not in {p.name for p in spec.outputs}:
            raise _err(block, f"unknown output port {k!r} for {spec.name}", f"outputs.{k}")
    return ports


class _Builder:
    """Assigns constant and scratch slots of the image while compiling."""

    def __init__(self, n_signals: int) -> None:
        self.n_signals = n_signals
        self.constants: list[float] = []
        self._const_index: dict[bytes, int] = {}
        self.n_scratch = 0
        self.scratch: list[tuple[int, int]] = []  # (position in scratch, instr index)

    def const(self, value: float) -> int:
        key = struct.pack("<d", value)
        if key not in self._const_index:
            self._const_index[key] = len(self.constants)
            self.constants.append(value)
        return self.n_signals + self._const_index[key]

    def signal(self, block: BlockInstance, key: str, idx: int) -> int:
        if isinstance(idx, bool) or not isinstance(idx, int | np.integer):
            raise _err(block, f"expected a signal index or Const, got {idx!r}", key)
        if not 0 <= int(idx) < self.n_signals:
            raise _err(block, f"signal index {idx} out of range 0..{self.n_signals - 1}", key)
        return int(idx)

    def input(
        self, block: BlockInstance, spec: BlockSpec, port: Port, params: Mapping[str, Any]
    ) -> int:
        src = block.inputs.get(port.name)
        by_param = spec.extra.get("param_inputs", {}).get(port.name)
        if by_param is not None and (
            src is None or (isinstance(src, Const) and math.isnan(float(src.value)))
        ):  # unconnected, or the NaN default a config loader filled in
            return self.const(float(params[by_param]))
        if isinstance(src, Const):
            return self.const(float(src.value))
        if src is not None:
            return self.signal(block, f"inputs.{port.name}", src)
        if port.default is None:
            raise _err(block, f"input {port.name!r} is required", f"inputs.{port.name}")
        return self.const(float(port.default))

    def scratch_slot(self) -> int:
        self.n_scratch += 1
        return -self.n_scratch  # fixed up once the constants are known


class _Compiler:
    """Accumulates instructions, params, state layout and steps, block by block."""

    def __init__(self, n_signals: int, previous: Program | None) -> None:
        self.b = _Builder(n_signals)
        self.n_signals = n_signals
        self.previous = previous
        self.prev_custom = previous.custom_steps() if previous is not None else {}
        self.rows: list[dict[str, Any]] = []
        self.params: list[float] = []
        self.state_size = 0
        self.plan: list[tuple[str, Any]] = []  # ("c", row index) or ("py", CustomStep)
        self.state_slots: dict[str, StateSlot] = {}
        self.kept: list[tuple[int, int, int]] = []  # (new offset, old offset, size)
        self.errors: dict[str, int] = {}

    def add(self, block: BlockInstance) -> None:
        try:
            spec = get_spec(block.type)
        except KeyError as exc:
            raise _err(block, str(exc.args[0]), "type") from None
        ports = _ports(block, spec)
        values = resolve_params(block, spec)
        b = self.b
        outs = [
            b.signal(block, f"outputs.{p.name}", block.outputs[p.name])
            if p.name in block.outputs
            else b.scratch_slot()
            for p in spec.outputs
        ]
        ins = [b.input(block, spec, p, values) for p in ports]
        cls = custom_class(block.type)
        if cls is not None:
            self._custom(block, cls=cls, spec=spec, values=values, ports=ports, ins=ins, outs=outs)
        else:
            self._builtin(block, spec, values, ins, outs)

    def _custom(
        self,
        block: BlockInstance,
        *,
        cls: type[CustomBlock],
        spec: BlockSpec,
        values: dict[str, Any],
        ports: list[Port],
        ins: list[int],
        outs: list[int],
    ) -> None:
        old = self.prev_custom.get(block.name)
        if old is not None and old.block.definition() == block.definition():
            obj, fresh = old.obj, False
            assert self.previous is not None
            self.errors[block.name] = self.previous.errors.get(block.name, 0)
        else:
            obj, fresh = cls(), True
            obj.init(values)
        self.errors.setdefault(block.name, 0)
        step = CustomStep(
            block=block,
            obj=obj,
            params=values,
            in_names=tuple(p.name for p in ports),
            in_idx=tuple(ins),
            out_names=tuple(p.name for p in spec.outputs),
            out_idx=tuple(outs),
            fresh=fresh,
        )
        self.plan.append(("py", step))

    def _builtin(
        self,
        block: BlockInstance,
        spec: BlockSpec,
        values: dict[str, Any],
        ins: list[int],
        outs: list[int],
    ) -> None:
        kernel = KERNELS.get(block.type)
        if kernel is None:
            raise _err(block, f"block type {block.type!r} has no implementation", "type")
        n_state = kernel.n_state + (2 * int(values["n"]) if block.type == "AVERAGE" else 0)
        assert n_state <= 2 + 2 * AVERAGE_MAX
        definition = block.definition()
        fresh = True
        old = self.previous.state_slots.get(block.name) if self.previous is not None else None
        if old is not None and old.definition == definition and old.size == n_state:
            self.kept.append((self.state_size, old.offset, n_state))
            fresh = False
        self.state_slots[block.name] = StateSlot(definition, self.state_size, n_state)
        self.rows.append(
            {
                "op": _core.op_code(kernel.op_name),
                "n_in": len(ins),
                "n_out": len(outs),
                "flags": FLAG_FRESH if fresh else 0,
                "in": ins,
                "out": outs,
                "state": self.state_size,
                "param": len(self.params),
            }
        )
        self.params.extend(_encode(p, values[p.name]) for p in spec.params)
        self.state_size += n_state
        self.plan.append(("c", len(self.rows) - 1))

    def finish(self, instances: Sequence[BlockInstance]) -> Program:
        base = self.n_signals + len(self.b.constants)
        image_size = base + self.b.n_scratch

        def slot(o: int) -> int:  # scratch slots were numbered -1, -2, ...
            return base - o - 1 if o < 0 else o

        instr = np.zeros(len(self.rows), dtype=INSTR_DTYPE)
        for i, row in enumerate(self.rows):
            for key in ("op", "n_in", "n_out", "flags", "state", "param"):
                instr[i][key] = row[key]
            instr[i]["in"][: len(row["in"])] = row["in"]
            instr[i]["out"][: len(row["out"])] = [slot(o) for o in row["out"]]
        params = np.array(self.params, dtype=np.float64)
        state = np.zeros(self.state_size, dtype=np.float64)
        if self.previous is not None:
            for new_off, old_off, size in self.kept:
                state[new_off : new_off + size] = self.previous.state[old_off : old_off + size]
        steps: list[CRun | CustomStep] = []
        for kind, item in self.plan:
            if kind == "py":
                item.out_idx = tuple(slot(o) for o in item.out_idx)
                steps.append(item)
            elif steps and isinstance(steps[-1], CRun):
                steps[-1].count += 1
            else:
                steps.append(CRun(item, 1, None))
        base_ptr = None
        if len(instr):
            base_ptr = ffi.from_buffer("petra_instr_t[]", instr)
            params_ptr = ffi.from_buffer("double[]", params) if len(params) else ffi.NULL
            rc = lib.petra_blocks_check(
                base_ptr, len(instr), image_size, len(state), params_ptr, len(params)
            )
            if rc < 0:
                bad = [blk for blk in instances if custom_class(blk.type) is None][-rc - 1]
                raise _err(bad, "rejected by the kernel's program check")
            for step in steps:
                if isinstance(step, CRun):
                    step.ptr = base_ptr + step.start
        return Program(
            instances,
            self.n_signals,
            instructions=instr,
            params=params,
            state=state,
            constants=np.array(self.b.constants, dtype=np.float64),
            image_size=image_size,
            steps=steps,
            state_slots=self.state_slots,
            errors=self.errors,
            keepalive=base_ptr,
        )
