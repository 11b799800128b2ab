"""Block semantics on concrete cases, the program compiler, hot reload and custom blocks."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

import petra.blocks as pb
from petra.blocks._builtins import KERNELS
from petra.blocks._runtime import FLAG_FRESH
from petra.errors import ConfigError

BAD, UNCERTAIN, GOOD = 0, 1, 2
MS = 1_000_000


def test_public_surface() -> None:
    for name in (
        "compile_program",
        "Program",
        "BlockInstance",
        "Const",
        "CustomBlock",
        "StepContext",
        "load_entry_points",
        "all_specs",
        "BlockSpec",
    ):
        assert name in pb.__all__
        assert hasattr(pb, name)


def test_every_builtin_registered_with_a_kernel() -> None:
    builtins = {n for n, s in pb.all_specs().items() if s.extra.get("builtin")}
    assert len(builtins) >= 25
    assert builtins == set(KERNELS)
    for name in ("AND", "TON", "PID", "TANK", "DELAY", "SIGNAL_GENERATOR", "CTUD", "MUX"):
        assert name in builtins
    assert pb.get_spec("DELAY").delay and pb.get_spec("TANK").delay
    assert not pb.get_spec("LAG").delay and not pb.get_spec("PID").delay


def run_one(
    block: pb.BlockInstance,
    n: int,
    cycles: list[dict[int, tuple[float, int]]],
    dt_ns: int = 100 * MS,
) -> list[tuple[list[float], list[int]]]:
    """Run one block over a list of per-cycle inputs {index: (value, quality)}."""
    program = pb.compile_program([block], n)
    img, quality = program.new_image()
    seen = []
    for k, inputs in enumerate(cycles):
        for i, (v, q) in inputs.items():
            img[i], quality[i] = v, q
        program.run(img, quality, k * dt_ns, dt_ns, k == 0)
        seen.append((img[:n].tolist(), quality[:n].tolist()))
    return seen


def test_quality_is_min_of_inputs() -> None:
    b = pb.BlockInstance("a", "AND", {"in1": 0, "in2": 1, "in3": 2}, {"out": 3})
    ((vals, quals),) = run_one(b, 4, [{0: (1, GOOD), 1: (1, UNCERTAIN), 2: (1, GOOD)}])
    assert vals[3] == 1.0 and quals[3] == UNCERTAIN
    ((vals, quals),) = run_one(b, 4, [{0: (1, GOOD), 1: (1, UNCERTAIN), 2: (0, BAD)}])
    assert vals[3] == 0.0 and quals[3] == BAD


def test_div_by_zero_is_bad_and_keeps_value() -> None:
    b = pb.BlockInstance("d", "DIV", {"in1": 0, "in2": 1}, {"out": 2})
    seen = run_one(b, 3, [{0: (6, GOOD), 1: (3, GOOD)}, {1: (0, GOOD)}, {1: (-0.0, GOOD)}])
    assert seen[0][0][2] == 2.0 and seen[0][1][2] == GOOD
    assert seen[1][0][2] == 2.0 and seen[1][1][2] == BAD
    assert seen[2][1][2] == BAD


def test_overflow_is_bad() -> None:
    b = pb.BlockInstance("m", "MUL", {"in1": 0, "in2": 1}, {"out": 2})
    ((vals, quals),) = run_one(b, 3, [{0: (1e200, GOOD), 1: (1e200, GOOD)}])
    assert vals[2] == math.inf and quals[2] == BAD


def test_eq_with_tolerance() -> None:
    b = pb.BlockInstance("e", "EQ", {"in1": 0, "in2": 1}, {"out": 2}, {"tolerance": 0.01})
    seen = run_one(b, 3, [{0: (1.0, GOOD), 1: (1.005, GOOD)}, {1: (1.02, GOOD)}])
    assert [s[0][2] for s in seen] == [1.0, 0.0]


def test_ton_on_fake_clock() -> None:
    b = pb.BlockInstance("t", "TON", {"in": 0}, {"q": 1, "et": 2}, {"pt": 0.3})
    on = {0: (1.0, GOOD)}
    seen = run_one(b, 3, [on, {}, {}, {}, {}, {0: (0.0, GOOD)}])
    assert [s[0][1] for s in seen] == [0, 0, 0, 1, 1, 0]
    assert [round(s[0][2], 9) for s in seen] == [0.0, 0.1, 0.2, 0.3, 0.3, 0.0]


def test_preset_param_when_the_loader_filled_the_port_default() -> None:
    """The config loader passes unconnected ports as Const(port.default): NaN means param."""
    spec = pb.get_spec("TON")
    default = next(p.default for p in spec.inputs if p.name == "pt")
    assert isinstance(default, float) and math.isnan(default)
    b = pb.BlockInstance("t", "TON", {"in": 0, "pt": pb.Const(default)}, {"q": 1}, {"pt": 0.2})
    seen = run_one(b, 2, [{0: (1.0, GOOD)}, {}, {}])
    assert [s[0][1] for s in seen] == [0, 0, 1]
    wired = pb.BlockInstance("t", "TON", {"in": 0, "pt": pb.Const(0.1)}, {"q": 1}, {"pt": 5.0})
    seen = run_one(wired, 2, [{0: (1.0, GOOD)}, {}])
    assert [s[0][1] for s in seen] == [0, 1]


def test_tof_and_tp() -> None:
    tof = pb.BlockInstance("t", "TOF", {"in": 0}, {"q": 1}, {"pt": 0.2})
    seen = run_one(tof, 2, [{0: (1.0, GOOD)}, {0: (0.0, GOOD)}, {}, {}, {}])
    assert [s[0][1] for s in seen] == [1, 1, 1, 0, 0]
    tp = pb.BlockInstance("p", "TP", {"in": 0}, {"q": 1}, {"pt": 0.2})
    seen = run_one(tp, 2, [{0: (1.0, GOOD)}, {0: (0.0, GOOD)}, {0: (1.0, GOOD)}, {}, {}])
    assert [s[0][1] for s in seen] == [1, 1, 0, 0, 0]


def test_ctu_counts_rising_edges_and_resets() -> None:
    b = pb.BlockInstance("c", "CTU", {"cu": 0, "r": 1}, {"q": 2, "cv": 3}, {"pv": 2})
    pulses = [
        {0: (1.0, GOOD), 1: (0.0, GOOD)},
        {0: (0.0, GOOD)},
        {0: (1.0, GOOD)},
        {0: (1.0, GOOD)},
        {1: (1.0, GOOD)},
    ]
    seen = run_one(b, 4, pulses)
    assert [s[0][3] for s in seen] == [1, 1, 2, 2, 0]
    assert [s[0][2] for s in seen] == [0, 0, 1, 1, 0]


def test_pid_bumpless_manual_to_auto() -> None:
    pid = pb.BlockInstance(
        "pid", "PID", {"sp": 0, "pv": 1, "manual": 2, "man_out": 3}, {"out": 4},
        {"kp": 2.0, "ti": 10.0, "out_min": 0.0, "out_max": 100.0},
    )  # fmt: skip
    manual = {0: (40.0, GOOD), 1: (35.0, GOOD), 2: (1.0, GOOD), 3: (55.0, GOOD)}
    seen = run_one(pid, 5, [manual, {}, {2: (0.0, GOOD)}], dt_ns=100 * MS)
    assert seen[1][0][4] == 55.0
    # first auto cycle: P = 10, I = 45 + 2*0.1/10*5 = 45.1 -> 55.1, no jump to P alone
    assert abs(seen[2][0][4] - 55.1) < 1e-9


def test_pid_anti_windup_and_bad_input_hold() -> None:
    pid = pb.BlockInstance(
        "pid", "PID", {"sp": 0, "pv": 1}, {"out": 2},
        {"kp": 1.0, "ti": 1.0, "out_min": 0.0, "out_max": 10.0},
    )  # fmt: skip
    cycles = [{0: (100.0, GOOD), 1: (0.0, GOOD)}] + [{}] * 50 + [{0: (0.0, GOOD)}]
    seen = run_one(pid, 3, cycles)
    assert all(s[0][2] == 10.0 for s in seen[:-1])
    # the integral did not wind up: with the error reversed the output leaves the limit at once
    assert seen[-1][0][2] == 0.0
    held = run_one(pid, 3, [{0: (5.0, GOOD), 1: (4.0, GOOD)}, {1: (0.0, BAD)}])
    assert held[1][0][2] == held[0][0][2] and held[1][1][2] == BAD


def test_delay_and_tank_are_one_cycle_late() -> None:
    d = pb.BlockInstance("d", "DELAY", {"in": 0}, {"out": 1}, {"initial": 7.0})
    seen = run_one(d, 2, [{0: (1.0, GOOD)}, {0: (2.0, UNCERTAIN)}, {}])
    assert [s[0][1] for s in seen] == [7.0, 1.0, 2.0]
    assert [s[1][1] for s in seen] == [GOOD, GOOD, UNCERTAIN]
    t = pb.BlockInstance(
        "t",
        "TANK",
        {"inflow": 0},
        {"level": 1, "full": 2},
        {"area": 2.0, "level_max": 1.0, "initial": 0.5},
    )
    seen = run_one(t, 3, [{0: (1.0, GOOD)}, {}, {}], dt_ns=500 * MS)
    assert [s[0][1] for s in seen] == [0.5, 0.75, 1.0]
    assert seen[2][0][2] == 1.0


def test_average_ramp_lag_hysteresis() -> None:
    avg = pb.BlockInstance("a", "AVERAGE", {"in": 0}, {"out": 1}, {"n": 2})
    seen = run_one(avg, 2, [{0: (1.0, GOOD)}, {0: (3.0, GOOD)}, {0: (5.0, BAD)}, {0: (7.0, GOOD)}])
    assert [s[0][1] for s in seen] == [1.0, 2.0, 4.0, 6.0]
    assert [s[1][1] for s in seen] == [GOOD, GOOD, BAD, BAD]
    ramp = pb.BlockInstance("r", "RAMP", {"in": 0}, {"out": 1}, {"rise": 1.0, "fall": 2.0})
    seen = run_one(ramp, 2, [{0: (0.0, GOOD)}, {0: (10.0, GOOD)}, {}, {0: (-10.0, GOOD)}])
    assert [round(s[0][1], 9) for s in seen] == [0.0, 0.1, 0.2, 0.0]
    lag = pb.BlockInstance("l", "LAG", {"in": 0}, {"out": 1}, {"tau": 0.1})
    seen = run_one(lag, 2, [{0: (0.0, GOOD)}, {0: (1.0, GOOD)}])
    assert seen[1][0][1] == 0.5
    hys = pb.BlockInstance("h", "HYSTERESIS", {"in": 0}, {"q": 1}, {"high": 5.0, "low": 1.0})
    seen = run_one(hys, 2, [{0: (3.0, GOOD)}, {0: (6.0, GOOD)}, {0: (3.0, GOOD)}, {0: (0.0, GOOD)}])
    assert [s[0][1] for s in seen] == [0, 1, 1, 0]


def test_mux_sel_and_signal_generator() -> None:
    mux = pb.BlockInstance("m", "MUX", {"in1": 0, "in2": 1, "k": 2}, {"out": 3})
    seen = run_one(
        mux, 4, [{0: (10.0, GOOD), 1: (20.0, UNCERTAIN), 2: (2.0, GOOD)}, {2: (3.0, GOOD)}]
    )
    assert seen[0][0][3] == 20.0 and seen[0][1][3] == UNCERTAIN
    assert seen[1][0][3] == 20.0 and seen[1][1][3] == BAD
    gen = pb.BlockInstance(
        "g",
        "SIGNAL_GENERATOR",
        {},
        {"out": 0},
        {"waveform": "square", "period": 1.0, "amplitude": 2.0},
    )
    seen = run_one(gen, 1, [{}] * 10)
    assert [s[0][0] for s in seen] == [2.0] * 5 + [-2.0] * 5
    rnd = pb.BlockInstance(
        "g", "SIGNAL_GENERATOR", {}, {"out": 0}, {"waveform": "random", "period": 0.1, "seed": 42}
    )
    a, b = run_one(rnd, 1, [{}] * 20), run_one(rnd, 1, [{}] * 20)
    assert a == b and len({s[0][0] for s in a}) > 10
    assert all(-1.0 <= s[0][0] < 1.0 for s in a)


def test_constants_defaults_and_signal_lists() -> None:
    blocks = [
        pb.BlockInstance("add", "ADD", {"in1": 0, "in2": pb.Const(2.5)}, {"out": 1}),
        pb.BlockInstance("ton", "TON", {"in": 3}, {"q": 2}, {"pt": 1.0}),
        pb.BlockInstance("ctu", "CTU", {"cu": 2, "pv": 4}, {"q": 5}),
    ]
    program = pb.compile_program(blocks, 6)
    assert program.input_signals.tolist() == [0, 2, 3, 4]
    assert program.output_signals.tolist() == [1, 2, 5]
    assert program.input_signals.dtype == np.uint32
    assert 2.5 in program.constants.tolist() and 1.0 in program.constants.tolist()
    # each unconnected output (TON.et, CTU.cv) got a scratch slot past the constants
    assert program.image_size == 6 + len(program.constants) + 2


@pytest.mark.parametrize(
    ("block", "key"),
    [
        (pb.BlockInstance("x", "NOPE", {}, {}), "blocks.x.type"),
        (pb.BlockInstance("x", "NOT", {"bad": 0}, {"out": 1}), "blocks.x.inputs.bad"),
        (pb.BlockInstance("x", "NOT", {}, {"out": 1}), "blocks.x.inputs.in"),
        (pb.BlockInstance("x", "AND", {"in1": 0}, {"out": 1}), "blocks.x.inputs"),
        (pb.BlockInstance("x", "LAG", {"in": 0}, {"out": 1}), "blocks.x.params.tau"),
        (pb.BlockInstance("x", "TON", {"in": 0}, {"q": 1}, {"pt": -1.0}), "blocks.x.params.pt"),
        (
            pb.BlockInstance("x", "PID", {"sp": 0, "pv": 1}, {"out": 1}, {"kp": 0.0, "ti": 1.0}),
            "blocks.x.params.kp",
        ),
        (pb.BlockInstance("x", "AVERAGE", {"in": 0}, {"out": 1}, {"n": 2000}), "blocks.x.params.n"),
        (pb.BlockInstance("x", "NOT", {"in": 9}, {"out": 1}), "blocks.x.inputs.in"),
        (
            pb.BlockInstance("x", "HYSTERESIS", {"in": 0}, {"q": 1}, {"high": 1.0, "low": 2.0}),
            "blocks.x.params",
        ),
    ],
)
def test_compile_rejects(block: pb.BlockInstance, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        pb.compile_program([block], 2)
    assert err.value.key_path == key


def test_hot_reload_keeps_state_of_unchanged_blocks() -> None:
    ton = pb.BlockInstance("ton", "TON", {"in": 0}, {"q": 1, "et": 2}, {"pt": 10.0})
    ctu = pb.BlockInstance("ctu", "CTU", {"cu": 0}, {"cv": 3}, {"pv": 5})
    old = pb.compile_program([ton, ctu], 4)
    img, quality = old.new_image()
    img[0], quality[0] = 1.0, GOOD
    for k in range(5):
        old.run(img, quality, k * MS, 100 * MS, k == 0)
    assert round(img[2], 9) == 0.4 and img[3] == 1.0
    lag = pb.BlockInstance("lag", "LAG", {"in": 2}, {"out": 3}, {"tau": 1.0})
    ctu2 = pb.BlockInstance("ctu", "CTU", {"cu": 0, "r": 1}, {"cv": 3}, {"pv": 5})  # rewired
    new = pb.compile_program([lag, ton, ctu2], 4, previous=old)
    img2, quality2 = new.new_image()
    img2[:4], quality2[:4] = img[:4], quality[:4]
    new.run(img2, quality2, 6 * MS, 100 * MS, False)
    assert round(img2[2], 9) == 0.5  # TON kept its elapsed time
    assert img2[3] == 1.0  # CTU is fresh: the input is high, a first-scan rising edge counts 1
    new.run(img2, quality2, 7 * MS, 100 * MS, False)
    assert img2[3] == 1.0 and round(img2[2], 9) == 0.6


def test_hot_reload_keeps_state_across_a_parameter_only_change() -> None:
    """An online change (CODESYS): new presets and gains, same wiring: state kept."""
    ton = pb.BlockInstance("ton", "TON", {"in": 0}, {"q": 1, "et": 2}, {"pt": 10.0})
    ctu = pb.BlockInstance("ctu", "CTU", {"cu": 0}, {"cv": 3}, {"pv": 5})
    old = pb.compile_program([ton, ctu], 4)
    img, quality = old.new_image()
    img[0], quality[0] = 1.0, GOOD
    for k in range(5):
        old.run(img, quality, k * MS, 100 * MS, k == 0)
    ton2 = pb.BlockInstance("ton", "TON", {"in": 0}, {"q": 1, "et": 2}, {"pt": 0.45})
    ctu2 = pb.BlockInstance("ctu", "CTU", {"cu": 0}, {"cv": 3}, {"pv": 6})
    new = pb.compile_program([ton2, ctu2], 4, previous=old)
    assert not np.any(new.instructions["flags"] & FLAG_FRESH)
    img2, quality2 = new.new_image()
    img2[:4], quality2[:4] = img[:4], quality[:4]
    new.run(img2, quality2, 6 * MS, 100 * MS, False)
    assert round(img2[2], 9) == 0.45 and img2[1] == 1.0  # ET kept, clamped to the new pt
    assert img2[3] == 1.0  # the count kept: no new rising edge


class Doubler(pb.CustomBlock):
    spec = pb.BlockSpec(
        name="TEST_DOUBLER",
        category="custom",
        doc="out = 2 * in; raises when in is negative",
        inputs=(pb.Port("in", pb.PortType.NUM),),
        outputs=(pb.Port("out", pb.PortType.NUM), pb.Port("calls", pb.PortType.INT)),
        params=(pb.Param("gain", float, 2.0),),
    )

    def init(self, params: Mapping[str, Any]) -> None:
        self.gain = float(params["gain"])
        self.calls = 0
        self.firsts: list[bool] = []

    def step(self, inputs: Mapping[str, float], ctx: pb.StepContext) -> Mapping[str, Any]:
        self.calls += 1
        self.firsts.append(ctx.first_scan)
        if inputs["in"] < 0:
            raise ValueError("negative input")
        return {"out": self.gain * inputs["in"], "calls": (float(self.calls), GOOD)}


pb.register_custom(Doubler)


def test_custom_block_runs_between_builtins_and_contains_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    blocks = [
        pb.BlockInstance("neg", "SUB", {"in1": 0, "in2": pb.Const(0.0)}, {"out": 1}),
        pb.BlockInstance("dbl", "TEST_DOUBLER", {"in": 1}, {"out": 2, "calls": 3}),
        pb.BlockInstance("after", "ADD", {"in1": 2, "in2": pb.Const(1.0)}, {"out": 4}),
    ]
    program = pb.compile_program(blocks, 5)
    assert len(program._steps) == 3
    img, quality = program.new_image()
    img[0], quality[0] = 3.0, UNCERTAIN
    program.run(img, quality, 0, MS, True)
    assert img[2] == 6.0 and quality[2] == UNCERTAIN and img[4] == 7.0
    assert img[3] == 1.0 and quality[3] == GOOD
    img[0] = -1.0
    with caplog.at_level(logging.WARNING, logger="petra.blocks"):
        for k in range(1, 30):  # 29 failures within 2.9 s: one log line
            program.run(img, quality, k * 100 * MS, 100 * MS, False)
        program.run(img, quality, 11_000 * MS, 100 * MS, False)  # 10 s later: another
    assert program.errors == {"dbl": 30}
    assert quality[2] == BAD and quality[3] == BAD and img[2] == 6.0
    assert quality[4] == BAD and img[4] == 7.0  # ADD ran after it, BAD propagated
    lines = [r for r in caplog.records if "custom_block_error" in r.getMessage()]
    assert len(lines) == 2


def test_custom_block_hot_reload_keeps_object() -> None:
    dbl = pb.BlockInstance("dbl", "TEST_DOUBLER", {"in": 0}, {"out": 1})
    old = pb.compile_program([dbl], 2)
    img, quality = old.new_image()
    old.run(img, quality, 0, MS, False)
    old.run(img, quality, MS, MS, False)
    new = pb.compile_program([dbl], 2, previous=old)
    new.run(img, quality, 2 * MS, MS, False)
    obj = new._steps[0].obj  # type: ignore[union-attr]
    assert isinstance(obj, Doubler) and obj.calls == 3 and obj.firsts == [True, False, False]
    changed = pb.BlockInstance("dbl", "TEST_DOUBLER", {"in": 0}, {"out": 1}, {"gain": 3.0})
    fresh = pb.compile_program([changed], 2, previous=new)
    fresh.run(img, quality, 3 * MS, MS, False)
    obj2 = fresh._steps[0].obj  # type: ignore[union-attr]
    assert obj2 is not obj and obj2.firsts == [True]  # type: ignore[union-attr]


def test_builtin_path_reuses_its_pointers() -> None:
    program = pb.compile_program([pb.BlockInstance("n", "NOT", {"in": 0}, {"out": 1})], 2)
    img, quality = program.new_image()
    program.run(img, quality, 0, MS, True)
    ptr = program._img_ptr
    program.run(img, quality, MS, MS, False)
    assert program._img_ptr is ptr
    with pytest.raises(TypeError):
        program.run(img.astype(np.float32), quality, MS, MS, False)


PLANT = """\
instance: t
signals:
  - {name: run, type: bool}
  - {name: ok, type: bool}
  - {name: alarm, type: bool}
  - {name: done, type: bool}
  - {name: level, type: float}
blocks:
  - {name: both, type: AND, inputs: {in1: run, in2: ok, in3: true}, outputs: {out: alarm}}
  - {name: wait, type: TON, inputs: {in: alarm}, outputs: {q: done}, params: {pt: 2}}
  - {name: hold, type: RAMP, inputs: {in: level}, params: {rise: 1, fall: 1}}
"""


def test_the_compiler_takes_what_the_config_produced() -> None:
    """One BlockInstance from file to program: a plant's blocks (by name, resolved,
    defaults filled) bound to indices compile to the program hand-written instances
    give, with the same definitions, so a reload between the two keeps every state."""
    from petra.config import load_plant_text

    plant = load_plant_text(PLANT)
    index = {s.name: i for i, s in enumerate(plant.config.signals)}
    assert plant.block("both").inputs["in3"] == pb.Const(True)
    assert plant.block("both").n_inputs == 3 and plant.block("wait").n_inputs is None
    bound = [b.bind(index.__getitem__) for b in plant.blocks]
    pt = bound[1].inputs["pt"]  # unconnected preset: the NaN default, "use the parameter"
    assert isinstance(pt, pb.Const) and math.isnan(pt.value)
    hand = [
        pb.BlockInstance("both", "AND", {"in1": 0, "in2": 1, "in3": pb.Const(1.0)}, {"out": 2}),
        pb.BlockInstance("wait", "TON", {"in": 2}, {"q": 3}, {"pt": 2.0}),
        pb.BlockInstance("hold", "RAMP", {"in": 4}, {}, {"rise": 1.0, "fall": 1.0}),
    ]
    by_config = pb.compile_program(bound, len(index))
    by_hand = pb.compile_program(hand, len(index))
    assert by_config.instructions.tobytes() == by_hand.instructions.tobytes()
    assert by_config.params.tolist() == by_hand.params.tolist()
    assert by_config.constants.tobytes() == by_hand.constants.tobytes()
    assert [(s.block.definition(), s.offset, s.size) for s in by_config.state_slots.values()] == [
        (s.block.definition(), s.offset, s.size) for s in by_hand.state_slots.values()]
    reloaded = pb.compile_program(bound, len(index), previous=by_hand)
    assert not (reloaded.instructions["flags"] & FLAG_FRESH).any()


def test_block_instance_helpers() -> None:
    wrapped = pb.Const(pb.Const(2.5))  # type: ignore[arg-type] # untyped callers may wrap
    assert wrapped == pb.Const(2.5) and wrapped.value == 2.5
    b = pb.BlockInstance("x", "NOT", {"in": "a"}, {"out": "b"})
    assert b.bind({"a": 0, "b": 1}.__getitem__) == pb.BlockInstance("x", "NOT", {"in": 0},
                                                                     {"out": 1})
    with pytest.raises(ConfigError) as err:
        pb.compile_program([b], 2)
    assert err.value.key_path == "blocks.x.outputs.out" and "by name" in err.value.message
    same = pb.BlockInstance("x", "NOT", {"in": "a"}, {"out": "b"}, spec=pb.get_spec("NOT"))
    assert same == b and same.definition_hash == b.definition_hash  # spec is not compared
    other = pb.BlockInstance("x", "NOT", {"in": "a"}, {"out": "c"})
    assert other.definition_hash != b.definition_hash
    assert pb.BlockInstance("x", "AND", {"in1": pb.Const(1)}, {}).definition() == (
        pb.BlockInstance("x", "AND", {"in1": pb.Const(1.0)}, {}).definition())
