"""Round trips: a valid config as data -> YAML -> load gives the model the data gives;
a loaded model dumped and loaded again is equal (Hypothesis)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from petra.blocks import BlockSpec, Port, PortType
from petra.config import PlantConfig, dump_plant_yaml, load_plant, load_plant_text
from petra.config._yaml import dump_yaml

MOVE = BlockSpec("TEST_MOVE", "test", "copy", (Port("in", PortType.ANY),),
                 (Port("out", PortType.ANY),))
SPECS = {"TEST_MOVE": MOVE}
FIXTURES = Path(__file__).parent / "fixtures" / "configs"

_names = st.from_regex(r"[a-z][a-z0-9_]{0,6}(\.[a-z0-9_]{1,5})?", fullmatch=True)
_finite = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False, allow_infinity=False)
_ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=20)


@st.composite
def _scan(draw: st.DrawFn) -> dict[str, Any]:
    period_us = draw(st.integers(min_value=100, max_value=10_000_000))
    period: Any = draw(st.sampled_from([f"{period_us}us", period_us / 1000]))
    if isinstance(period, float) and round(period * 1_000_000) != period_us * 1000:
        period = f"{period_us}us"
    out: dict[str, Any] = {"period": period}
    if draw(st.booleans()):
        out["policy"] = "fifo"
        out["priority"] = draw(st.integers(min_value=1, max_value=99))
        out["rt"] = draw(st.booleans())
    if draw(st.booleans()):
        out["wait"] = "hybrid"
        out["spin"] = f"{draw(st.integers(min_value=0, max_value=period_us - 1))}us"
    out["grid_offset"] = draw(st.sampled_from(
        ["auto", f"{draw(st.integers(min_value=0, max_value=period_us - 1))}us"]))
    out["cpu_dma_latency"] = draw(st.booleans())
    out["journal_capacity"] = 1 << draw(st.integers(min_value=6, max_value=22))
    return out


@st.composite
def _signal(draw: st.DrawFn, name: str) -> dict[str, Any]:
    typ = draw(st.sampled_from(["bool", "int", "float"]))
    sig: dict[str, Any] = {"name": name, "type": typ}
    if typ == "bool":
        value: st.SearchStrategy[Any] = st.booleans()
    else:
        lo, hi = sorted((draw(_finite), draw(_finite)))
        if typ == "int":
            lo, hi = float(int(lo)), float(int(hi))
            value = st.integers(min_value=int(lo), max_value=int(hi))
        else:
            value = st.floats(min_value=lo, max_value=hi)
        if draw(st.booleans()):
            sig["min"], sig["max"] = lo, hi
        else:
            value = _ints if typ == "int" else _finite
    if draw(st.booleans()):
        sig["initial"] = draw(value)
    if draw(st.booleans()):
        sig["safe_value"] = draw(value)
    sig["unit"] = draw(st.text("abcm%/°", max_size=5))
    sig["description"] = draw(_text)
    sig["writable"] = draw(st.booleans())
    return sig


@st.composite
def plants(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(_names, min_size=1, max_size=12, unique=True))
    signals = [draw(_signal(n)) for n in names]
    # Blocks copy a signal into another; block k writes names[k] and reads only signals
    # that no later block writes, so the graph has no loop and every signal one writer.
    blocks: list[dict[str, Any]] = []
    n_blocks = draw(st.integers(min_value=0, max_value=len(names)))
    for k in range(n_blocks):
        out_sig = names[k]
        readable = [n for j, n in enumerate(names) if j < k or j >= n_blocks]
        use_signal = bool(readable) and draw(st.booleans())
        src: Any = (draw(st.sampled_from(readable)) if use_signal
                    else draw(st.one_of(st.booleans(), _ints, _finite)))
        blocks.append({"name": f"b{k}", "type": "TEST_MOVE", "inputs": {"in": src},
                       "outputs": {"out": out_sig}})
        signals[k].pop("writable", None)  # written by a block: not also by operators
    plant: dict[str, Any] = {
        "instance": draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,20}", fullmatch=True)),
        "scan": draw(_scan()),
        "log_level": draw(st.sampled_from(["debug", "info", "warning", "error"])),
        "signals": signals,
        "blocks": blocks,
    }
    if draw(st.booleans()):
        plant.update({"drivers": [], "history": {}, "alarms": [], "api": {}, "users": []})
    return plant


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plants())
def test_data_to_yaml_to_model(data: dict[str, Any]) -> None:
    expected = PlantConfig.model_validate(data)
    plant = load_plant_text(dump_yaml(data), "gen.yaml", specs=SPECS)
    assert plant.config == expected
    # Every block reads only earlier blocks' outputs: the order is the file order.
    assert plant.order == [b["name"] for b in data["blocks"]]
    again = load_plant_text(dump_plant_yaml(plant.config), "again.yaml", specs=SPECS)
    assert again.config == plant.config
    assert again.source_hash == plant.source_hash


def test_safe_dump_of_a_real_file_loads_the_same() -> None:
    """Files written by ``yaml.safe_dump`` (YAML 1.1) load unchanged when they hold
    ordinary plant content."""
    specs = {**SPECS}
    from test_config import SPECS as ALL  # the sibling module's test doubles

    specs.update(ALL)
    plant = load_plant(FIXTURES / "valid_demo.yaml", specs=specs)
    text = yaml.safe_dump(plant.config.model_dump(mode="json"), sort_keys=False)
    again = load_plant_text(text, "dumped.yaml", specs=specs)
    assert again.config == plant.config
