"""The directory's limits (min, max, non-finite flag) and the one checked write path,
``Segment.write_checked``: every refusal, and that a refusal writes nothing."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from petra._core import lib
from petra.config import load_plant
from petra.errors import (
    SignalError,
    SignalNotWritableError,
    SignalTypeError,
    UnknownSignalError,
    ValueOutOfRangeError,
)
from petra.shm import JournalConsumer, Quality, Segment, SignalDef, SignalType, unlink_instance
from petra.types import FLAG_NONFINITE, FLAG_RETAIN, FLAG_WRITABLE

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "demo-plant.yaml"

SIGNALS = [
    SignalDef("sp", SignalType.FLOAT, writable=True, minimum=0.0, maximum=5.0, initial=2.5),
    SignalDef("count", SignalType.INT, writable=True, minimum=-3, maximum=1000),
    SignalDef("low_only", SignalType.FLOAT, writable=True, minimum=-1.5),
    SignalDef("free", SignalType.FLOAT, writable=True),
    SignalDef("wild", SignalType.FLOAT, writable=True, allow_nonfinite=True, maximum=10.0),
    SignalDef("run", SignalType.BOOL, writable=True),
    SignalDef("measured", SignalType.FLOAT, minimum=0.0, maximum=1.0),  # not writable
    SignalDef("big", SignalType.INT, writable=True),
]


@pytest.fixture
def seg() -> Iterator[Segment]:
    s = Segment.create(f"chk-{uuid.uuid4().hex[:12]}", SIGNALS, journal_capacity=256)
    yield s
    unlink_instance(s.instance)
    s.close()


def test_flags_mirror_the_c_core() -> None:
    assert FLAG_WRITABLE == lib.PETRA_FLAG_WRITABLE
    assert FLAG_RETAIN == lib.PETRA_FLAG_RETAIN
    assert FLAG_NONFINITE == lib.PETRA_FLAG_NONFINITE


def test_directory_carries_limits_to_another_attachment(seg: Segment) -> None:
    other = Segment.attach(seg.instance, readonly=True)
    try:
        infos = {i.name: i for i in other.signals}
    finally:
        other.close()
    assert (infos["sp"].minimum, infos["sp"].maximum) == (0.0, 5.0)
    assert (infos["count"].minimum, infos["count"].maximum) == (-3.0, 1000.0)
    assert (infos["low_only"].minimum, infos["low_only"].maximum) == (-1.5, None)
    assert (infos["free"].minimum, infos["free"].maximum) == (None, None)
    assert infos["wild"].allow_nonfinite and not infos["sp"].allow_nonfinite
    assert infos["wild"].flags == FLAG_WRITABLE | FLAG_NONFINITE
    assert infos["sp"].writable and not infos["measured"].writable


def test_signal_def_limits_are_validated() -> None:
    with pytest.raises(ValueOutOfRangeError, match="minimum 2 is above maximum 1"):
        SignalDef("x", SignalType.FLOAT, minimum=2, maximum=1)
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueOutOfRangeError, match="finite"):
            SignalDef("x", SignalType.FLOAT, maximum=bad)
    with pytest.raises(ValueOutOfRangeError):
        SignalDef("x", SignalType.FLOAT, minimum=True)
    d = SignalDef("x", SignalType.INT, minimum=1, maximum=1)
    assert d.minimum == 1.0 and isinstance(d.minimum, float)
    assert SignalDef("x", SignalType.FLOAT, allow_nonfinite=True).flags == FLAG_NONFINITE


def test_plant_signal_defs_fill_the_limits() -> None:
    plant = load_plant(EXAMPLE)
    defs = {d.name: d for d in plant.signal_defs()}
    assert (defs["tank.level_sp"].minimum, defs["tank.level_sp"].maximum) == (0.0, 5.0)
    assert defs["tank.level"].minimum is None and defs["tank.level"].maximum is None
    assert not any(d.allow_nonfinite for d in defs.values())


def test_accepted_values_are_written_and_journalled(seg: Segment) -> None:
    cons = JournalConsumer(seg)
    seg.write_checked("sp", 0.0)
    seg.write_checked("sp", 5)  # an int for a float signal, at the upper limit
    assert seg.get("sp") == 5.0
    seg.write_checked("count", -3, quality=Quality.UNCERTAIN, source_ts_ns=123)
    s = seg.read("count")
    assert (s.value, s.quality, s.source_ts_ns) == (-3, Quality.UNCERTAIN, 123)
    seg.write_checked("count", 7.0)  # an integral float for an int signal
    assert seg.get("count") == 7
    seg.write_checked("low_only", 1e300)
    seg.write_checked("free", -1e308)
    seg.write_checked(seg.index("run"), True)
    seg.write_checked("run", 0)
    assert seg.get("run") is False
    seg.write_checked("big", 2**63 - 1)
    for v in (math.nan, -math.inf):  # +inf is above wild's maximum: see below
        seg.write_checked("wild", v)
        got = seg.get("wild")
        assert (math.isnan(got) and math.isnan(v)) or got == v
    assert len(cons.read()) == 11


def _refused(seg: Segment, key: str, value: object, exc: type[Exception], match: str,
             **kw: int) -> None:
    before = seg.read(key)
    head = seg.info().journal_head
    with pytest.raises(exc, match=match):
        seg.write_checked(key, value, **kw)
    after = seg.read(key)
    assert after == before, "a refused write changed the slot"
    assert seg.info().journal_head == head, "a refused write reached the journal"


def test_not_writable_is_refused(seg: Segment) -> None:
    _refused(seg, "measured", 0.5, SignalNotWritableError, "'measured' is not writable")
    assert issubclass(SignalNotWritableError, SignalError)
    seg.write("measured", 0.5)  # the plant's own writers are not checked


def test_wrong_type_is_refused(seg: Segment) -> None:
    _refused(seg, "sp", "1.0", SignalTypeError, "'sp' is float")
    _refused(seg, "sp", True, SignalTypeError, "'sp' is float")
    _refused(seg, "count", 2.5, SignalTypeError, "'count' is int")
    _refused(seg, "count", False, SignalTypeError, "'count' is int")
    _refused(seg, "run", 1.0, SignalTypeError, "'run' is bool")
    _refused(seg, "run", None, SignalTypeError, "'run' is bool")


def test_non_finite_is_refused_unless_allowed(seg: Segment) -> None:
    for v in (math.nan, math.inf, -math.inf):
        _refused(seg, "free", v, ValueOutOfRangeError, "not a finite number")
        _refused(seg, "sp", v, ValueOutOfRangeError, "not a finite number")
        _refused(seg, "count", v, ValueOutOfRangeError, "not a finite number")
        _refused(seg, "run", v, ValueOutOfRangeError, "not a finite number")


def test_outside_limits_is_refused_naming_both(seg: Segment) -> None:
    _refused(seg, "sp", 5.000001, ValueOutOfRangeError, r"'sp': 5.000001 is outside its "
             r"limits \[0, 5\]")
    _refused(seg, "sp", -0.1, ValueOutOfRangeError, r"outside its limits \[0, 5\]")
    _refused(seg, "count", 1001, ValueOutOfRangeError, r"'count': 1001 .* \[-3, 1000\]")
    _refused(seg, "count", -4, ValueOutOfRangeError, r"\[-3, 1000\]")
    _refused(seg, "low_only", -2, ValueOutOfRangeError, r"\[-1.5, inf\]")
    _refused(seg, "wild", 11.0, ValueOutOfRangeError, r"\[-inf, 10\]")
    _refused(seg, "wild", math.inf, ValueOutOfRangeError, r"\[-inf, 10\]")


def test_int64_overflow_and_bad_quality_are_refused(seg: Segment) -> None:
    _refused(seg, "big", 2**63, ValueOutOfRangeError, "int64")
    _refused(seg, "big", -(2**63) - 1, ValueOutOfRangeError, "int64")
    _refused(seg, "sp", 1.0, ValueOutOfRangeError, "quality", quality=3)
    _refused(seg, "sp", 1.0, ValueOutOfRangeError, "quality", quality=-1)


def test_unknown_signal(seg: Segment) -> None:
    with pytest.raises(UnknownSignalError):
        seg.write_checked("nope", 1.0)
    with pytest.raises(UnknownSignalError):
        seg.write_checked(len(SIGNALS), 1.0)


def test_integer_beyond_float64_is_a_range_error_not_an_overflow() -> None:
    from petra.errors import ValueOutOfRangeError
    from petra.types import SignalType, coerce_value

    with pytest.raises(ValueOutOfRangeError, match="does not fit"):
        coerce_value(SignalType.FLOAT, 10**400, name="x")
    with pytest.raises(ValueOutOfRangeError, match="does not fit"):
        coerce_value(SignalType.FLOAT, 1 << 20000, name="x")  # str() of it would fail
