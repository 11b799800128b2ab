"""The built-in block types: their specs and how each maps onto the C kernel.

Every spec here is registered on import of :mod:`petra.blocks`. For each type,
:data:`KERNELS` gives the C op code, the state size and the order in which its
parameters are laid out in the params array (the spec's param order). Port order in
the instruction is the order of :meth:`BlockSpec.input_ports` / ``outputs``.

Two hooks in ``BlockSpec.extra`` that the config validator may use:

- ``extra["param_inputs"]``: ``{port: param}``; when the input port is left
  unconnected the compiler feeds it the parameter's value as a constant (timer
  presets ``pt``, counter presets ``pv``). The port's ``default`` is NaN, a sentinel
  that only makes leaving it unconnected valid: a config loader that fills defaults
  in passes ``Const(nan)``, which the compiler reads as "unconnected".
- ``extra["check"]``: ``check(params) -> list[str]``, constraints across parameters
  (``low <= high``, ``out_min < out_max``...); each string is one error message.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from petra.blocks._spec import REQUIRED, BlockSpec, Param, Port, PortType, register_spec

B, INT, F, N, ANY = PortType.BOOL, PortType.INT, PortType.FLOAT, PortType.NUM, PortType.ANY

AVERAGE_MAX = 1024
SEED_MAX = float(2**53 - 1)
PERIOD_MIN = 1e-6
WAVEFORMS = ("sine", "square", "ramp", "random")


@dataclass(frozen=True, slots=True)
class Kernel:
    """How a built-in type runs in C: the kernel's op name and state size (AVERAGE adds
    2*n). The op code itself is looked up by the compiler (``petra._core.op_code``), so
    the catalogue loads without the C core."""

    op_name: str
    n_state: int

    @property
    def pure(self) -> bool:
        """Outputs depend on the inputs alone: no state, hence no time either (the
        kernel's ``petra_op_pure`` decides event mode; a test keeps the two equal)."""
        return self.n_state == 0


KERNELS: dict[str, Kernel] = {}

Check = Callable[[Mapping[str, Any]], list[str]]


def _reg(
    name: str,
    category: str,
    doc: str,
    inputs: tuple[Port, ...],
    outputs: tuple[Port, ...],
    *,
    params: tuple[Param, ...] = (),
    n_state: int = 0,
    variadic: str | None = None,
    min_inputs: int = 2,
    max_inputs: int = 8,
    delay: bool = False,
    param_inputs: dict[str, str] | None = None,
    check: Check | None = None,
) -> None:
    extra: dict[str, Any] = {"builtin": True}
    if param_inputs:
        extra["param_inputs"] = param_inputs
    if check is not None:
        extra["check"] = check
    register_spec(
        BlockSpec(
            name=name,
            category=category,
            doc=doc,
            inputs=inputs,
            outputs=outputs,
            params=params,
            variadic=variadic,
            min_inputs=min_inputs,
            max_inputs=max_inputs,
            delay=delay,
            extra=extra,
        )
    )
    KERNELS[name] = Kernel(name, n_state)


def _ordered(lo: str, hi: str, strict: bool) -> Check:
    def check(params: Mapping[str, Any]) -> list[str]:
        a, b = params.get(lo), params.get(hi)
        if a is None or b is None:
            return []
        if (a >= b) if strict else (a > b):
            rel = "<" if strict else "<="
            return [f"{lo} ({a}) must be {rel} {hi} ({b})"]
        return []

    return check


def _scale_check(params: Mapping[str, Any]) -> list[str]:
    if params.get("in_min") == params.get("in_max"):
        return ["in_min and in_max must differ"]
    return []


def _tank_check(params: Mapping[str, Any]) -> list[str]:
    init, lmax = params.get("initial", 0.0), params.get("level_max")
    if lmax is not None and init > lmax:
        return [f"initial ({init}) must be <= level_max ({lmax})"]
    return []


def _register_all() -> None:
    out_b = (Port("out", B),)
    out_n = (Port("out", N),)
    for name, doc in (
        ("AND", "out = in1 AND in2 AND ... (2..8 inputs)"),
        ("OR", "out = in1 OR in2 OR ... (2..8 inputs)"),
        ("XOR", "out = odd parity of in1..inN (2..8 inputs)"),
    ):
        _reg(name, "logic", doc, (Port("in", B),), out_b, variadic="in")
    _reg("NOT", "logic", "out = NOT in", (Port("in", B),), out_b)

    two = (Port("in1", N), Port("in2", N))
    tol = (Param("tolerance", float, 0.0, min=0.0, doc="|in1 - in2| <= tolerance counts as equal"),)
    for name, doc in (("GT", ">"), ("GE", ">="), ("LT", "<"), ("LE", "<=")):
        _reg(name, "comparison", f"out = in1 {doc} in2", two, out_b)
    _reg("EQ", "comparison", "out = in1 == in2 within tolerance", two, out_b, params=tol)
    _reg("NE", "comparison", "out = NOT EQ(in1, in2) within tolerance", two, out_b, params=tol)

    for name, doc in (
        ("ADD", "out = in1 + in2 + ..."),
        ("MUL", "out = in1 * in2 * ..."),
        ("MIN", "out = smallest input (NaN wins)"),
        ("MAX", "out = largest input (NaN wins)"),
    ):
        _reg(name, "arithmetic", doc, (Port("in", N),), out_n, variadic="in")
    _reg("SUB", "arithmetic", "out = in1 - in2", two, out_n)
    _reg("DIV", "arithmetic", "out = in1 / in2; in2 == 0 gives BAD, value kept", two, out_n)
    _reg("ABS", "arithmetic", "out = |in|", (Port("in", N),), out_n)
    _reg(
        "LIMIT",
        "arithmetic",
        "out = in clamped to [mn, mx]",
        (Port("mn", N), Port("in", N), Port("mx", N)),
        out_n,
    )
    _reg(
        "SCALE",
        "arithmetic",
        "linear map of [in_min, in_max] onto [out_min, out_max]",
        (Port("in", N),),
        (Port("out", F),),
        params=(
            Param("in_min"),
            Param("in_max"),
            Param("out_min"),
            Param("out_max"),
            Param("clamp", bool, False, doc="clamp the result to the output range"),
        ),
        check=_scale_check,
    )
    _reg(
        "SEL",
        "selection",
        "out = in1 if g else in0",
        (Port("g", B), Port("in0", ANY), Port("in1", ANY)),
        (Port("out", ANY),),
    )
    _reg(
        "MUX",
        "selection",
        "out = in{k} (k = 1..N); k out of range gives BAD, value kept",
        (Port("in", ANY), Port("k", INT)),
        (Port("out", ANY),),
        variadic="in",
        min_inputs=1,
        max_inputs=7,
    )
    _reg("MOVE", "selection", "out = in", (Port("in", ANY),), (Port("out", ANY),))

    _reg("R_TRIG", "edge", "q = rising edge of clk", (Port("clk", B),), (Port("q", B),), n_state=1)
    _reg("F_TRIG", "edge", "q = falling edge of clk", (Port("clk", B),), (Port("q", B),), n_state=1)
    _reg(
        "SR",
        "bistable",
        "set-dominant latch: q1 = s1 OR (NOT r AND q1)",
        (Port("s1", B), Port("r", B)),
        (Port("q1", B),),
        n_state=1,
    )
    _reg(
        "RS",
        "bistable",
        "reset-dominant latch: q1 = NOT r1 AND (s OR q1)",
        (Port("s", B), Port("r1", B)),
        (Port("q1", B),),
        n_state=1,
    )

    pt_port = Port("pt", N, math.nan, "preset in seconds; unconnected: the pt parameter")
    pt_param = (Param("pt", float, 0.0, min=0.0, doc="preset in seconds (when pt is unconnected)"),)
    timer_out = (Port("q", B), Port("et", F, doc="elapsed time in seconds"))
    for name, doc in (
        ("TON", "on-delay: q goes true pt seconds after in went true"),
        ("TOF", "off-delay: q stays true pt seconds after in went false"),
        ("TP", "pulse: q is true for pt seconds from a rising edge of in"),
    ):
        _reg(
            name,
            "timer",
            doc,
            (Port("in", B), pt_port),
            timer_out,
            params=pt_param,
            n_state=3,
            param_inputs={"pt": "pt"},
        )

    pv_port = Port("pv", N, math.nan, "preset value; unconnected: the pv parameter")
    pv_param = (Param("pv", int, 0, doc="preset value (when pv is unconnected)"),)
    _reg(
        "CTU",
        "counter",
        "up counter: cv += 1 on a rising edge of cu; q = cv >= pv",
        (Port("cu", B), Port("r", B, False), pv_port),
        (Port("q", B), Port("cv", INT)),
        params=pv_param,
        n_state=2,
        param_inputs={"pv": "pv"},
    )
    _reg(
        "CTD",
        "counter",
        "down counter: cv -= 1 on a rising edge of cd; ld loads pv; q = cv <= 0",
        (Port("cd", B), Port("ld", B, False), pv_port),
        (Port("q", B), Port("cv", INT)),
        params=pv_param,
        n_state=2,
        param_inputs={"pv": "pv"},
    )
    _reg(
        "CTUD",
        "counter",
        "up/down counter; qu = cv >= pv, qd = cv <= 0",
        (
            Port("cu", B, False),
            Port("cd", B, False),
            Port("r", B, False),
            Port("ld", B, False),
            pv_port,
        ),
        (Port("qu", B), Port("qd", B), Port("cv", INT)),
        params=pv_param,
        n_state=3,
        param_inputs={"pv": "pv"},
    )

    _reg(
        "PID",
        "control",
        "PID controller with anti-windup, output limits and bumpless manual/auto",
        (
            Port("sp", N, doc="setpoint"),
            Port("pv", N, doc="process value"),
            Port("manual", B, False, "true: out follows man_out"),
            Port("man_out", N, 0.0, "output in manual mode"),
        ),
        (Port("out", F),),
        params=(
            Param("kp", float, REQUIRED, min=0.0, min_exclusive=True, doc="proportional gain"),
            Param("ti", float, REQUIRED, min=0.0, min_exclusive=True, doc="integral time, s"),
            Param("td", float, 0.0, min=0.0, doc="derivative time, s"),
            Param("out_min", float, 0.0),
            Param("out_max", float, 100.0),
            Param("direct", bool, False, doc="direct acting: error = pv - sp"),
        ),
        n_state=2,
        check=_ordered("out_min", "out_max", strict=True),
    )
    _reg(
        "RAMP",
        "control",
        "rate limiter: out follows in at most rise/fall units per second",
        (Port("in", N),),
        (Port("out", F),),
        params=(
            Param("rise", float, REQUIRED, min=0.0, min_exclusive=True, doc="units per second"),
            Param("fall", float, REQUIRED, min=0.0, min_exclusive=True, doc="units per second"),
        ),
        n_state=1,
    )
    _reg(
        "HYSTERESIS",
        "control",
        "q goes true above high, false below low, else holds",
        (Port("in", N),),
        (Port("q", B),),
        params=(Param("high"), Param("low")),
        n_state=1,
        check=_ordered("low", "high", strict=False),
    )
    _reg(
        "AVERAGE",
        "control",
        "moving average of the last n samples",
        (Port("in", N),),
        (Port("out", F),),
        params=(Param("n", int, REQUIRED, min=1, max=AVERAGE_MAX, doc="window in cycles"),),
        n_state=2,
    )
    _reg(
        "LAG",
        "control",
        "first-order lag filter with time constant tau (seconds)",
        (Port("in", N),),
        (Port("out", F),),
        params=(Param("tau", float, REQUIRED, min=0.0, doc="time constant, s"),),
        n_state=1,
    )
    _reg(
        "SIGNAL_GENERATOR",
        "source",
        "sine, square, ramp or seeded random signal from the cycle time",
        (),
        (Port("out", F),),
        params=(
            Param("waveform", str, "sine", choices=WAVEFORMS),
            Param("amplitude", float, 1.0),
            Param("offset", float, 0.0),
            Param("period", float, 1.0, min=PERIOD_MIN, doc="seconds"),
            Param("seed", int, 0, min=0, max=SEED_MAX),
        ),
        n_state=1,
    )
    _reg(
        "TANK",
        "process",
        "tank level from inflow and outflow (m3/s), area (m2), limits; a delay element",
        (Port("inflow", N), Port("outflow", N, 0.0)),
        (Port("level", F), Port("full", B), Port("empty", B)),
        params=(
            Param("area", float, REQUIRED, min=0.0, min_exclusive=True, doc="m2"),
            Param("level_max", float, REQUIRED, min=0.0, min_exclusive=True, doc="m"),
            Param("initial", float, 0.0, min=0.0, doc="level at first scan, m"),
            Param("drain", float, 0.0, min=0.0, doc="free outflow per metre of level, m2/s"),
        ),
        n_state=2,
        delay=True,
        check=_tank_check,
    )
    _reg(
        "DELAY",
        "process",
        "unit delay z^-1: out = in of the previous cycle",
        (Port("in", ANY),),
        (Port("out", ANY),),
        params=(Param("initial", float, 0.0, doc="output at first scan"),),
        n_state=2,
        delay=True,
    )


_register_all()
