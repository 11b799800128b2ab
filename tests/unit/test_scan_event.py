"""Event mode runs only the blocks whose inputs changed, and gives the full cycle's
result bit for bit: a property test over random plants and change patterns.

Two segments hold the same random plant; one engine runs the full cycle, the other
event mode, and after every cycle the test compares the process images, the block
state, every slot, and the outputs each scan wrote that cycle (so a write timestamp
is the same cycle's in both: the timestamp itself is the wall clock's)."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from itertools import count
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from petra._core import lib
from petra.blocks import (
    BlockInstance,
    BlockSpec,
    Const,
    CustomBlock,
    Port,
    PortType,
    StepContext,
    compile_program,
    get_spec,
    register_custom,
)
from petra.blocks._builtins import KERNELS
from petra.blocks._custom import StepResult
from petra.scan import FakeClock, MonotonicClock, ScanEngine
from petra.shm import JournalConsumer, Segment, SignalDef, SignalType, unlink_instance

MS = 1_000_000
_names = count()

REQUIRED_PARAMS: dict[str, dict[str, Any]] = {
    "SCALE": {"in_min": 0.0, "in_max": 10.0, "out_min": 0.0, "out_max": 100.0},
    "PID": {"kp": 1.0, "ti": 1.0},
    "RAMP": {"rise": 1.0, "fall": 1.0},
    "HYSTERESIS": {"high": 1.0, "low": 0.0},
    "AVERAGE": {"n": 3},
    "LAG": {"tau": 1.0},
    "TANK": {"area": 1.0, "level_max": 10.0},
}
# Blocks whose result does not depend on dt: the real-clock (C cycle) variant uses
# only these, since two engines never wake at the same instants.
DT_FREE = sorted(t for t in KERNELS
                 if t not in ("TON", "TOF", "TP", "PID", "RAMP", "LAG", "SIGNAL_GENERATOR",
                              "TANK"))
VALUES = [0.0, 1.0, -1.0, 2.5, 7.0, -3.25, 1e300, math.inf, -math.inf, math.nan]


class EvGain(CustomBlock):
    """out = 2 * in, declared pure: stepped only when its input changed."""

    spec = BlockSpec("EV_GAIN", "custom", "out = 2 * in", (Port("in", PortType.NUM),),
                     (Port("out", PortType.NUM),))
    pure = True

    def step(self, inputs: Mapping[str, float], ctx: StepContext) -> StepResult:
        return {"out": inputs["in"] * 2.0}


class EvCount(CustomBlock):
    """Counts its steps: not pure, so stepped every cycle."""

    spec = BlockSpec("EV_COUNT", "custom", "out = steps + in", (Port("in", PortType.NUM),),
                     (Port("out", PortType.NUM),))

    def init(self, params: Mapping[str, Any]) -> None:
        self.n = 0

    def step(self, inputs: Mapping[str, float], ctx: StepContext) -> StepResult:
        self.n += 1
        return {"out": self.n + inputs["in"]}


register_custom(EvGain)
register_custom(EvCount)


@st.composite
def plants(draw: st.DrawFn, types: list[str]) -> tuple[list[SignalDef], list[BlockInstance],
                                                        int]:
    """A random plant: inputs, then one signal per connected block output. Block
    inputs come from the plant's inputs, any block's outputs (earlier: same cycle;
    later or its own: feedback, the next cycle) or constants."""
    kinds = [SignalType.FLOAT, SignalType.BOOL, SignalType.INT]
    n_in = draw(st.integers(1, 6))
    defs = [SignalDef(f"i{k}", draw(st.sampled_from(kinds))) for k in range(n_in)]
    n_blocks = draw(st.integers(1, 14))
    # A small palette per plant: each type shows up several times, in more contexts.
    palette = draw(st.lists(st.sampled_from(types), min_size=1, max_size=4, unique=True))
    shapes: list[tuple[str, list[str], dict[str, int]]] = []
    for b in range(n_blocks):
        t = draw(st.sampled_from(palette))
        spec = get_spec(t)
        nvar = draw(st.integers(2, 3)) if spec.variadic else None
        ports = [p.name for p in spec.input_ports(nvar)]
        outs: dict[str, int] = {}
        for o in spec.outputs:
            if draw(st.booleans()) or not outs:
                outs[o.name] = len(defs)
                defs.append(SignalDef(f"b{b}_{o.name}", draw(st.sampled_from(kinds))))
        shapes.append((t, ports, outs))
    n_sig = len(defs)
    blocks = []
    for b, (t, ports, outs) in enumerate(shapes):
        ins: dict[str, int | Const] = {}
        for port in ports:
            pick = draw(st.integers(0, 7))
            if (t == "MUX" and port == "k") or pick == 0:
                ins[port] = Const(float(draw(st.sampled_from([0, 1, 2, 3.5]))))
            elif pick <= 3:
                ins[port] = draw(st.integers(0, n_in - 1))
            else:
                ins[port] = draw(st.integers(0, n_sig - 1))
        blocks.append(BlockInstance(f"blk{b}", t, ins, outs, dict(REQUIRED_PARAMS.get(t, {}))))
    return defs, blocks, n_in


def changes(n_in: int, n_sig: int) -> st.SearchStrategy[list[list[tuple[int, float, int]]]]:
    """Per cycle, the writes done before it: mostly to inputs, now and then to a
    block output (which the scan must not copy in), often none at all."""
    target = st.one_of(st.integers(0, n_in - 1), st.integers(0, n_in - 1),
                       st.integers(0, n_in - 1), st.integers(0, n_sig - 1))
    write = st.tuples(target, st.sampled_from(VALUES),
                      st.sampled_from([2, 2, 2, 1, 0]))
    idle: st.SearchStrategy[list[tuple[int, float, int]]] = st.just([])
    cycle = st.one_of(idle, st.lists(write, min_size=1, max_size=4))
    return st.lists(cycle, min_size=4, max_size=16)


def _value(t: SignalType, v: float) -> bool | int | float:
    if t == SignalType.BOOL:
        return bool(not math.isnan(v) and v != 0.0)
    if t == SignalType.INT:
        return int(v) if math.isfinite(v) and abs(v) < 2**62 else -5
    return v


class JitterClock(FakeClock):
    """A fake clock that wakes each cycle late by a different 0..9 ms (a fixed
    sequence, the same for both twins): dt varies from cycle to cycle, so a timer
    that event mode stops running must hold for any dt, not only the period. Every
    fifth cycle wakes a whole period late and the next one on time: the same instant,
    dt = 0, where a timing timer's state does not move."""

    def __init__(self) -> None:
        super().__init__(start_ns=0)
        self._n = 0

    def wait_until(self, deadline_ns: int) -> int:
        self._n += 1
        self.lateness_ns = {3: 10 * MS, 4: 0}.get(self._n % 5, (self._n * 7_919_993) % (9 * MS))
        return super().wait_until(deadline_ns)


class Twin:
    """One scan (full or event) of a plant on its own segment."""

    def __init__(self, defs: list[SignalDef], blocks: list[BlockInstance], event: bool,
                 real: bool, jitter: bool = False) -> None:
        self.name = f"t-ev-{os.getpid()}-{next(_names)}"
        unlink_instance(self.name)
        self.seg = Segment.create(self.name, defs, journal_capacity=1 << 12)
        self.program = compile_program(blocks, len(defs), event=event)
        clock: FakeClock | MonotonicClock = (
            MonotonicClock() if real else JitterClock() if jitter else FakeClock(start_ns=0))
        self.engine = ScanEngine(self.seg, self.program, MS // 10 if real else 10 * MS, clock,
                                 record_stats=False)
        self.journal = JournalConsumer(self.seg)
        self.outputs = {int(k) for k in self.program.output_signals}

    def run(self, cycles: list[list[tuple[int, float, int]]],
            defs: list[SignalDef]) -> list[tuple[Any, ...]]:
        """Run every cycle in one ``engine.run`` (so dt is the clock's, not always the
        period), doing each cycle's writes just before it (``should_stop`` is called
        between cycles). Returns per cycle: the outputs written (slot, value bits,
        quality, in order), the image, the block state and every slot."""
        snaps: list[tuple[Any, ...]] = []

        def between() -> bool:
            n = self.engine.counters.cycles
            if n:
                snaps.append(self._snapshot(defs))
            if n == len(cycles):
                return True
            for k, v, q in cycles[n]:
                self.seg.write_index(k, _value(defs[k].type, v), quality=q)
            return False

        self.engine.run(between)
        return snaps

    def _snapshot(self, defs: list[SignalDef]) -> tuple[Any, ...]:
        written = []
        while len(batch := self.journal.read()):
            for i in range(len(batch)):
                if int(batch.slot[i]) in self.outputs:
                    written.append((int(batch.slot[i]), int(batch.value[i]),
                                    int(batch.quality[i])))
        img, q = self.engine.image
        slots = []
        for k in range(len(defs)):
            r = self.seg.read_index(k)
            slots.append((repr(r.value), r.quality))
        return written, img.tobytes() + q.tobytes(), self.program.state.tobytes(), slots

    def close(self) -> None:
        self.seg.close()
        unlink_instance(self.name)


def run_twins(defs: list[SignalDef], blocks: list[BlockInstance],
              cycles: list[list[tuple[int, float, int]]], real: bool,
              jitter: bool = False) -> None:
    full = Twin(defs, blocks, False, real, jitter)
    event = Twin(defs, blocks, True, real, jitter)
    try:
        # Two idle cycles first: the first two run everything (cold start, then the
        # journal cursor's priming read), so changes must come after them to test
        # what event mode skips.
        plan = [[], [], *cycles]
        fs, es = full.run(plan, defs), event.run(plan, defs)
        assert len(fs) == len(es) == len(plan)
        for n, (f, e) in enumerate(zip(fs, es, strict=True)):
            assert f[0] == e[0], f"cycle {n}: outputs written differ"
            assert f[1] == e[1], f"cycle {n}: images differ"
            assert f[2] == e[2], f"cycle {n}: state"
            assert f[3] == e[3], f"cycle {n}: slots"
    finally:
        full.close()
        event.close()


Scenario = tuple[list[SignalDef], list[BlockInstance], list[list[tuple[int, float, int]]]]


@st.composite
def scenario(draw: st.DrawFn, types: list[str]) -> Scenario:
    defs, blocks, n_in = draw(plants(types))
    return defs, blocks, draw(changes(n_in, len(defs)))


ALL_TYPES = [*sorted(KERNELS), "EV_GAIN", "EV_COUNT"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario(ALL_TYPES), st.booleans())
def test_event_mode_equals_full_cycle(case: Scenario, jitter: bool) -> None:
    """Python cycle path (fake clock, dt fixed or varying), every built-in and custom
    blocks."""
    run_twins(*case, real=False, jitter=jitter)


TIMERS = ["TON", "TOF", "TP", "NOT", "R_TRIG", "MOVE"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario(TIMERS))
def test_timers_settle_like_the_full_cycle(case: Scenario) -> None:
    """Timers stop running in event mode once they stop timing: with dt varying
    from cycle to cycle, still the full cycle's result (timers and what feeds them)."""
    run_twins(*case, real=False, jitter=True)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario(DT_FREE))
def test_event_mode_equals_full_cycle_in_c(case: Scenario) -> None:
    """The one-call C cycle (real clock), built-ins whose result ignores dt."""
    run_twins(*case, real=True)


def test_every_builtin_is_classified() -> None:
    """The kernel's purity agrees with the catalogue: pure iff the block keeps no
    state (and so reads no time)."""
    from petra._core import op_code

    for name, kernel in KERNELS.items():
        assert bool(lib.petra_op_pure(op_code(kernel.op_name))) == kernel.pure, name
    assert {n for n, k in KERNELS.items() if k.pure} == {
        "AND", "OR", "XOR", "NOT", "GT", "GE", "LT", "LE", "EQ", "NE", "ADD", "MUL", "MIN",
        "MAX", "SUB", "DIV", "ABS", "LIMIT", "SCALE", "SEL", "MUX", "MOVE"}


@pytest.fixture
def chain() -> Iterator[tuple[Segment, Any, ScanEngine]]:
    """100 inputs, 100 NOT blocks (one per input) and a TON (PT 50 ms) on the first
    output."""
    name = f"t-evc-{os.getpid()}"
    unlink_instance(name)
    defs = [SignalDef(f"i{k}", SignalType.BOOL) for k in range(100)]
    defs += [SignalDef(f"o{k}", SignalType.BOOL) for k in range(100)]
    defs += [SignalDef("t", SignalType.BOOL)]
    blocks = [BlockInstance(f"n{k}", "NOT", {"in": k}, {"out": 100 + k}, {}) for k in range(100)]
    blocks.append(BlockInstance("ton", "TON", {"in": 100, "pt": Const(0.05)}, {"q": 200}, {}))
    seg = Segment.create(name, defs)
    program = compile_program(blocks, len(defs), event=True)
    engine = ScanEngine(seg, program, 10 * MS, FakeClock(start_ns=0), record_stats=False)
    yield seg, program, engine
    seg.close()
    unlink_instance(name)


def test_idle_cycle_runs_only_the_timing_blocks(chain: tuple[Segment, Any, ScanEngine]) -> None:
    seg, program, engine = chain
    engine.run(lambda: False, max_cycles=1)
    assert program.event.ran == 101  # first cycle: everything
    # the second cycle reads every input once more (the journal cursor's priming)
    engine.run(lambda: False, max_cycles=2)
    assert program.event.ran == 101
    engine.run(lambda: False, max_cycles=3)
    assert program.event.ran == 1  # idle: the TON alone, timing (o0 = NOT i0 is true)
    assert program.event.compared == 0
    seg.write_index(7, True)
    seg.write_index(0, True)
    engine.run(lambda: False, max_cycles=4)
    assert program.event.ran == 3  # NOT 0, NOT 7 and the TON
    # o0 and o7 changed; so did the TON's q, in quality: o0 was UNCERTAIN (i0 never
    # written) and is GOOD now
    assert program.event.compared == 3
    assert seg.read_index(107).value is False and seg.read_index(100).value is False
    # o0 fell at cycle 4, so the TON stopped timing: one more run sees its state
    # settled (reset), then an idle cycle runs nothing at all
    engine.run(lambda: False, max_cycles=5)
    assert program.event.ran == 1
    engine.run(lambda: False, max_cycles=6)
    assert program.event.ran == 0 and program.event.compared == 0
    assert seg.read_index(200).value is False
    # i0 false again: the TON times 50 ms at 10 ms a cycle, running every cycle, and
    # stops running once Q is up and ET held at PT
    seg.write_index(0, False)
    ran = []
    for n in range(7, 16):
        engine.run(lambda: False, max_cycles=n)
        ran.append(program.event.ran)
    assert seg.read_index(200).value is True
    assert ran[0] == 2 and ran[-1] == 0 and all(r == 1 for r in ran[1:5]), ran


def test_scan_mode_travels_from_the_config_to_the_program(tmp_path: Any) -> None:
    """``scan: {mode: event}`` reaches the scan process and compiles an event plan."""
    from petra.config import load_plant
    from petra.scan._plant import ScanPlant
    from petra.scan._process import build_program

    path = tmp_path / "plant.yaml"
    path.write_text(
        "instance: evmode\nscan: {period: 10, mode: event}\n"
        "signals:\n  - {name: a, type: bool}\n  - {name: b, type: bool}\n"
        "blocks:\n  - {name: n, type: NOT, inputs: {in: a}, outputs: {out: b}}\n")
    plant = ScanPlant.loads(ScanPlant.from_plant(load_plant(path)).dumps())
    assert plant.scan.mode == "event"
    name = f"t-evm-{os.getpid()}"
    unlink_instance(name)
    seg = Segment.create(name, plant.signal_defs())
    try:
        program: Any = build_program(plant, seg)
        assert program.event is not None and program.event.n_always == 0
        path.write_text(path.read_text().replace(", mode: event", ""))
        default = ScanPlant.loads(ScanPlant.from_plant(load_plant(path)).dumps())
        assert default.scan.mode == "full"
        assert getattr(build_program(default, seg), "event", None) is None
    finally:
        seg.close()
        unlink_instance(name)


def test_fan_record_matches_the_c_layout() -> None:
    """The event plan's fan array (numpy) has petra_fan_t's layout (csrc/event.h)."""
    from petra._core import ffi
    from petra.blocks._event import FAN_DTYPE

    assert FAN_DTYPE.itemsize == ffi.sizeof("petra_fan_t")
    fields = FAN_DTYPE.fields
    assert fields is not None
    assert fields["out_pos"][1] == ffi.offsetof("petra_fan_t", "out_pos")
