"""The history: section: units, per-key and cross-key rules, located errors."""

from __future__ import annotations

import pytest

from petra.config import ConfigErrors, dump_plant_yaml, load_plant_text
from petra.config._history import parse_bytes, parse_seconds

BASE = """instance: h
signals:
  - {name: a.level, type: float, min: 0, max: 10}
  - {name: h.alarm, type: bool, owner: "sink:history"}
  - {name: h.lost, type: int}
"""


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        load_plant_text(BASE + text, "p.yaml", specs={})
    return [str(e) for e in info.value.errors]


def test_units() -> None:
    assert parse_seconds("250ms") == 0.25 and parse_seconds("5min") == 300.0
    assert parse_seconds("30d") == 30 * 86400 and parse_seconds(2) == 2.0
    assert parse_bytes("64MiB") == 64 << 20 and parse_bytes("2GB") == 2 * 10**9
    assert parse_bytes(4096) == 4096
    for bad in ("ten", "-1s", True):
        with pytest.raises(ValueError):
            parse_seconds(bad)
    with pytest.raises(ValueError):
        parse_bytes("12 parsecs")


def test_a_full_section_loads_and_dumps_back_the_same() -> None:
    plant = load_plant_text(BASE + """history:
  dir: ./h
  site: north
  alarm_signal: h.alarm
  lost_signal: h.lost
  record:
    - {signals: ["a.*"], deadband_percent: 1, min_interval_s: 100ms, max_interval_s: 1min}
    - {signals: [h.alarm], mode: period, period_s: 10s}
  wal: {fsync: batch, segment_bytes: 1MiB, quota_bytes: 64MiB}
  parquet: {partition: hour, retention: {max_age_s: 30d, max_bytes: 10GiB}}
  clickhouse: {url: "https://ch.example:8443", password_env: CH_PASS, rollup: true}
""", "p.yaml", specs={})
    h = plant.config.history
    assert h is not None and h.record[0].max_interval_s == 60.0
    assert h.wal.segment_bytes == 1 << 20 and h.parquet.retention.max_age_s == 30 * 86400
    again = load_plant_text(dump_plant_yaml(plant.config), "again.yaml", specs={})
    assert again.config == plant.config


def test_errors_are_reported_at_their_keys() -> None:
    errs = errors("""history:
  record:
    - {signals: [a.level], mode: period}
    - {signals: [a.level], max_interval_s: 1, min_interval_s: 5}
  wal: {segment_bytes: 1MiB, quota_bytes: 1MiB}
  clickhouse: {url: "ftp://x", password_file: /a, password_env: B}
""")
    assert any("p.yaml:8:7: history.record[0]: mode period needs period_s" in e for e in errs)
    assert any("history.record[1]" in e and "max_interval_s must be >= " in e for e in errs)
    assert any("history.wal" in e and "two segments" in e for e in errs)
    assert any("history.clickhouse" in e for e in errs)


def test_status_signals_must_exist_have_the_right_type_and_no_other_writer() -> None:
    errs = errors("""history:
  alarm_signal: h.lost
  lost_signal: nope
""")
    assert any("history.alarm_signal: signal 'h.lost' is int" in e for e in errs)
    assert any("history.lost_signal: unknown signal 'nope'" in e for e in errs)


def test_a_pattern_matching_nothing_is_a_warning() -> None:
    plant = load_plant_text(BASE + "history:\n  record:\n    - {signals: [zz*]}\n", "p.yaml",
                            specs={})
    assert any("history.record[0].signals[0]: pattern 'zz*' matches no signal" in str(w)
               for w in plant.warnings)
