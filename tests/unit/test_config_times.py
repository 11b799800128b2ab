"""Times with units where blocks and drivers hold seconds: ``pt: 20s``, ``poll_period_s: 500ms``.

The real block catalogue is used (the timers, PID, LAG and the signal generator are
what the table names), so these also guard :data:`TIME_PORTS` against the catalogue.
"""

from __future__ import annotations

import textwrap

import pytest

from petra.blocks import Param, Port, all_specs
from petra.config import ConfigErrors, Plant, load_plant_text
from petra.config._drivers import ModbusTcpConfig
from petra.config._seconds import TIME_PORTS, parse_seconds

PLANT = """\
instance: t
signals:
  - {name: go, type: bool, writable: true}
  - {name: on, type: bool}
  - {name: pulse, type: bool}
  - {name: wave, type: float}
  - {name: lvl, type: float}
  - {name: out, type: float}
blocks:
  - {name: delay, type: TON, inputs: {in: go, pt: PT}, outputs: {q: on}}
  - {name: pulse, type: TP, inputs: {in: go}, outputs: {q: pulse}, params: {pt: 1.5min}}
  - {name: gen, type: SIGNAL_GENERATOR, outputs: {out: wave}, params: {period: 500ms}}
  - {name: lag, type: LAG, inputs: {in: wave}, outputs: {out: lvl}, params: {tau: 250ms}}
  - name: ctl
    type: PID
    inputs: {sp: wave, pv: lvl}
    outputs: {out: out}
    params: {kp: 1.0, ti: 2min, td: 100ms}
"""


def load(pt: str) -> Plant:
    return load_plant_text(textwrap.dedent(PLANT.replace("PT", pt)), "p.yaml")


def block(plant: Plant, name: str) -> tuple[dict[str, object], dict[str, object]]:
    b = next(b for b in plant.config.blocks if b.name == name)
    return dict(b.inputs), dict(b.params)


@pytest.mark.parametrize(("text", "seconds"), [
    ("20s", 20.0), ("20", 20.0), ("0.5", 0.5), ("500ms", 0.5), ("1.5min", 90.0),
    ("2h", 7200.0), ("250us", 0.00025)])
def test_timer_preset_takes_a_unit(text: str, seconds: float) -> None:
    inputs, _ = block(load(text), "delay")
    assert inputs["pt"] == pytest.approx(seconds)


def test_every_time_of_the_builtins_takes_a_unit() -> None:
    plant = load("20s")
    assert block(plant, "pulse")[1]["pt"] == 90.0
    assert block(plant, "gen")[1]["period"] == 0.5
    assert block(plant, "lag")[1]["tau"] == 0.25
    _, pid = block(plant, "ctl")
    assert (pid["ti"], pid["td"]) == (120.0, pytest.approx(0.1))


def test_a_bad_unit_is_reported_at_the_block_not_as_an_unknown_signal() -> None:
    with pytest.raises(ConfigErrors) as info:
        load("20x")
    [err] = info.value.errors
    assert err.line == 10
    assert "inputs.pt" in err.message and "'20x'" in err.message
    assert "unknown signal" not in err.message


def test_a_signal_name_still_feeds_the_preset() -> None:
    text = PLANT.replace("  - {name: go,", "  - {name: preset, type: float, writable: true}\n"
                                          "  - {name: go,")
    plant = load_plant_text(textwrap.dedent(text.replace("PT", "preset")), "p.yaml")
    assert block(plant, "delay")[0]["pt"] == "preset"


def test_driver_times_take_units() -> None:
    text = textwrap.dedent("""\
        instance: t
        signals:
          - {name: level, type: float}
        drivers:
          - kind: modbus_tcp
            name: plc1
            host: 127.0.0.1
            poll_period_s: 250ms
            timeouts: {connect_s: 2s, request_s: 500ms}
            retry: {initial_delay_s: 100ms, max_delay_s: 1min}
            points:
              - {signal: level, table: holding, address: 0}
        """)
    drv = load_plant_text(text, "p.yaml").config.drivers[0]
    assert isinstance(drv, ModbusTcpConfig)
    assert drv.poll_period_s == 0.25
    assert drv.timeouts.connect_s == 2.0
    assert drv.timeouts.request_s == 0.5
    assert drv.retry.max_delay_s == 60.0
    with pytest.raises(ConfigErrors) as info:
        load_plant_text(text.replace("250ms", "0s"), "p.yaml")
    assert info.value.errors[0].key_path == "drivers[0].poll_period_s"


def test_parse_seconds_refuses_what_is_not_a_time() -> None:
    for bad in (True, "fast", "10 m", float("nan"), None, "1e3s"):
        with pytest.raises(ValueError):
            parse_seconds(bad)


def test_table_matches_the_catalogue() -> None:
    """Every entry names a real port or parameter documented in seconds, and every
    built-in port or parameter documented in seconds is in the table."""
    specs = all_specs()
    documented: dict[str, set[str]] = {}
    for spec in specs.values():
        items: list[Port | Param] = [*spec.inputs, *spec.params]
        for item in items:
            doc = item.doc.lower()
            if ("second" in doc or doc.endswith(", s") or doc == "seconds") and (
                    "per second" not in doc):
                documented.setdefault(spec.name, set()).add(item.name)
    assert {k: set(v) for k, v in TIME_PORTS.items()} == documented
