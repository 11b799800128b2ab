"""One validator of ports and parameters: the config and the compiler give one verdict.

Before ``petra.blocks.resolve_block`` the config (``petra check``) and the compiler each
had their own checks, and they disagreed: a plant could pass ``petra check`` and then be
refused by the scan, or the other way round, or crash the compiler with a non-ConfigError.
Each case below is one of those disagreements, run through both layers on the same
block: both must accept it, or both must refuse it with the same message.
"""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from typing import Any, ClassVar

import pytest

import petra.blocks as pb
from petra.config import ConfigErrors, load_plant_text
from petra.errors import ConfigError

SIGNALS = {"a": "bool", "b": "bool", "x": "float", "y": "float", "n": "int", "o": "float",
           "q": "bool"}
NAMES = list(SIGNALS)


class Labelled(pb.CustomBlock):
    """A custom type with a str parameter without choices and a non-scalar kind."""

    spec = pb.BlockSpec(
        "TEST_LABELLED", "custom", "out = in; carries a label",
        (pb.Port("in", pb.PortType.NUM),), (pb.Port("out", pb.PortType.NUM),),
        (pb.Param("label", str), pb.Param("gain", float, 1.0), pb.Param("tags", list, [])),
    )
    seen: ClassVar[list[Mapping[str, Any]]] = []

    def init(self, params: Mapping[str, Any]) -> None:
        Labelled.seen.append(dict(params))

    def step(self, inputs: Mapping[str, float], ctx: pb.StepContext) -> Mapping[str, Any]:
        return {"out": inputs["in"]}


class Summer(pb.CustomBlock):
    """A custom variadic type whose inputs have a default (0.0)."""

    spec = pb.BlockSpec(
        "TEST_SUM", "custom", "out = in1 + ... + inN", (pb.Port("in", pb.PortType.NUM, 0.0),),
        (pb.Port("out", pb.PortType.NUM),), variadic="in", min_inputs=1, max_inputs=4,
    )

    def step(self, inputs: Mapping[str, float], ctx: pb.StepContext) -> Mapping[str, Any]:
        return {"out": sum(inputs.values())}


def _yaml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and math.isnan(v):
        return ".nan"
    if isinstance(v, float) and math.isinf(v):
        return ".inf" if v > 0 else "-.inf"
    if isinstance(v, list):
        return "[" + ", ".join(_yaml(x) for x in v) + "]"
    return str(v)


def _flow(m: Mapping[str, Any]) -> str:
    return "{" + ", ".join(f"{k}: {_yaml(v)}" for k, v in m.items()) + "}"


def config_verdict(type_: str, inputs: dict[str, Any], outputs: dict[str, str],
                   params: dict[str, Any]) -> list[str]:
    """The config's error messages for one block (signals by name, constants bare)."""
    text = "instance: t\nsignals:\n" + "".join(
        f"  - {{name: {n}, type: {t}}}\n" for n, t in SIGNALS.items())
    text += (f"blocks:\n  - {{name: k, type: {type_}, inputs: {_flow(inputs)}, "
             f"outputs: {_flow(outputs)}, params: {_flow(params)}}}\n")
    try:
        load_plant_text(text)
    except ConfigErrors as exc:
        return [e.message for e in exc.errors]
    return []


def compiler_verdict(type_: str, inputs: dict[str, Any], outputs: dict[str, str],
                     params: dict[str, Any]) -> list[str]:
    """The compiler's error message for the same block, by segment index."""
    ins: dict[str, pb.SignalRef | pb.Const] = {
        k: NAMES.index(v) if isinstance(v, str) else pb.Const(v) for k, v in inputs.items()}
    outs: dict[str, pb.SignalRef] = {k: NAMES.index(v) for k, v in outputs.items()}
    try:
        pb.compile_program([pb.BlockInstance("k", type_, ins, outs, params)], len(NAMES))
    except ConfigError as exc:
        return [exc.message]
    return []


CASES = [
    # variadic count: N is the highest number written, not the number of keys
    ("AND", {"in1": "a", "in3": "b"}, {"out": "q"}, {}, "missing required input 'in2'"),
    ("AND", {"in0": "a", "in1": "a", "in2": "b"}, {"out": "q"}, {}, "unknown input 'in0'"),
    ("AND", {"in01": "a", "in2": "b"}, {"out": "q"}, {}, "missing required input 'in1'"),
    ("AND", {}, {"out": "q"}, {}, "missing required input 'in1'"),
    ("AND", {"in1": "a"}, {"out": "q"}, {}, "takes 2..8 inputs in1..inN, got N = 1"),
    ("TEST_SUM", {"in1": "x", "in3": "y"}, {"out": "o"}, {}, None),  # in2 takes its default
    ("TEST_SUM", {}, {"out": "o"}, {}, None),  # N = min_inputs, all defaults
    ("TEST_SUM", {"in0": "x", "in1": "y"}, {"out": "o"}, {}, "unknown input 'in0'"),
    ("MUX", {"in1": "x", "in2": "y", "in8": "x", "k": "n"}, {"out": "o"}, {},
     "takes 1..7 inputs in1..inN, got N = 8"),
    # an int parameter takes an int: not 2.0, and inf/NaN are refused, not a crash
    ("AVERAGE", {"in": "x"}, {"out": "o"}, {"n": 2.0}, "parameter 'n' takes an int, got 2.0"),
    ("AVERAGE", {"in": "x"}, {"out": "o"}, {"n": math.inf}, "takes an int, got inf"),
    ("AVERAGE", {"in": "x"}, {"out": "o"}, {"n": math.nan}, "takes an int, got nan"),
    ("SIGNAL_GENERATOR", {}, {"out": "o"}, {"seed": 2.0}, "'seed' takes an int, got 2.0"),
    # the cross-parameter checks of extra["check"] run in the config too
    ("HYSTERESIS", {"in": "x"}, {"q": "q"}, {"high": 1.0, "low": 2.0},
     "low (2.0) must be <= high (1.0)"),
    ("PID", {"sp": "x", "pv": "y"}, {"out": "o"},
     {"kp": 1.0, "ti": 1.0, "out_min": 5.0, "out_max": 5.0}, "out_min (5.0) must be <"),
    ("SCALE", {"in": "x"}, {"out": "o"},
     {"in_min": 1.0, "in_max": 1.0, "out_min": 0.0, "out_max": 1.0},
     "in_min and in_max must differ"),
    ("TANK", {"inflow": "x"}, {"level": "o"}, {"area": 1.0, "level_max": 1.0, "initial": 2.0},
     "initial (2.0) must be <= level_max (1.0)"),
    # str parameters without choices, and other kinds, are checked by kind
    ("TEST_LABELLED", {"in": "x"}, {"out": "o"}, {"label": "pump 3", "tags": [1, 2]}, None),
    ("TEST_LABELLED", {"in": "x"}, {"out": "o"}, {"label": 3}, "'label' takes a string, got 3"),
    ("TEST_LABELLED", {"in": "x"}, {"out": "o"}, {"label": "p", "tags": 1},
     "'tags' takes a list, got 1"),
    # the same wording for the rest, which both layers already refused
    ("NOT", {"inn": "a"}, {"out": "q"}, {}, "unknown input 'inn' of NOT; did you mean 'in'?"),
    ("NOT", {"in": "a"}, {"oops": "q"}, {}, "unknown output 'oops' of NOT; NOT has outputs out"),
    ("NOT", {"in": "a"}, {"out": "q"}, {"gain": 1}, "unknown parameter 'gain' of NOT; NOT has"),
    ("LAG", {"in": "x"}, {"out": "o"}, {}, "missing required parameter 'tau' of LAG (a number)"),
    ("LAG", {"in": "x"}, {"out": "o"}, {"tau": math.inf}, "'tau' must be finite, got inf"),
    # an int beyond float64 is refused, not an OverflowError in petra check or the scan
    ("LAG", {"in": "x"}, {"out": "o"}, {"tau": 10**400}, "'tau' must be finite, got 1000"),
    ("ADD", {"in1": "x", "in2": 10**400}, {"out": "o"}, {}, "beyond the float64 range"),
    ("SIGNAL_GENERATOR", {}, {"out": "o"}, {"waveform": "sin"},
     "must be one of sine, square, ramp, random, got 'sin'; did you mean 'sine'?"),
    ("SIGNAL_GENERATOR", {}, {"out": "o"}, {"seed": 2**60},
     "'seed' must be <= 9007199254740991, got"),
    ("TON", {"in": "a"}, {"q": "q"}, {"pt": -1.0}, "'pt' must be >= 0, got -1.0"),
    ("AND", {"in1": "a", "in2": "b", "in3": "a"}, {"out": "q"}, {}, None),
]


@pytest.fixture(scope="module", autouse=True)
def _custom_types() -> None:
    pb.register_custom(Labelled)
    pb.register_custom(Summer)


@pytest.mark.parametrize(("type_", "inputs", "outputs", "params", "expect"), CASES)
def test_config_and_compiler_agree(type_: str, inputs: dict[str, Any], outputs: dict[str, str],
                                   params: dict[str, Any], expect: str | None) -> None:
    by_config = config_verdict(type_, inputs, outputs, params)
    by_compiler = compiler_verdict(type_, inputs, outputs, params)
    assert (by_config == []) == (by_compiler == []), (by_config, by_compiler)  # one verdict
    if expect is None:
        assert by_config == [] and by_compiler == []
        return
    assert [m for m in by_config if expect in m], by_config
    assert len(by_compiler) == 1 and by_compiler[0] in by_config, (by_compiler, by_config)
    if len(by_config) == 1:
        assert expect in by_compiler[0]


def test_float_parameter_given_an_int_is_a_float_on_both_paths() -> None:
    """Both layers hand a custom block ``gain: 2`` as 2.0, and a reload that only
    respells 2 as 2.0 keeps the block (its definition is unchanged)."""
    Labelled.seen.clear()
    block = pb.BlockInstance("k", "TEST_LABELLED", {"in": 0}, {"out": 1},
                             {"label": "l", "gain": 2})
    old = pb.compile_program([block], 2)
    assert Labelled.seen == [{"label": "l", "gain": 2.0, "tags": []}]
    assert type(Labelled.seen[0]["gain"]) is float
    respelt = pb.BlockInstance("k", "TEST_LABELLED", {"in": 0}, {"out": 1},
                               {"label": "l", "gain": 2.0})
    pb.compile_program([respelt], 2, previous=old)
    assert len(Labelled.seen) == 1  # not re-created
    plant = load_plant_text(
        "instance: t\nsignals:\n  - {name: x, type: float}\n  - {name: o, type: float}\n"
        "blocks:\n  - {name: k, type: TEST_LABELLED, inputs: {in: x}, outputs: {out: o},"
        " params: {label: l, gain: 2}}\n")
    assert plant.block("k").params == {"label": "l", "gain": 2.0, "tags": []}
    assert type(plant.block("k").params["gain"]) is float


def test_resolve_block_fills_defaults_and_reports_every_problem() -> None:
    spec = pb.get_spec("CTU")
    res = pb.resolve_block(pb.BlockInstance("c", "CTU", {"cu": 3}, {"cv": 4}), spec)
    assert res.problems == ()
    assert [p.name for p in res.ports] == ["cu", "r", "pv"]
    assert res.block.spec is spec
    assert res.block.params == {"pv": 0}
    assert res.block.inputs["cu"] == 3 and res.block.inputs["r"] == pb.Const(False)
    assert math.isnan(float(res.block.inputs["pv"].value))  # type: ignore[union-attr]
    bad = pb.BlockInstance("c", "CTU", {"clk": 3}, {"nope": 4}, {"pv": 1.5, "x": 1})
    problems = pb.resolve_block(bad, spec).problems
    assert [(p.key, p.at_key, p.absent) for p in problems] == [
        (("inputs", "clk"), True, False),
        (("inputs", "cu"), False, True),
        (("outputs", "nope"), True, False),
        (("params", "x"), True, False),
        (("params", "pv"), False, False),
    ]


def test_cross_check_waits_for_valid_parameters() -> None:
    """HYSTERESIS's low <= high is not evaluated on a value that failed on its own."""
    spec = pb.get_spec("HYSTERESIS")
    block = pb.BlockInstance("h", "HYSTERESIS", {"in": 0}, {"q": 1}, {"high": "x", "low": 2.0})
    problems = pb.resolve_block(block, spec).problems
    assert [p.key for p in problems] == [("params", "high")]


def test_resolve_params_raises_the_first_problem() -> None:
    spec = pb.get_spec("RAMP")
    with pytest.raises(ConfigError) as err:
        pb.resolve_params(pb.BlockInstance("r", "RAMP", {}, {}, {"rise": 0.0}), spec)
    assert err.value.key_path == "blocks.r.params.rise"
    assert "must be > 0" in err.value.message
    values = pb.resolve_params(pb.BlockInstance("r", "RAMP", {}, {}, {"rise": 1, "fall": 2}),
                               spec)
    assert values == {"rise": 1.0, "fall": 2.0}


def test_the_validator_runs_without_the_c_core() -> None:
    """The catalogue, BlockInstance and resolve_block load with petra._native blocked;
    the config reports a cross-parameter error without it."""
    code = textwrap.dedent("""
        import sys
        sys.modules["petra._native"] = None
        import petra.blocks as pb
        from petra.config import ConfigErrors, load_plant_text
        spec = pb.get_spec("HYSTERESIS")
        res = pb.resolve_block(pb.BlockInstance("h", "HYSTERESIS", {"in": "x"}, {},
                                                {"high": 1.0, "low": 2.0}), spec)
        print(res.problems[0].message)
        try:
            load_plant_text("instance: t\\nsignals: [{name: x, type: float}]\\nblocks:\\n"
                            "  - {name: h, type: HYSTERESIS, inputs: {in: x},"
                            " params: {high: 1, low: 2}}\\n")
        except ConfigErrors as exc:
            print(exc.errors[0].format())
        print(len(pb.all_specs()), "petra.blocks._compiler" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout.splitlines()
    assert out[0] == "low (2.0) must be <= high (1.0)"
    assert out[1].endswith(": blocks[0].params: low (2.0) must be <= high (1.0)")
    count, compiler_loaded = out[2].split()
    assert int(count) >= 25 and compiler_loaded == "False"
