"""Running a compiled block program over the process image, once per cycle.

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
The compiler (``_compiler.py``) hands over the blocks in execution order as steps:
each run of consecutive built-ins is one :class:`CRun`, executed by one
``petra_blocks_run`` call; each custom Python block is one :class:`CustomStep`, run
between the runs, in order. The cffi pointers to the instruction, state and params
arrays are made once; those to the image are made when :meth:`Program.run` first sees
an image and reused while the same arrays come back, so the built-in path allocates
nothing per cycle. A custom block that raises makes its outputs BAD for the cycle and
is counted (and logged at most once per ``LOG_INTERVAL_NS`` of scan time); the scan
goes on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from petra import _core
from petra._core import check, ffi, lib
from petra.blocks._custom import CustomBlock, StepContext, log
from petra.blocks._event import EventPlan
from petra.blocks._instance import BlockInstance, Const
from petra.types import Quality

Q_BAD, Q_UNCERTAIN, Q_GOOD = int(Quality.BAD), int(Quality.UNCERTAIN), int(Quality.GOOD)
FLAG_FRESH = _core.BLOCK_FLAG_FRESH
LOG_INTERVAL_NS = 10_000_000_000


@dataclass(slots=True)
class CustomStep:
    """A custom block in the step list: its object, its resolved parameters, and the
    image indices of its ports (outputs may be scratch slots)."""

    block: BlockInstance
    obj: CustomBlock
    params: dict[str, Any]
    in_names: tuple[str, ...]
    in_idx: tuple[int, ...]
    out_names: tuple[str, ...]
    out_idx: tuple[int, ...]
    fresh: bool
    last_log_ns: int | None = None
    node: int = -1  # its node in the event plan (n_instr + its rank among customs)


@dataclass(slots=True)
class CRun:
    """``count`` consecutive built-ins from instruction ``start``; ``ptr`` points at it."""

    start: int
    count: int
    ptr: Any


@dataclass(frozen=True, slots=True)
class StateSlot:
    """Where a built-in's state lives in ``Program.state``, and the (resolved) block it
    belongs to: a hot reload copies the slice when the block's definition is unchanged."""

    block: BlockInstance
    offset: int
    size: int


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
        steps: list[CRun | CustomStep],
        state_slots: dict[str, StateSlot],
        errors: dict[str, int],
        keepalive: Any = None,
        event: bool = False,
    ) -> None:
        self.blocks = tuple(blocks)
        self.n_signals = n_signals
        self.instructions = instructions
        self.params = params
        self.state = state
        self.constants = constants
        self.image_size = image_size
        self.errors = errors
        self.state_slots = state_slots
        self._steps = steps
        self._keepalive = keepalive  # the cdata the run pointers were derived from
        # (new offset, old offset, size) of each state slice taken from the previous
        # program at compile time: carry_state copies them again at the swap.
        self.kept: tuple[tuple[int, int, int], ...] = ()
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
        customs = [s for s in steps if isinstance(s, CustomStep)]
        for j, cs in enumerate(customs):
            cs.node = len(instructions) + j
        self.event: EventPlan | None = None
        if event:
            self.event = EventPlan(
                instructions, image_size, self.output_signals,
                [(cs.in_idx, cs.out_idx, bool(getattr(cs.obj, "pure", False)))
                 for cs in customs],
                _instr_state_sizes(instructions, state_slots))
            self.event.mark_all()

    @property
    def n_builtin(self) -> int:
        return len(self.instructions)

    def carry_state(self, previous: Any) -> None:
        """Copy the kept blocks' state from ``previous`` once more, at the swap: the
        loop ran ``previous`` while this program was compiled, and a count or an
        elapsed time of those cycles must not be lost."""
        old_state = getattr(previous, "state", None)
        if old_state is None:
            return
        for new_off, old_off, size in self.kept:
            self.state[new_off: new_off + size] = old_state[old_off: old_off + size]

    def refresh_fresh(self) -> None:
        """Re-read the first-scan flags after someone cleared some (a restore of
        retained state, :mod:`petra.blocks._retain`)."""
        self._fresh = bool(np.any(self.instructions["flags"] & FLAG_FRESH))

    def custom_steps(self) -> dict[str, CustomStep]:
        """The custom blocks by name (a hot reload keeps the unchanged ones' objects)."""
        return {s.block.name: s for s in self._steps if isinstance(s, CustomStep)}

    def native_run(self) -> tuple[Any, int, Any, Any] | None:
        """``(instructions, count, state, params)`` pointers when the whole program is
        one run of built-ins (or empty) and no first-scan flag is pending: the scan
        then runs the cycle in a single C call. None otherwise (custom blocks)."""
        if self._fresh:
            return None
        if not self._steps:
            return ffi.NULL, 0, self._state_ptr, self._params_ptr
        if len(self._steps) == 1 and type(self._steps[0]) is CRun:
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
        """Execute every block once, in order, on the image (in event mode: the
        blocks the event plan says may produce something new, see ``_event.py``; a
        caller that changes the image itself reports it with ``event.touch``)."""
        if img is not self._img or quality is not self._qual:
            self._bind(img, quality)
        first = 1 if first_scan else 0
        ev = self.event
        if ev is not None:
            self._run_event(ev, img, quality, (now_ns, dt_ns, first_scan))
            return
        for step in self._steps:
            if type(step) is CRun:
                rc = lib.petra_blocks_run(
                    step.ptr, step.count, self._img_ptr, self._q_ptr,
                    self._state_ptr, self._params_ptr, now_ns, dt_ns, first,
                )  # fmt: skip
                if rc < 0:
                    check(rc, "block program run (an instruction the kernel refused)")
            else:
                assert isinstance(step, CustomStep)
                self._run_custom(step, img, quality, (now_ns, dt_ns, first_scan))
        if self._fresh:
            flags = self.instructions["flags"]
            flags &= ~np.uint32(FLAG_FRESH)
            self._fresh = False

    def _run_event(
        self,
        ev: EventPlan,
        img: npt.NDArray[np.float64],
        quality: npt.NDArray[np.uint8],
        clock: tuple[int, int, bool],
    ) -> None:
        now_ns, dt_ns, first_scan = clock
        p = ev.ptr
        if first_scan:
            lib.petra_event_mark_all(p)
        lib.petra_event_begin(p)
        base = self._keepalive
        for step in self._steps:
            if type(step) is CRun:
                rc = lib.petra_event_run(
                    p, base, step.start, step.start + step.count, self._img_ptr, self._q_ptr,
                    self._state_ptr, self._params_ptr, now_ns, dt_ns, 1 if first_scan else 0,
                )  # fmt: skip
                if rc < 0:
                    check(rc, "block program run (an instruction the kernel refused)")
            else:
                assert isinstance(step, CustomStep)
                if not lib.petra_event_take(p, step.node):
                    continue
                p.ran += 1
                outs = step.out_idx
                before = [(img[i].tobytes(), int(quality[i])) for i in outs]
                self._run_custom(step, img, quality, clock)
                for i, (v, q) in zip(outs, before, strict=True):
                    if int(quality[i]) != q or img[i].tobytes() != v:
                        lib.petra_event_touch(p, i)
        if self._fresh:
            flags = self.instructions["flags"]
            flags &= ~np.uint32(FLAG_FRESH)
            self._fresh = False

    def _run_custom(
        self,
        step: CustomStep,
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


def _instr_state_sizes(instructions: npt.NDArray[Any],
                       state_slots: dict[str, StateSlot]) -> list[int]:
    """The state size of each instruction, by its state offset (the compiler lays
    the built-ins' state out in instruction order)."""
    size_at: dict[int, int] = {}
    for s in state_slots.values():  # a stateless block shares its offset with the next
        size_at[s.offset] = max(size_at.get(s.offset, 0), s.size)
    return [size_at.get(int(off), 0) for off in instructions["state"].tolist()]
