"""The plant artefact the supervisor hands its children (petra/_artefact.py), the
children's config section (petra/config/_handed.py) and the scan's directory hash."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from petra._artefact import Artefact, ArtefactError, read_artefact, write_artefact
from petra.config import load_plant, load_plant_text
from petra.config._handed import CONFIG_SECTION, child_config, config_section, handed_config
from petra.errors import PetraError
from petra.scan._plant import SCAN_SECTION, ScanPlant, SignalRows, compute_directory_hash
from petra.shm import Segment
from petra.supervisor._children import hand_over_plant
from petra.types import Quality, SignalDef, SignalType

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "demo-plant.yaml"

FULL = """instance: full
signals:
  - {name: tank.level, type: float, unit: m, min: 0, max: 10}
  - {name: tank.sp, type: float, initial: 2.5}
  - {name: pump.stopped, type: bool}
  - {name: mode, type: int, safe_value: 0}
  - {name: h.alarm, type: bool}
  - {name: h.lost, type: int}
drivers:
  - kind: modbus_tcp
    name: plc1
    host: 127.0.0.1
    port: 1502
    points:
      - {signal: tank.level, table: holding, address: 10}
mqtt:
  broker: {host: 127.0.0.1, port: 1883}
  publish:
    - {signals: ["tank.*"], topic: "plant/{signal}"}
history:
  dir: ./h
  site: north
  alarm_signal: h.alarm
  lost_signal: h.lost
  record:
    - {signals: ["tank.*"], deadband_percent: 1, min_interval_s: 100ms, max_interval_s: 1min}
  wal: {fsync: batch, segment_bytes: 1MiB, quota_bytes: 64MiB}
alarms:
  state_signals: true
  definitions:
    - {name: lvl.high, type: high, signal: tank.level, limit: 8, deadband: 0.5,
       on_delay_s: 2s, priority: critical, area: tanks, suppress_when: pump.stopped}
    - {name: lvl.stale, type: stale, signal: tank.level, timeout_s: 30s}
api:
  listen: 127.0.0.1:0
"""


def _art(tmp_path: Path, **sections: bytes) -> Path:
    path = tmp_path / "petra-x.plant"
    write_artefact(path, Artefact(instance="x", plant="/p.yaml", source_hash="ab" * 32,
                                  sections=sections or {"a": b"one", "b": b"\x00two"}))
    return path


def test_an_artefact_round_trips_owner_only(tmp_path: Path) -> None:
    path = _art(tmp_path)
    assert path.stat().st_mode & 0o077 == 0
    art = read_artefact(path, instance="x", plant="/p.yaml")
    assert (art.instance, art.plant, art.source_hash) == ("x", "/p.yaml", "ab" * 32)
    assert dict(art.sections) == {"a": b"one", "b": b"\x00two"}
    with pytest.raises(ArtefactError, match="no 'c' section"):
        art.section("c")
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("damage", ["flip", "truncate", "header", "empty", "foreign"])
def test_a_damaged_artefact_is_refused_with_the_reason(tmp_path: Path, damage: str) -> None:
    path = _art(tmp_path)
    raw = bytearray(path.read_bytes())
    if damage == "flip":  # one byte of a section changed by hand
        raw[-2] ^= 0x20
    elif damage == "truncate":
        del raw[-3:]
    elif damage == "header":  # another instance written into the header, digest kept
        raw[:] = raw.replace(b'"instance":"x"', b'"instance":"y"')
    elif damage == "empty":
        raw[:] = b""
    else:
        raw[:] = b"instance: x\nsignals: []\n"
    path.write_bytes(bytes(raw))
    with pytest.raises(ArtefactError) as info:
        read_artefact(path)
    why = str(info.value)
    if damage in ("flip", "truncate", "header"):
        assert "checksum does not match" in why
    else:
        assert "not a plant artefact" in why


def test_an_artefact_for_another_instance_or_plant_or_of_others_is_refused(
        tmp_path: Path) -> None:
    path = _art(tmp_path)
    with pytest.raises(ArtefactError, match="made for instance 'x', not 'y'"):
        read_artefact(path, instance="y")
    with pytest.raises(ArtefactError, match=r"made from /p\.yaml, not /q\.yaml"):
        read_artefact(path, plant="/q.yaml")
    path.chmod(0o622)  # others may write it: not ours alone
    with pytest.raises(ArtefactError, match="not owned by this user alone"):
        read_artefact(path)
    path.chmod(0o600)
    link = tmp_path / "link.plant"
    link.symlink_to(path)
    with pytest.raises(ArtefactError, match="cannot open"):
        read_artefact(link)
    with pytest.raises(ArtefactError, match="cannot open"):
        read_artefact(tmp_path / "missing.plant")


@pytest.mark.parametrize("text", [DEMO.read_text(), FULL])
def test_the_config_section_loads_back_to_the_same_config(text: str) -> None:
    plant = load_plant_text(text, "p.yaml")
    raw = config_section(plant.config)
    assert raw is not None
    got = handed_config(raw)
    assert got == plant.config.model_copy(update={"signals": [], "blocks": []})
    assert got.drivers == plant.config.drivers and got.api == plant.config.api


def test_a_config_section_that_does_not_validate_is_refused() -> None:
    with pytest.raises(ValueError, match="does not validate"):
        handed_config(b'{"instance": "x", "scan": {"period": "1h"}}')
    with pytest.raises(ValueError):
        handed_config(b"not json")


def test_a_child_takes_the_handed_config_or_says_why_it_loads_the_file(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    plant_file = tmp_path / "plant.yaml"
    plant_file.write_text(FULL)
    plant = load_plant(plant_file)
    art = tmp_path / "petra-full.plant"
    hand_over_plant(art, plant, "full")
    log = logging.getLogger("test.child")
    plant_file.write_text("instance: full\ndrivers: []\n")  # edited after the start
    with caplog.at_level(logging.INFO, logger="test.child"):
        got = child_config(str(plant_file), str(art), "full", log)
    assert [d.name for d in got.drivers] == ["plc1"]  # what the supervisor accepted
    assert "event=plant_from_artefact" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="test.child"):  # another instance's
        got = child_config(str(plant_file), str(art), "other", log)
    assert got.drivers == []  # the file as it is now
    assert "event=plant_data_unusable" in caplog.text and "not 'other'" in caplog.text
    caplog.clear()
    raw = bytearray(art.read_bytes())
    raw[-5] ^= 1
    art.write_bytes(bytes(raw))
    with caplog.at_level(logging.INFO, logger="test.child"):
        got = child_config(str(plant_file), str(art), "full", log)
    assert got.drivers == []
    assert "checksum does not match" in caplog.text and "action=load_file" in caplog.text


def test_the_scan_section_and_its_directory_hash_match_the_segment(tmp_path: Path) -> None:
    """The Python FNV-1a is the C one: a plant's hash equals its segment's."""
    plant = load_plant_text(FULL, "p.yaml")
    defs = plant.signal_defs()
    seg = Segment.create(f"t-art-{os.getpid()}", defs)
    try:
        assert compute_directory_hash(defs) == seg.directory_hash
        art = tmp_path / "petra-full.plant"
        hand_over_plant(art, plant, "full", directory_hash=seg.directory_hash)
        scan = ScanPlant.loads(read_artefact(art).section(SCAN_SECTION))
        assert scan.directory_hash == seg.directory_hash
        assert isinstance(scan.signals, SignalRows)
        assert scan.signal_names() == [s.name for s in seg.signals]
        assert list(scan.signals) == defs and scan.signals == tuple(defs)
        assert ScanPlant.loads(scan.dumps()) == scan  # rows written back as read
        renamed = [SignalDef("other", d.type) if i == 0 else d for i, d in enumerate(defs)]
        assert compute_directory_hash(renamed) != seg.directory_hash
        retyped = [SignalDef(d.name, SignalType.INT) if d.type is SignalType.BOOL else d
                   for d in defs]
        assert compute_directory_hash(retyped) != seg.directory_hash
    finally:
        seg.close()
        seg.unlink()
    assert read_artefact(art).section(CONFIG_SECTION)


def test_bad_signal_rows_are_unreadable() -> None:
    good = ScanPlant.from_plant(load_plant(DEMO))
    row = good.dumps()
    assert ScanPlant.loads(row).signal_defs() == good.signal_defs()
    for bad in ([("x", 9, "", "", False, None, int(Quality.GOOD), None, None, False)],
                [("x", 1)], [(1, 1, "", "", False, None, 0, None, None, False)]):
        with pytest.raises(ValueError):
            SignalRows(tuple(bad))
    with pytest.raises(PetraError, match="unreadable"):
        ScanPlant.loads(b"\x00garbage")


def test_the_trusted_signal_defs_equal_checked_ones() -> None:
    """Plant.signal_defs skips SignalDef's checks (the models made them): the result is
    what the checked constructor makes of the same config."""
    plant = load_plant_text(FULL, "p.yaml")
    got = plant.signal_defs()
    for sig, d in zip(plant.config.signals, got, strict=False):
        owner = plant.owners.get(sig.name, "")
        checked = SignalDef(
            sig.name, SignalType.parse(sig.type), unit=sig.unit, owner=owner,
            writable=sig.writable,
            initial=float(sig.initial) if sig.type == "float" and sig.initial is not None
            else sig.initial,
            initial_quality=Quality.UNCERTAIN if owner.startswith("driver:")
            else Quality.GOOD, minimum=sig.min, maximum=sig.max)
        assert d == checked
        assert (type(d.minimum), type(d.initial)) == (type(checked.minimum),
                                                       type(checked.initial))
    assert len(got) == len(plant.config.signals) + 6  # and 3 alarms (a device one) x 2
