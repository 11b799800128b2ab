"""SCAN_DOWN: the supervisor's marking of scan outputs while the scan is down, the
``scan.scan_down`` setting, and drivers not taking a mark for a command.

The end-to-end half (kill -9 and SIGSTOP of a real scan under ``petra run``) is in
tests/integration/test_scan_down_e2e.py."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from petra.config import ConfigErrors, load_plant_text
from petra.drivers._common import WriteFollower
from petra.shm import JournalConsumer, Segment
from petra.supervisor._scan_down import ScanDownMarker, scan_outputs
from petra.types import Quality, SignalDef, SignalType, Substatus

PLANT = """\
instance: sd
scan: {{period: 10ms{extra}}}
signals:
  - {{name: a, type: bool}}
  - {{name: q, type: bool}}
  - {{name: n, type: float}}
blocks:
  - {{name: inv, type: NOT, inputs: {{in: a}}, outputs: {{out: q}}}}
"""

SCAN, SUPERVISOR = 1001, 1002


def test_scan_down_setting_defaults_to_uncertain_and_refuses_other_words() -> None:
    assert load_plant_text(PLANT.format(extra="")).config.scan.scan_down == "uncertain"
    for mode in ("bad", "keep"):
        plant = load_plant_text(PLANT.format(extra=f", scan_down: {mode}"))
        assert plant.config.scan.scan_down == mode
    with pytest.raises(ConfigErrors, match="scan_down"):
        load_plant_text(PLANT.format(extra=", scan_down: off"))


def test_scan_outputs_are_the_block_outputs() -> None:
    plant = load_plant_text(PLANT.format(extra=""))
    assert set(plant.block_writers) == {"q"}
    seg = Segment.create(f"u{uuid.uuid4().hex[:10]}", plant.signal_defs())
    try:
        assert scan_outputs(seg, [*plant.block_writers, "not_there"]) == [seg.index("q")]
    finally:
        seg.unlink()
        seg.close()


@pytest.fixture
def seg() -> Iterator[Segment]:
    s = Segment.create(f"u{uuid.uuid4().hex[:10]}", [
        SignalDef("out1", SignalType.FLOAT), SignalDef("out2", SignalType.BOOL),
        SignalDef("out3", SignalType.INT)])
    s._set_writer(SCAN)
    yield s
    s.unlink()
    s.close()


def test_mark_keeps_value_and_source_time_and_never_improves_quality(seg: Segment) -> None:
    seg.write("out1", 12.5, Quality.GOOD, 111)
    seg.write("out2", True, Quality.GOOD, 222)
    seg.write("out3", 7, Quality.BAD, 333)
    before = {n: seg.read(n) for n in ("out1", "out2", "out3")}
    seg._set_writer(SUPERVISOR)
    walls = iter([1000.0, 1012.5])
    marker = ScanDownMarker(seg, "uncertain", wall=lambda: next(walls))
    res = marker.scan_down(range(3))
    assert (res.marked, res.already, res.failed) == (3, 0, 0)
    for name, q in (("out1", Quality.UNCERTAIN), ("out2", Quality.UNCERTAIN),
                    ("out3", Quality.BAD)):
        s = seg.read(name)
        assert (s.value, s.quality, s.substatus) == (before[name].value, q,
                                                       Substatus.SCAN_DOWN), name
        assert s.source_ts_ns == before[name].source_ts_ns
        assert s.write_ts_ns >= before[name].write_ts_ns
    assert marker.reason() == ("scan down since 1970-01-01T00:16:40Z "
                               "(outputs marked UNCERTAIN/SCAN_DOWN)")
    # a scan dying again before its first cycle adds no journal entries
    c = JournalConsumer(seg)
    c.resync()
    assert marker.scan_down(range(3)).already == 3
    assert len(c.read()) == 0
    assert marker.since == 1000.0, "the outage started at the first death"
    # the mark clears only once the new scan has completed a cycle since first seen
    assert marker.scan_back(77, 0) is None
    assert marker.scan_back(77, 0) is None
    assert marker.scan_back(78, 3) is None, "another scan: look again"
    assert marker.scan_back(78, 4) == 12.5
    assert marker.reason() is None
    assert marker.scan_back(78, 9) is None, "nothing to clear"


def test_mode_bad_and_mode_keep(seg: Segment) -> None:
    seg.write("out1", 1.5, Quality.GOOD, 5)
    seg._set_writer(SUPERVISOR)
    ScanDownMarker(seg, "bad").scan_down([0])
    s = seg.read("out1")
    assert (s.value, s.quality, s.substatus, s.source_ts_ns) == (
        1.5, Quality.BAD, Substatus.SCAN_DOWN, 5)
    seg.write("out2", True, Quality.GOOD, 6)
    keep = ScanDownMarker(seg, "keep")
    assert keep.scan_down([1]).marked == 0
    assert seg.read("out2").substatus == Substatus.NONE
    assert keep.reason() is not None and "not marked" in keep.reason()  # type: ignore[operator]
    with pytest.raises(ValueError, match="scan_down"):
        ScanDownMarker(seg, "off")


def test_drivers_take_no_mark_for_a_command(seg: Segment) -> None:
    follower = WriteFollower(seg, [0, 1], own_writer=4242)
    seg.write("out1", 3.0)  # the scan's command
    seg._set_writer(SUPERVISOR)
    ScanDownMarker(seg).scan_down([0, 1])
    assert follower.poll() == {0: 3.0}, "the command before the mark still goes out"
    seg._set_writer(SUPERVISOR)
    seg.write("out2", True, Quality.GOOD)
    ScanDownMarker(seg).scan_down([1])
    assert follower.poll() == {1: True}
    seg._set_writer(SCAN)  # the restarted scan: an UNCERTAIN output is a command
    seg.write("out1", 4.0, Quality.UNCERTAIN)
    assert follower.poll() == {0: 4.0}
    seg._set_writer(SUPERVISOR)
    ScanDownMarker(seg).scan_down([0])
    assert follower.poll() == {}, "a mark alone is not sent to the device"
