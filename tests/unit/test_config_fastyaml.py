"""The fast reader (``petra/config/_fastyaml.py``) against the exact one (``_yaml.py``).

The contract: for any text, ``fast_parse`` returns None or exactly the data
``parse_yaml`` returns (and only for texts ``parse_yaml`` reads without a problem).
Checked on every plant file of the tests, the hostile corpus, generated plants, and
texts Hypothesis builds from the pieces that make the subset's edges (indicators, ':'
and '#' inside scalars, quotes, nesting, empty values, duplicates).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from petra.config import ConfigErrors, load_plant, load_plant_text
from petra.config._fastyaml import fast_parse
from petra.config._yaml import Limits, YamlError, parse_yaml

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted([*ROOT.glob("tests/**/*.yaml"), *ROOT.glob("examples/*.yaml"),
                *ROOT.glob("docs/**/*.yaml")])


def same(a: Any, b: Any) -> bool:
    """Equal data, types included (``1`` is not ``1.0`` or ``True``), key order too."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


def agrees(text: str, limits: Limits | None = None) -> Any:
    """Assert the contract for ``text``; the fast result."""
    fast = fast_parse(text, limits) if limits is not None else fast_parse(text)
    if fast is None:
        return None
    try:
        slow, _, problems = parse_yaml(text, limits) if limits is not None \
            else parse_yaml(text)
    except YamlError as exc:
        raise AssertionError(f"fast reader read what the exact one refuses: {exc}") from None
    assert not problems, problems
    assert same(fast, slow), (fast, slow)
    return fast


def plant_text(n: int) -> str:
    lines = [f"instance: gen{n}", "scan:", "  period: 10ms", "signals:"]
    lines += [f"  - {{name: area{k % 7}.in{k}, type: float, unit: m, min: 0, max: 100, "
              f"writable: true}}" for k in range(n)]
    lines += [f"  - {{name: area{k % 7}.out{k}, type: float}}" for k in range(n // 2)]
    lines.append("blocks:")
    lines += [f"  - {{name: b{k}, type: ADD, inputs: {{in1: area{(2 * k) % 7}.in{2 * k}, "
              f"in2: area{(2 * k + 1) % 7}.in{2 * k + 1}}}, outputs: {{out: area{k % 7}.out{k}}}}}"
              for k in range(n // 2)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_plant_file_of_the_tests(path: Path) -> None:
    agrees(path.read_bytes().decode("utf-8", "replace"))


def test_a_generated_plant_takes_the_fast_path_and_loads() -> None:
    text = plant_text(200)
    data = agrees(text)
    assert data is not None and len(data["signals"]) == 300
    plant = load_plant_text(text)
    assert len(plant.blocks) == 100 and not plant.warnings


def test_block_style_and_comments_take_the_fast_path() -> None:
    text = ("# a plant\ninstance: demo   # the name\nscan:\n  period: 10ms\nsignals:\n"
            "- name: a\n  type: float\n  unit: \"%\"\n  description: 'it''s a, b'\n"
            "-   name: b\n    type: bool\n    initial: true\n"
            "blocks: []\nmqtt: {}\n")
    data = agrees(text)
    assert data is not None
    assert data["signals"][0] == {"name": "a", "type": "float", "unit": "%",
                                  "description": "it's a, b"}
    assert data["signals"][1]["initial"] is True


def test_an_error_in_a_fast_file_is_located_by_the_exact_reader(tmp_path: Path) -> None:
    text = plant_text(50).replace("{name: area3.in10, type: float,",
                                  "{name: area3.in10, type: flaot,")
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "flaot" in t)
    path = tmp_path / "plant.yaml"
    path.write_text(text)
    with pytest.raises(ConfigErrors) as info:
        load_plant(path)
    err = info.value.errors[0]
    assert err.line == line and err.column is not None and err.column > 1, err
    assert "flaot" in str(err)


def test_a_warning_is_located_too(tmp_path: Path) -> None:
    text = plant_text(20).replace("signals:\n", "signals:\n  - {name: lonely, type: bool}\n")
    assert fast_parse(text) is not None
    path = tmp_path / "plant.yaml"
    path.write_text(text)
    plant = load_plant(path)
    assert [(w.line, w.column) for w in plant.warnings] == [(5, 5)], plant.warnings
    assert "lonely" in str(plant.warnings[0])


def test_the_bounds_hold_on_the_fast_path() -> None:
    text = plant_text(100)
    assert fast_parse(text, Limits(nodes=500)) is None
    assert fast_parse("a:\n" + "".join(f"{' ' * (2 * i)}k{i}:\n" for i in range(1, 9))
                      + " " * 18 + "v: 1\n", Limits(depth=5)) is None
    assert fast_parse("a: {b: {c: 1}}\n", Limits(depth=2)) is None
    agrees("a: {b: {c: 1}}\n", Limits(depth=3))
    assert fast_parse("n: " + "1" * 5000 + "\n") is None  # too long a number


# Pieces that sit on the subset's edges: indicators, separators inside scalars, quotes,
# numbers and words of every core type, spaces.
_ATOMS = ["a", "b.c", "x_1", "-5", "-x", "- y", "1", "0x1F", "0o17", "012", "1e3", ".5",
          ".inf", "-.inf", ".nan", "true", "False", "null", "~", "yes", "on", "1:30",
          "a:b", "a: b", "a #c", "a#b", "'q'", "'it''s'", "\"d q\"", "\"e\\n\"", "&x",
          "*x", "!!str 5", "?", ":", "%", "@", "`", "|", ">", "a b", "a  b", " ", "",
          "{}", "[]", "{a: 1}", "[1, 2]", "<<", "\t", "é", "\u2028"]
_KEYS = ["name", "type", "a b", "'k'", "1", "true", "<<", "k:", "-k", "\"q\"", "k ", " k"]


@st.composite
def flow_map(draw: st.DrawFn) -> str:
    n = draw(st.integers(0, 4))
    pairs = [f"{draw(st.sampled_from(_KEYS))}:{draw(st.sampled_from([' ', '  ', '']))}"
             f"{draw(st.sampled_from(_ATOMS))}" for _ in range(n)]
    sep = draw(st.sampled_from([", ", ",", " , "]))
    tail = draw(st.sampled_from(["", ",", " "]))
    return "{" + sep.join(pairs) + tail + "}"


@st.composite
def document(draw: st.DrawFn) -> str:
    lines = ["instance: x", "signals:"]
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.integers(0, 3))
        if kind == 0:
            lines.append(f"  - {draw(flow_map())}")
        elif kind == 1:
            lines.append(f"  - {draw(st.sampled_from(_ATOMS))}")
        elif kind == 2:
            lines.append(f"  - {draw(st.sampled_from(_KEYS))}: {draw(st.sampled_from(_ATOMS))}")
            lines.append(f"    {draw(st.sampled_from(_KEYS))}: {draw(flow_map())}")
        else:
            lines.append(f"  - {{name: n, inputs: {draw(flow_map())}, x: "
                         f"{draw(st.sampled_from(_ATOMS))}}}  # c")
    if draw(st.booleans()):
        lines.append(f"{draw(st.sampled_from(_KEYS))}: {draw(st.sampled_from(_ATOMS))}")
    return "\n".join(lines) + "\n"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document())
def test_fast_agrees_with_exact_on_generated_text(text: str) -> None:
    agrees(text)


@pytest.mark.parametrize("text", ["a: {k : 1}\n", "a: {k:  1 , j: x  y}\n", "a: {k: 1,j: 2}\n",
                                  "a: [x, {k: 1}]\n", "a: {k: [1, 2]}\n", "a: b c  \n",
                                  "a:\n  - <<\n", "a: [<<]\n", "a: {k: <<}\n"])
def test_edges_of_the_split_path(text: str) -> None:
    agrees(text)


def test_generated_text_does_take_the_fast_path_often() -> None:
    """The property above is not vacuous: plain pieces give the fast reader's data."""
    text = "instance: x\nsignals:\n  - {name: a, type: bool, x: -5, y: .inf, z: 0x1F}\n"
    assert agrees(text) == {"instance": "x", "signals": [
        {"name": "a", "type": "bool", "x": -5, "y": math.inf, "z": 31}]}
