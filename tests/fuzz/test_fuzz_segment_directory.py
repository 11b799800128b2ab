"""Fuzzing the segment directory parser (issue 11): whatever bytes a directory entry
holds, attaching gives a handle whose entries obey the rules, or one
:class:`SegmentLayoutError` naming the segment; never another exception.

Two levels: the entry decoder alone on random fields, and a real segment whose
directory bytes are overwritten at random places before each attach (and restored
after). Budget: ``PETRA_FUZZ_EXAMPLES`` examples per property (default 150).
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from petra.errors import SegmentLayoutError
from petra.shm import Segment, SignalDef, SignalType
from petra.shm._directory import directory_entry
from petra.top._sampler import Sampler
from petra.types import validate_signal_name

EXAMPLES = int(os.environ.get("PETRA_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
ENTRY = 128  # sizeof(petra_dir_entry_t), asserted in csrc/layout.h
NAMES = ["tank.level", "pump.run", "count.total", "valve.cmd"]

_bytes = st.one_of(st.binary(max_size=70),
                   st.text(max_size=30).map(lambda t: t.encode("utf-8", "surrogatepass")))
_floats = st.floats(allow_nan=True, allow_infinity=True)


@FUZZ
@given(name=_bytes, code=st.integers(-5, 300), unit=_bytes, owner=_bytes, lo=_floats,
       hi=_floats)
def test_entry_decoder(*, name: bytes, code: int, unit: bytes, owner: bytes, lo: float,
                       hi: float) -> None:
    try:
        text, typ, u, o, mn, mx = directory_entry("fz", 3, name=name, type_code=code,
                                                  unit=unit, owner=owner, minimum=lo,
                                                  maximum=hi)
    except SegmentLayoutError as exc:
        assert str(exc).startswith("segment 'fz': directory entry 3 is corrupt: ")
        assert "\n" not in str(exc)
        return
    validate_signal_name(text)
    assert typ in SignalType and len(u.encode()) <= 15 and len(o.encode()) <= 23
    assert (mn is None) == math.isnan(lo) and (mx is None) == math.isnan(hi)
    assert mn is None or mx is None or mn <= mx


@pytest.fixture(scope="module")
def segment() -> Iterator[tuple[Segment, Path, int]]:
    defs = [SignalDef(n, t, unit="u", owner="scan", minimum=0.0, maximum=10.0)
            if t is not SignalType.BOOL else SignalDef(n, t)
            for n, t in zip(NAMES, [SignalType.FLOAT, SignalType.BOOL, SignalType.INT,
                                    SignalType.FLOAT], strict=True)]
    seg = Segment.create(f"fuzzdir-{uuid.uuid4().hex[:8]}", defs)
    path = Path("/dev/shm") / f"petra.{seg.instance}"
    start = path.read_bytes().index(NAMES[0].encode() + b"\0")
    yield seg, path, start
    seg.close()
    seg.unlink()


@FUZZ
@given(st.lists(st.tuples(st.integers(0, ENTRY * len(NAMES) - 1), st.binary(min_size=1,
                                                                             max_size=16)),
                min_size=1, max_size=4))
def test_attach_after_random_directory_damage(segment: tuple[Segment, Path, int],
                                              damage: list[tuple[int, bytes]]) -> None:
    seg, path, start = segment
    end = start + ENTRY * len(NAMES)
    with path.open("r+b") as f:
        f.seek(start)
        original = f.read(end - start)
        try:
            for offset, data in damage:
                f.seek(start + offset)
                f.write(data[:end - start - offset])
            f.flush()
            try:
                attached = Segment.attach(seg.instance, readonly=True)
            except SegmentLayoutError as exc:
                assert str(exc).startswith(f"segment {seg.instance!r}: directory entr")
                return
            with attached, Sampler(attached) as sampler:
                names = attached.names
                assert len(set(names)) == len(names) == len(NAMES)
                for n in names:
                    validate_signal_name(n)
                snap = sampler.sample()
                assert len(snap.signals) == len(NAMES)
        finally:
            f.seek(start)
            f.write(original)
