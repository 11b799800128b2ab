"""The C block kernel agrees with the Python reference model, bit for bit.

Hypothesis builds programs of random built-in blocks with random valid parameters
and drives them with random input sequences: values include NaN, +-inf, -0.0 and
int extremes as float64, qualities are random, dt varies (zero and negative too),
first_scan comes at random, and hot-reload freshness is exercised through the
PETRA_BF_FRESH flag of the first cycle. After every cycle the image, qualities and
state must be identical (all NaNs count as equal; everything else bitwise).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import petra.blocks as pb
from petra.blocks._builtins import KERNELS
from petra.blocks._reference import reference_run

BUILTINS = sorted(KERNELS)
FLOAT_EXTREMES = [
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.5,
    math.nan,
    math.inf,
    -math.inf,
    float(2**63 - 1),
    float(-(2**63)),
    float(2**53 + 1),
    2147483647.0,
    -2147483648.0,
    1e308,
    -1e308,
    5e-324,
]
values = st.one_of(
    st.sampled_from(FLOAT_EXTREMES),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-5, 5).map(float),
    st.sampled_from([0.0, 1.0]),
)
moderate = st.one_of(st.floats(-100.0, 100.0), st.integers(-3, 3).map(float))
qualities = st.integers(0, 2)
mostly_good = st.sampled_from([2, 2, 2, 2, 1, 0])
dts = st.one_of(
    st.integers(0, 2_000_000_000),
    st.sampled_from([0, -1, 1, 1_000_000, 10_000_000, 2**62]),
)


def bits_equal(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> bool:
    """Bitwise equality of float64 arrays where any two NaNs are equal."""
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    if not np.array_equal(nan_a, nan_b):
        return False
    return bool(np.array_equal(a.view(np.uint64)[~nan_a], b.view(np.uint64)[~nan_b]))


@st.composite
def param_values(draw: st.DrawFn, spec: pb.BlockSpec) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in spec.params:
        if p.choices is not None:
            out[p.name] = draw(st.sampled_from(p.choices))
        elif p.kind is bool:
            out[p.name] = draw(st.booleans())
        elif p.kind is int:
            lo = int(p.min) if p.min is not None else -100
            hi = int(min(p.max, lo + 1000)) if p.max is not None else 100
            if spec.name == "AVERAGE":
                hi = 6
            out[p.name] = draw(st.integers(lo, hi))
        else:
            flo = p.min if p.min is not None else -1e6
            v = draw(
                st.one_of(
                    st.floats(flo, 1e6, exclude_min=p.min_exclusive, allow_nan=False),
                    st.sampled_from([flo + 1.0, flo + 0.25, 1e-3 + flo, 1e9 + flo]),
                )
            )
            if p.min_exclusive and v <= flo:
                v = flo + 1.0
            out[p.name] = v
    check = spec.extra.get("check")
    if check is not None and check(out):
        # repair the cross-parameter constraints rather than filtering examples away
        if spec.name == "SCALE":
            out["in_max"] = out["in_min"] + 1.0
        elif spec.name == "PID":
            out["out_max"] = out["out_min"] + 1.0
        elif spec.name == "HYSTERESIS":
            out["low"], out["high"] = sorted((out["low"], out["high"]))
        elif spec.name == "TANK":
            out["initial"] = out["level_max"]
    assert check is None or not check(out)
    return out


@st.composite
def block(draw: st.DrawFn, type_name: str, n_signals: int, index: int) -> pb.BlockInstance:
    spec = pb.get_spec(type_name)
    n_var = None
    if spec.variadic is not None:
        n_var = draw(st.integers(spec.min_inputs, spec.max_inputs))
    inputs: dict[str, int | pb.Const] = {}
    for port in spec.input_ports(n_var):
        optional = port.default is not None
        choice = draw(
            st.sampled_from(["signal", "const", "none"] if optional else ["signal", "const"])
        )
        if choice == "signal":
            inputs[port.name] = draw(st.integers(0, n_signals - 1))
        elif choice == "const":
            inputs[port.name] = pb.Const(draw(values))
    outputs = {
        port.name: draw(st.integers(0, n_signals - 1))
        for port in spec.outputs
        if draw(st.booleans()) or port is spec.outputs[0]
    }
    return pb.BlockInstance(f"b{index}", type_name, inputs, outputs, draw(param_values(spec)))


@st.composite
def scenario(draw: st.DrawFn, types: list[str]) -> tuple[list[pb.BlockInstance], int]:
    n_signals = draw(st.integers(4, 12))
    blocks = [draw(block(t, n_signals, i)) for i, t in enumerate(types)]
    return blocks, n_signals


def drive(data: st.DataObject, blocks: list[pb.BlockInstance], n_signals: int, cycles: int) -> None:
    program = pb.compile_program(blocks, n_signals)
    img, quality = program.new_image()
    ref_instr = program.instructions.copy()
    ref_img, ref_q = img.copy(), quality.copy()
    ref_state = program.state.copy()
    now = data.draw(st.integers(0, 2**40))
    wild = data.draw(st.booleans())  # extremes everywhere, or a plausible plant
    vals, quals = (values, qualities) if wild else (moderate, mostly_good)
    for cycle in range(cycles):
        for i in range(n_signals):
            if data.draw(st.integers(0, 3)) > 0:  # some signals keep their value
                v, q = data.draw(vals), data.draw(quals)
                img[i] = ref_img[i] = v
                quality[i] = ref_q[i] = q
        dt = data.draw(dts)
        first = data.draw(st.integers(0, 9)) == 0
        now = (now + max(dt, 0)) % 2**62
        program.run(img, quality, now, dt, first)
        rc = reference_run(ref_instr, ref_img, ref_q, ref_state, program.params, now, dt, first)
        ref_instr["flags"] &= ~np.uint32(1)
        assert rc == len(ref_instr)
        where = f"cycle {cycle}, dt {dt}, first {first}"
        assert bits_equal(img, ref_img), f"{where}\nC   {img}\nref {ref_img}"
        assert np.array_equal(quality, ref_q), f"{where}\nC   {quality}\nref {ref_q}"
        assert bits_equal(program.state, ref_state), (
            f"{where}\nC   {program.state}\nref {ref_state}"
        )


SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.mark.parametrize("type_name", BUILTINS)
@SETTINGS
@given(data=st.data())
def test_kernel_matches_reference_per_type(type_name: str, data: st.DataObject) -> None:
    blocks, n_signals = data.draw(scenario([type_name, type_name]))
    drive(data, blocks, n_signals, cycles=12)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_kernel_matches_reference_mixed(data: st.DataObject) -> None:
    types = data.draw(st.lists(st.sampled_from(BUILTINS), min_size=1, max_size=10))
    blocks, n_signals = data.draw(scenario(types))
    drive(data, blocks, n_signals, cycles=8)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_pid_in_its_working_range(data: st.DataObject) -> None:
    """PID unsaturated, in auto, with GOOD inputs: every term of the sum is exercised."""
    params = {
        "kp": data.draw(st.floats(0.01, 10.0)),
        "ti": data.draw(st.floats(0.1, 100.0)),
        "td": data.draw(st.floats(0.0, 10.0)),
        "out_min": -1e9,
        "out_max": 1e9,
        "direct": data.draw(st.booleans()),
    }
    pid = pb.BlockInstance("pid", "PID", {"sp": 0, "pv": 1, "manual": 2}, {"out": 3}, params)
    program = pb.compile_program([pid], 4)
    img, quality = program.new_image()
    quality[:3] = 2
    ref = (program.instructions.copy(), img.copy(), quality.copy(), program.state.copy())
    for k in range(20):
        sp, pv = data.draw(st.floats(-100, 100)), data.draw(st.floats(-100, 100))
        man = float(data.draw(st.integers(0, 5)) == 0)
        dt = data.draw(st.integers(1_000_000, 100_000_000))
        for arr in (img, ref[1]):
            arr[0], arr[1], arr[2] = sp, pv, man
        program.run(img, quality, k, dt, k == 0)
        reference_run(ref[0], ref[1], ref[2], ref[3], program.params, k, dt, k == 0)
        ref[0]["flags"] &= ~np.uint32(1)
        assert bits_equal(img, ref[1]), (img, ref[1])
        assert bits_equal(program.state, ref[3])


def test_timer_on_fake_clock_long_run() -> None:
    """A TON driven by a fake clock for many cycles stays in step with the model."""
    program = pb.compile_program(
        [
            pb.BlockInstance("t", "TON", {"in": 0}, {"q": 1, "et": 2}, {"pt": 0.25}),
            pb.BlockInstance("g", "SIGNAL_GENERATOR", {}, {"out": 3}, {"waveform": "sine"}),
        ],
        4,
    )
    img, quality = program.new_image()
    ref = (program.instructions.copy(), img.copy(), quality.copy(), program.state.copy())
    img[0] = ref[1][0] = 1.0
    for k in range(2000):
        dt = 1_000_000 + (k % 7) * 1000
        program.run(img, quality, k * 1_000_000, dt, k == 0)
        reference_run(ref[0], ref[1], ref[2], ref[3], program.params, k * 1_000_000, dt, k == 0)
        ref[0]["flags"] &= ~np.uint32(1)
    assert bits_equal(img, ref[1])
    assert bits_equal(program.state, ref[3])
    assert img[1] == 1.0 and img[2] == 0.25
