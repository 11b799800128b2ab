"""Compiling a plant's blocks into a program over the process image, and running it.

The process image
-----------------
``img`` (float64) and ``quality`` (uint8) have ``image_size`` entries: first the
plant's ``n_signals`` signals by segment index, then the constants that block inputs
name (``Program.constants``, quality GOOD, filled once by :meth:`Program.init_image`),
then one scratch entry per output port left unconnected (the kernel always writes
every output). Values are float64 whatever the signal type: bool is 0/1, an int
above 2**53 in magnitude loses precision on the way in.

Steps
-----
Blocks arrive in execution order. Consecutive built-ins form one *run*, executed by
one ``petra_blocks_run`` call; custom Python blocks run between the runs, in order.
The cffi pointers to the instruction, state and params arrays are made once here;
those to the image are made when :meth:`Program.run` first sees an image and reused
while the same arrays come back, so the built-in path allocates nothing per cycle.

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
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from petra import _core
from petra._core import ffi, lib
from petra.blocks._builtins import AVERAGE_MAX, KERNELS
from petra.blocks._custom import CustomBlock, StepContext, custom_class, log
from petra.blocks._spec import REQUIRED, BlockSpec, Param, Port, get_spec
from petra.errors import ConfigError
from petra.types import Quality

Q_BAD, Q_UNCERTAIN, Q_GOOD = int(Quality.BAD), int(Quality.UNCERTAIN), int(Quality.GOOD)
FLAG_FRESH = _core.BLOCK_FLAG_FRESH
MAX_IN, MAX_OUT = 8, 4
LOG_INTERVAL_NS = 10_000_000_000

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


@dataclass(frozen=True, slots=True)
class Const:
    """A constant block input."""

    value: float | int | bool


@dataclass(frozen=True)
class BlockInstance:
    """One block of a plant, already in execution order.

    ``inputs`` maps port names to a signal index or a :class:`Const`; ``outputs``
    maps port names to signal indices. Ports left out take their default (or, for
    ``extra["param_inputs"]`` ports, the parameter); outputs left out are discarded.
    """

    name: str
    type: str
    inputs: Mapping[str, int | Const]
    outputs: Mapping[str, int]
    params: Mapping[str, Any] = field(default_factory=dict)

    def definition(self) -> tuple[Any, ...]:
        """What must be equal for a hot reload to keep this block's state."""
        return (
            self.type,
            tuple(sorted((k, _const_key(v)) for k, v in self.inputs.items())),
            tuple(sorted(self.outputs.items())),
            tuple(sorted((k, repr(v)) for k, v in self.params.items())),
        )


def _const_key(v: int | Const) -> Any:
    if isinstance(v, Const):
        return ("const", struct.pack("<d", float(v.value)))
    return int(v)


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


@dataclass(slots=True)
class _CustomStep:
    block: BlockInstance
    obj: CustomBlock
    params: dict[str, Any]
    in_names: tuple[str, ...]
    in_idx: tuple[int, ...]
    out_names: tuple[str, ...]
    out_idx: tuple[int, ...]
    fresh: bool
    last_log_ns: int | None = None


@dataclass(slots=True)
class _CRun:
    start: int
    count: int
    ptr: Any


class Program:
    """A compiled block program: instruction list, state, params and custom steps."""

    def __init__(
        self,
        blocks: Sequence[BlockInstance],
        n_signals: int,
        *,
        instructions: npt.NDArray[Any],
        params: npt.NDArray[np.float64],
        state: npt.NDArray[np.float64],
        constants: npt.NDArray[np.float64],
        image_size: int,
        steps: list[_CRun | _CustomStep],
        c_slots: dict[str, tuple[tuple[Any, ...], int, int]],
        errors: dict[str, int],
        keepalive: Any = None,
    ) -> None:
        self.blocks = tuple(blocks)
        self.n_signals = n_signals
        self.instructions = instructions
        self.params = params
        self.state = state
        self.constants = constants
        self.image_size = image_size
        self.errors = errors
        self._steps = steps
        self._c_slots = c_slots
        self._keepalive = keepalive  # the cdata the run pointers were derived from
        self._fresh = bool(np.any(instructions["flags"] & FLAG_FRESH))
        reads: set[int] = set()
        writes: set[int] = set()
        for b in blocks:
            reads.update(int(v) for v in b.inputs.values() if not isinstance(v, Const))
            writes.update(int(v) for v in b.outputs.values())
        self.input_signals = np.array(sorted(reads), dtype=np.uint32)
        self.output_signals = np.array(sorted(writes), dtype=np.uint32)
        self._state_ptr = ffi.from_buffer("double[]", state) if len(state) else ffi.NULL
        self._params_ptr = ffi.from_buffer("double[]", params) if len(params) else ffi.NULL
        self._img: npt.NDArray[np.float64] | None = None
        self._qual: npt.NDArray[np.uint8] | None = None
        self._img_ptr: Any = ffi.NULL
        self._q_ptr: Any = ffi.NULL

    @property
    def n_builtin(self) -> int:
        return len(self.instructions)

    def native_run(self) -> tuple[Any, int, Any, Any] | None:
        """``(instructions, count, state, params)`` pointers when the whole program is
        one run of built-ins (or empty) and no first-scan flag is pending: the scan
        then runs the cycle in a single C call. None otherwise (custom blocks)."""
        if self._fresh:
            return None
        if not self._steps:
            return ffi.NULL, 0, self._state_ptr, self._params_ptr
        if len(self._steps) == 1 and type(self._steps[0]) is _CRun:
            step = self._steps[0]
            return step.ptr, step.count, self._state_ptr, self._params_ptr
        return None

    def new_image(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.uint8]]:
        """A zeroed image of ``image_size`` with the constants filled in."""
        img = np.zeros(self.image_size, dtype=np.float64)
        quality = np.zeros(self.image_size, dtype=np.uint8)
        self.init_image(img, quality)
        return img, quality

    def init_image(self, img: npt.NDArray[np.float64], quality: npt.NDArray[np.uint8]) -> None:
        """Fill the constants (GOOD) into an image; scratch slots start BAD."""
        lo, hi = self.n_signals, self.n_signals + len(self.constants)
        img[lo:hi] = self.constants
        quality[lo:hi] = Q_GOOD

    def _bind(self, img: npt.NDArray[np.float64], quality: npt.NDArray[np.uint8]) -> None:
        if img.dtype != np.float64 or quality.dtype != np.uint8:
            raise TypeError("img must be float64 and quality uint8")
        if len(img) < self.image_size or len(quality) < self.image_size:
            raise ValueError(f"image smaller than image_size {self.image_size}")
        if not (img.flags.c_contiguous and quality.flags.c_contiguous and img.flags.writeable):
            raise ValueError("img and quality must be writable C-contiguous arrays")
        self._img_ptr = ffi.from_buffer("double[]", img)
        self._q_ptr = ffi.from_buffer("uint8_t[]", quality)
        self._img, self._qual = img, quality

    def run(
        self,
        img: npt.NDArray[np.float64],
        quality: npt.NDArray[np.uint8],
        now_ns: int,
        dt_ns: int,
        first_scan: bool,
    ) -> None:
        """Execute every block once, in order, on the image."""
        if img is not self._img or quality is not self._qual:
            self._bind(img, quality)
        first = 1 if first_scan else 0
        for step in self._steps:
            if type(step) is _CRun:
                rc = lib.petra_blocks_run(
                    step.ptr, step.count, self._img_ptr, self._q_ptr,
                    self._state_ptr, self._params_ptr, now_ns, dt_ns, first,
                )  # fmt: skip
                if rc < 0:
                    raise RuntimeError(f"petra_blocks_run failed with {rc}")
            else:
                assert isinstance(step, _CustomStep)
                self._run_custom(step, img, quality, (now_ns, dt_ns, first_scan))
        if self._fresh:
            flags = self.instructions["flags"]
            flags &= ~np.uint32(FLAG_FRESH)
            self._fresh = False

    def _run_custom(
        self,
        step: _CustomStep,
        img: npt.NDArray[np.float64],
        quality: npt.NDArray[np.uint8],
        clock: tuple[int, int, bool],
    ) -> None:
        now_ns, dt_ns, first_scan = clock
        inputs = {n: float(img[i]) for n, i in zip(step.in_names, step.in_idx, strict=True)}
        quals = {n: int(quality[i]) for n, i in zip(step.in_names, step.in_idx, strict=True)}
        q_in = min(quals.values(), default=Q_GOOD)
        ctx = StepContext(now_ns, dt_ns, first_scan or step.fresh, step.params, quals)
        step.fresh = False
        try:
            result = step.obj.step(inputs, ctx)
            values = []
            for n in step.out_names:
                r = result[n]
                if isinstance(r, tuple):
                    v, q = float(r[0]), int(r[1])
                    if q not in (Q_BAD, Q_UNCERTAIN, Q_GOOD):
                        raise ValueError(f"output {n}: quality {q} not 0, 1 or 2")
                else:
                    v, q = float(r), q_in
                values.append((v, q))
        except Exception as exc:
            for i in step.out_idx:
                quality[i] = Q_BAD
            name = step.block.name
            self.errors[name] = self.errors.get(name, 0) + 1
            if step.last_log_ns is None or now_ns - step.last_log_ns >= LOG_INTERVAL_NS:
                step.last_log_ns = now_ns
                log.warning(
                    "event=custom_block_error block=%s type=%s errors=%d error=%r",
                    name, step.block.type, self.errors[name], exc,
                )  # fmt: skip
            return
        for i, (v, q) in zip(step.out_idx, values, strict=True):
            img[i] = v
            quality[i] = q


def compile_program(
    instances: Sequence[BlockInstance],
    n_signals: int,
    previous: Program | None = None,
) -> Program:
    """Compile blocks (in execution order) into a :class:`Program`.

    Raises :class:`ConfigError` for what the config validator should already have
    caught (unknown type, port or parameter, value out of range, bad index).
    """
    compiler = _Compiler(n_signals, previous)
    seen: set[str] = set()
    for block in instances:
        if block.name in seen:
            raise _err(block, "duplicate block name")
        seen.add(block.name)
        compiler.add(block)
    return compiler.finish(instances)


class _Compiler:
    """Accumulates instructions, params, state layout and steps, block by block."""

    def __init__(self, n_signals: int, previous: Program | None) -> None:
        self.b = _Builder(n_signals)
        self.n_signals = n_signals
        self.previous = previous
        self.prev_custom = _custom_steps(previous)
        self.rows: list[dict[str, Any]] = []
        self.params: list[float] = []
        self.state_size = 0
        self.plan: list[tuple[str, Any]] = []  # ("c", row index) or ("py", _CustomStep)
        self.c_slots: dict[str, tuple[tuple[Any, ...], int, int]] = {}
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
        step = _CustomStep(
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
        fresh = True
        prev = self.previous
        if prev is not None and block.name in prev._c_slots:
            old_def, old_off, old_size = prev._c_slots[block.name]
            if old_def == block.definition() and old_size == n_state:
                self.kept.append((self.state_size, old_off, n_state))
                fresh = False
        self.c_slots[block.name] = (block.definition(), self.state_size, n_state)
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
        steps: list[_CRun | _CustomStep] = []
        for kind, item in self.plan:
            if kind == "py":
                item.out_idx = tuple(slot(o) for o in item.out_idx)
                steps.append(item)
            elif steps and isinstance(steps[-1], _CRun):
                steps[-1].count += 1
            else:
                steps.append(_CRun(item, 1, None))
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
                if isinstance(step, _CRun):
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
            c_slots=self.c_slots,
            errors=self.errors,
            keepalive=base_ptr,
        )


def _custom_steps(program: Program | None) -> dict[str, _CustomStep]:
    if program is None:
        return {}
    return {s.block.name: s for s in program._steps if isinstance(s, _CustomStep)}
