"""The segment's own name index (issue 18): names resolve in C on demand, attach checks
the index against the directory, and a segment can be created from compact arrays."""

from __future__ import annotations

import math
import struct
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from petra.errors import PetraError, SegmentLayoutError, UnknownSignalError
from petra.shm import Quality, Segment, SignalArrays, SignalDef, SignalType
from petra.types import journal_capacity_for

NAMES = ["tank.level", "pump-1/run", "Temperatur.Kühler", "_count", "a", "zone.ß.t"]
TYPES = [SignalType.FLOAT, SignalType.BOOL, SignalType.FLOAT, SignalType.INT,
         SignalType.INT, SignalType.FLOAT]


@pytest.fixture
def seg() -> Iterator[Segment]:
    defs = [SignalDef(n, t, unit="°C" if "Kühler" in n else "m", owner="scan")
            for n, t in zip(NAMES, TYPES, strict=True)]
    s = Segment.create(f"dirx-{uuid.uuid4().hex[:8]}", defs)
    yield s
    s.close()
    s.unlink()


def test_every_name_resolves_in_a_fresh_handle(seg: Segment) -> None:
    with Segment.attach(seg.instance, readonly=True) as other:
        for i, name in enumerate(NAMES):
            assert name in other
            assert other.index(name) == i
            assert other.info_of(name).type is TYPES[i]
        assert other.info_of("Temperatur.Kühler").unit == "°C"
        assert "tank.levelx" not in other and "" not in other and "x" * 80 not in other
        assert "a\0" not in other and "tank.level\0x" not in other and "\udcff" not in other
        with pytest.raises(UnknownSignalError, match=r"did you mean tank\.level"):
            other.index("tank.lvel")
        assert other.names == NAMES  # the full list, built on demand
        assert other.index("zone.ß.t") == 5  # and lookups still agree afterwards


def test_many_signals_resolve_and_read_back() -> None:
    n = 20_000
    defs = [SignalDef(f"area{k // 100}.s{k % 100}", SignalType.INT, initial=k)
            for k in range(n)]
    with Segment.create(f"dirn-{uuid.uuid4().hex[:8]}", defs) as seg:
        try:
            with Segment.attach(seg.instance, readonly=True) as other:
                for k in range(0, n, 97):
                    assert other.get(f"area{k // 100}.s{k % 100}") == k
                assert "area200.s0" not in other
        finally:
            seg.unlink()


def test_a_damaged_index_refuses_attach(seg: Segment) -> None:
    path = Path("/dev/shm") / f"petra.{seg.instance}"
    raw = path.read_bytes()
    index_offset, _, buckets = struct.unpack_from("<QQQ", raw, 216)
    table = np.frombuffer(raw, np.uint32, buckets, index_offset)
    used = int(np.flatnonzero(table)[0])
    with path.open("r+b") as f:  # move one entry's bucket out of its probe chain
        f.seek(index_offset + 4 * used)
        f.write(b"\0\0\0\0")
    with pytest.raises(SegmentLayoutError, match=r"does not match the segment's name index"):
        Segment.attach(seg.instance, readonly=True)


def test_create_from_arrays() -> None:
    names = ["a.x", "a.y", "b.flag"]
    table = SignalArrays.from_arrays(
        names, [SignalType.FLOAT, SignalType.INT, SignalType.BOOL], units=["m", "", ""],
        initial=np.array([np.float64(2.5).view(np.uint64), 7, 1], np.uint64),
        initial_quality=[Quality.GOOD] * 3, minimum=[0.0, math.nan, math.nan],
        maximum=[10.0, math.nan, math.nan])
    with Segment.create(f"dira-{uuid.uuid4().hex[:8]}", table) as seg:
        try:
            assert seg.names == names
            assert seg.read("a.x").value == 2.5 and seg.read("a.x").quality is Quality.GOOD
            assert seg.get("a.y") == 7 and seg.get("b.flag") is True
            info = seg.info_of("a.x")
            assert (info.unit, info.minimum, info.maximum) == ("m", 0.0, 10.0)
            assert seg.info().journal_capacity == journal_capacity_for(3) == 1 << 16
        finally:
            seg.unlink()


def test_arrays_are_checked() -> None:
    with pytest.raises(PetraError, match="invalid"):
        SignalArrays.from_arrays(["bad name"], [SignalType.INT])
    with pytest.raises(PetraError, match="types must be"):
        SignalArrays.from_arrays(["ok"], [9])
    with pytest.raises(PetraError, match="min <= max"):
        SignalArrays.from_arrays(["ok"], [SignalType.INT], minimum=[2.0], maximum=[1.0])
    dup = SignalArrays.from_arrays(["a", "b", "a"], [SignalType.INT] * 3)
    with pytest.raises(PetraError, match=r"signal 'a' is defined twice \(entries 0 and 2\)"):
        Segment.create(f"dird-{uuid.uuid4().hex[:8]}", dup)


def test_an_empty_segment_attaches() -> None:
    with Segment.create(f"dire-{uuid.uuid4().hex[:8]}", []) as seg:
        try:
            with Segment.attach(seg.instance) as other:
                assert len(other) == 0 and other.names == [] and "a" not in other
        finally:
            seg.unlink()


def test_journal_capacity_formula() -> None:
    assert journal_capacity_for(0) == 1 << 16
    assert journal_capacity_for(16_384) == 1 << 16
    assert journal_capacity_for(16_385) == 1 << 17
    assert journal_capacity_for(100_000) == 1 << 19
    assert journal_capacity_for(10**7) == 1 << 22
