"""Compiling a plant's blocks into a :class:`~petra.blocks._runtime.Program`.

What the compiler decides
-------------------------
Blocks arrive in execution order, with signals as segment indices (see
:class:`~petra.blocks.BlockInstance`). Each is first resolved against its spec by the
same validator the config uses (:func:`~petra.blocks.resolve_block`), so what
``petra check`` accepts compiles. Then, per block:

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
``compile_program(..., previous=old)`` keeps the state of every built-in whose name,
type, inputs and outputs are unchanged and whose state has the same size: only its
parameters may differ (an online change). A custom block keeps its object when its
whole definition (parameters included: they are given to ``init``) is unchanged.
Every other block is fresh: a built-in carries ``PETRA_BF_FRESH`` until its first
run (first-scan semantics for it alone), a custom block gets ``first_scan=True`` on
its first step. Inputs and outputs are compared by signal index, so a reload that
renumbers signals restarts the blocks that touch them.
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
from petra.blocks._instance import BlockInstance, Const, SignalRef
from petra.blocks._runtime import FLAG_FRESH, CRun, CustomStep, Program, StateSlot
from petra.blocks._spec import BlockSpec, Param, Port, get_spec
from petra.blocks._validate import Problem, problem_error, resolve_block, show
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
    *,
    event: bool = False,
) -> Program:
    """Compile blocks (in execution order, signals as indices) into a :class:`Program`.

    ``event`` builds the program's event plan (``_event.py``): it then runs only the
    blocks whose inputs changed, plus those with state or time.

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
    return compiler.finish(instances, event)


def _err(block: BlockInstance, message: str, key: str = "") -> ConfigError:
    return problem_error(block.name, Problem(tuple(key.split(".")) if key else (), message))


def _encode(p: Param, v: Any) -> float:
    if p.choices is not None:
        return float(p.choices.index(v))
    return float(v)


class _Image:
    """Assigns constant and scratch slots of the image while compiling."""

    def __init__(self, n_signals: int) -> None:
        self.n_signals = n_signals
        self.constants: list[float] = []
        self._const_index: dict[bytes, int] = {}
        self.n_scratch = 0

    def const(self, value: float) -> int:
        key = struct.pack("<d", value)
        if key not in self._const_index:
            self._const_index[key] = len(self.constants)
            self.constants.append(value)
        return self.n_signals + self._const_index[key]

    def signal(self, block: BlockInstance, key: str, idx: SignalRef) -> int:
        if isinstance(idx, str):
            raise _err(block, f"signal {idx!r} given by name; compile takes segment "
                              "indices (BlockInstance.bind)", key)
        if isinstance(idx, bool) or not isinstance(idx, int | np.integer):
            raise _err(block, f"expected a signal index or Const, got {idx!r}", key)
        if not 0 <= int(idx) < self.n_signals:
            raise _err(block, f"signal index {idx} out of range 0..{self.n_signals - 1}", key)
        return int(idx)

    def input(self, block: BlockInstance, spec: BlockSpec, port: Port,
              params: Mapping[str, Any]) -> int:
        """The slot ``port`` reads; ``block`` is resolved, so every port is present."""
        src = block.inputs[port.name]
        key = f"inputs.{port.name}"
        if not isinstance(src, Const):
            return self.signal(block, key, src)
        try:
            value = float(src.value)
        except OverflowError:
            raise _err(block, f"constant {show(src.value)} is beyond the float64 range of the "
                              "process image", key) from None
        except (TypeError, ValueError):
            raise _err(block, f"constant {show(src.value)} is not a number", key) from None
        by_param = spec.extra.get("param_inputs", {}).get(port.name)
        if by_param is not None and math.isnan(value):
            return self.const(float(params[by_param]))  # unconnected: the parameter
        return self.const(value)

    def scratch_slot(self) -> int:
        self.n_scratch += 1
        return -self.n_scratch  # fixed up once the constants are known


class _Compiler:
    """Accumulates instructions, params, state layout and steps, block by block."""

    def __init__(self, n_signals: int, previous: Program | None) -> None:
        self.image = _Image(n_signals)
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
        res = resolve_block(block, spec)
        if res.problems:
            raise problem_error(block.name, res.problems[0])
        resolved, values = res.block, dict(res.block.params)
        img = self.image
        outs = [
            img.signal(block, f"outputs.{p.name}", resolved.outputs[p.name])
            if p.name in resolved.outputs
            else img.scratch_slot()
            for p in spec.outputs
        ]
        ins = [img.input(resolved, spec, p, values) for p in res.ports]
        cls = custom_class(block.type)
        if cls is not None:
            self._custom(resolved, cls=cls, spec=spec, ports=res.ports, ins=ins, outs=outs)
        else:
            self._builtin(resolved, spec, ins, outs)

    def _custom(
        self,
        block: BlockInstance,
        *,
        cls: type[CustomBlock],
        spec: BlockSpec,
        ports: Sequence[Port],
        ins: list[int],
        outs: list[int],
    ) -> None:
        values = dict(block.params)
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

    def _builtin(self, block: BlockInstance, spec: BlockSpec, ins: list[int],
                 outs: list[int]) -> None:
        kernel = KERNELS.get(block.type)
        if kernel is None:
            raise _err(block, f"block type {block.type!r} has no implementation", "type")
        values = block.params
        n_state = kernel.n_state + (2 * int(values["n"]) if block.type == "AVERAGE" else 0)
        assert n_state <= 2 + 2 * AVERAGE_MAX
        fresh = True
        old = self.previous.state_slots.get(block.name) if self.previous is not None else None
        # Same type and wiring (a parameter-only change keeps the state, as an online
        # change in CODESYS does; see _retain.py for the same rule across restarts).
        if (old is not None and old.size == n_state
                and old.block.definition()[:3] == block.definition()[:3]):  # only on a reload
            self.kept.append((self.state_size, old.offset, n_state))
            fresh = False
        self.state_slots[block.name] = StateSlot(block, self.state_size, n_state)
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

    def finish(self, instances: Sequence[BlockInstance], event: bool = False) -> Program:
        base = self.n_signals + len(self.image.constants)
        image_size = base + self.image.n_scratch

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
        program = Program(
            instances,
            self.n_signals,
            instructions=instr,
            params=params,
            state=state,
            constants=np.array(self.image.constants, dtype=np.float64),
            image_size=image_size,
            steps=steps,
            state_slots=self.state_slots,
            errors=self.errors,
            keepalive=base_ptr,
            event=event,
        )
        program.kept = tuple(self.kept)
        return program
