"""The alarms: section: per-definition rules, cross-checks against signals, drivers
and contacts (each at its line), generated state signals and device alarms."""

from __future__ import annotations

import pytest

from petra.config import ConfigErrors, dump_plant_yaml, load_plant_text
from petra.config._alarms import effective_definitions, resolve_dir, state_signal_names

BASE = """instance: t
signals:
  - {name: tank.level, type: float, unit: m}
  - {name: tank.sp, type: float}
  - {name: pump.stopped, type: bool}
  - {name: mode, type: int}
drivers:
  - kind: modbus_tcp
    name: plc1
    host: 127.0.0.1
    points: []
"""


def load(alarms: str) -> object:
    return load_plant_text(BASE + alarms, "p.yaml")


def errors(alarms: str) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        load(alarms)
    return [e.format() for e in info.value.errors]


def test_a_full_section_loads_and_round_trips() -> None:
    text = """alarms:
  state_signals: true
  definitions:
    - {name: lvl.high, type: high, signal: tank.level, limit: 8, deadband: 0.5,
       on_delay_s: 2s, priority: critical, class: safety, area: tanks,
       message: "Level {value:.1f} {unit} above {limit} {unit}",
       suppress_when: pump.stopped, consequence: overflow, action: stop the feed}
    - {name: lvl.dev, type: deviation, signal: tank.level, setpoint: tank.sp, limit: 1}
    - {name: mode.bad, type: discrete, signal: mode, state: 3, latch: true}
    - {name: lvl.stale, type: stale, signal: tank.level, timeout_s: 30s}
  notifications:
    twilio: {account_sid: AC0123456789abcdef0123456789abcdef, auth_token_env: TW,
             from: "+15005550006"}
    contacts:
      - {name: alice, phone: "+491701234567", timezone: Europe/Berlin,
         on_call: [{days: [mon, fri], start: "07:00", end: "19:00"}]}
    policies:
      - {name: all, levels: [{contacts: [alice]}, {contacts: [alice], after_s: 5min}],
         repeat_s: 15min}
"""
    plant = load(text)
    cfg = plant.config.alarms  # type: ignore[attr-defined]
    d = cfg.definitions[0]
    assert (d.on_delay_s, d.alarm_class, d.priority) == (2.0, "safety", "critical")
    assert cfg.notifications.policies[0].levels[1].after_s == 300.0
    names = [x.name for x in effective_definitions(plant.config)]  # type: ignore[attr-defined]
    assert names == ["lvl.high", "lvl.dev", "mode.bad", "lvl.stale", "device.plc1"]
    defs = plant.signal_defs()  # type: ignore[attr-defined]
    assert [s.name for s in defs][-2:] == list(state_signal_names("device.plc1"))
    assert all(s.owner == "sink:alarms" for s in defs[4:])
    again = load_plant_text(dump_plant_yaml(plant.config), "again.yaml")  # type: ignore[attr-defined]
    assert again.config == plant.config  # type: ignore[attr-defined]


@pytest.mark.parametrize(("alarm", "message"), [
    ("{name: a, type: high, signal: tank.level}", "type high needs limit"),
    ("{name: a, type: stale, signal: tank.level}", "needs timeout_s > 0"),
    ("{name: a, type: deviation, signal: tank.level, limit: 1}", "needs setpoint"),
    ("{name: a, type: discrete, signal: mode}", "needs state"),
    ("{name: a, type: device}", "needs driver"),
    ("{name: a, type: bad_quality, signal: tank.level, limit: 3}", "limit does not apply"),
    ("{name: a, type: rate, signal: tank.level, limit: -1}", "limit must be > 0"),
    ("{name: a, type: high, signal: tank.level, limit: 1, message: '{oops}'}",
     "unknown field {oops}"),
    ("{name: a, type: high, signal: tank.level, limit: 1, message: '{value.real}'}",
     "unknown field"),
    ("{name: 1a, type: bad_quality, signal: tank.level}", "alarm name '1a' is invalid"),
    ("{name: a, type: high, signal: tank.level, limit: 1, priority: urgent}",
     "priority"),
])
def test_definition_rules(alarm: str, message: str) -> None:
    errs = errors(f"alarms:\n  definitions:\n    - {alarm}\n")
    assert any(message in e for e in errs), errs
    assert all(e.startswith("p.yaml:") for e in errs)


def test_cross_checks_name_their_line() -> None:
    errs = errors("""alarms:
  definitions:
    - {name: a, type: high, signal: nope, limit: 1}
    - {name: a, type: high, signal: pump.stopped, limit: 1}
    - {name: b, type: bad_quality, signal: tank.level, suppress_when: tank.sp}
    - {name: c, type: device, driver: plc9}
    - {name: d, type: discrete, signal: mode, state: true}
""")
    text = "\n".join(errs)
    assert "p.yaml:14:" in text and "unknown signal 'nope'" in text
    assert "p.yaml:15:" in text and "defined twice" in text
    assert "is bool; type high needs an int or float signal" in text
    assert "suppress_when needs a bool signal" in text
    assert "unknown driver 'plc9'" in text
    assert "does not fit int signal 'mode'" in text


def test_state_signals_must_not_clash_or_be_too_long() -> None:
    long = "x" * 50
    errs = errors(f"""alarms:
  state_signals: true
  definitions:
    - {{name: {long}, type: bad_quality, signal: tank.level}}
""")
    assert any("too long for its state signals" in e for e in errs)
    clash = BASE.replace("  - {name: mode, type: int}",
                         "  - {name: mode, type: int}\n  - {name: alarm.q.active, type: bool}")
    with pytest.raises(ConfigErrors, match="also declared"):
        load_plant_text(clash + """alarms:
  state_signals: true
  definitions: [{name: q, type: bad_quality, signal: tank.level}]
""", "p.yaml")


def test_notification_rules() -> None:
    head = """alarms:
  notifications:
    twilio: {account_sid: AC0123456789abcdef0123456789abcdef, auth_token_env: TW,
             from: "+15005550006"}
"""
    errs = errors(head + """    contacts: [{name: a, phone: "12345", timezone: Mars/Base}]
    policies: [{name: p, levels: [{contacts: [zed]}]}]
""")
    text = "\n".join(errs)
    assert "E.164" in text and "unknown time zone 'Mars/Base'" in text
    errs = errors(head + """    contacts: [{name: a, phone: "+491701234567"}]
    policies: [{name: p, levels: [{contacts: [zed]}, {contacts: [a], after_s: -1}]}]
""")
    assert any(">= 0" in e for e in errs), errs
    errs = errors(head + """    contacts: [{name: a, phone: "+491701234567"}]
    policies: [{name: p, levels: [{contacts: [zed]}]}]
""")
    assert any("unknown contact 'zed'" in e for e in errs)
    bad = errors("""alarms:
  notifications:
    twilio: {account_sid: AC1, auth_token_env: TW, auth_token_file: /x, from: "+1500555"}
    contacts: [{name: a, phone: "+491701234567"}]
    policies: [{name: p, levels: [{contacts: [a]}]}]
""")
    assert any("account_sid" in e for e in bad)


def test_empty_reserved_list_means_no_alarms_and_dir_resolution() -> None:
    plant = load("alarms: []\n")
    assert plant.config.alarms is None  # type: ignore[attr-defined]
    errs = errors("alarms: [{name: a}]\n")
    assert any("put the alarms under definitions" in e for e in errs)
    cfg = load("alarms: {dir: 'state/{instance}'}\n").config.alarms  # type: ignore[attr-defined]
    assert str(resolve_dir(cfg, "t", "/srv/plant.yaml")) == "/srv/state/t"
