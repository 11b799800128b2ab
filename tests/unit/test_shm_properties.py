"""Hypothesis: any sequence of writes, then reads, returns the last value written, and the
journal carries exactly those writes in order. Every type, NaN payloads (compared by bits),
+-inf, -0.0 and the int64 extremes included."""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from petra.shm import JournalConsumer, Quality, Segment, SignalDef, SignalType, unlink_instance

I64 = st.integers(-(2**63), 2**63 - 1)
ANY_FLOAT = st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True)
TYPES = [SignalType.BOOL, SignalType.INT, SignalType.FLOAT] * 2
MAX_WRITES = 60


@pytest.fixture(scope="module")
def seg() -> Iterator[Segment]:
    s = Segment.create(f"t-{uuid.uuid4().hex[:12]}",
                       [SignalDef(f"s{k}", t) for k, t in enumerate(TYPES)],
                       journal_capacity=1 << 8)
    yield s
    unlink_instance(s.instance)
    s.close()


def _bits(sig_type: SignalType, value: object) -> int:
    if sig_type is SignalType.FLOAT:
        bits: int = struct.unpack("<Q", struct.pack("<d", value))[0]
        return bits
    assert isinstance(value, int)
    return value & (2**64 - 1)


def _value_for(sig_type: SignalType) -> st.SearchStrategy[object]:
    if sig_type is SignalType.BOOL:
        return st.booleans()
    if sig_type is SignalType.INT:
        return I64
    return ANY_FLOAT


WRITE = st.integers(0, len(TYPES) - 1).flatmap(
    lambda k: st.tuples(st.just(k), _value_for(TYPES[k]), st.sampled_from(list(Quality)),
                        st.integers(0, 2**63 - 1), st.booleans()))


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(writes=st.lists(WRITE, max_size=MAX_WRITES))
def test_last_write_wins_and_journal_matches(
        seg: Segment, writes: list[tuple[int, object, Quality, int, bool]]) -> None:
    cons = JournalConsumer(seg, batch=MAX_WRITES + 1)
    last: dict[int, tuple[int, Quality, int]] = {}
    for k, value, quality, ts, by_name in writes:
        if by_name:
            seg.write(f"s{k}", value, quality, ts)  # type: ignore[arg-type]
        else:
            seg.write_index(k, value, quality, ts)  # type: ignore[arg-type]
        last[k] = (_bits(TYPES[k], value), quality, ts)
    for k, (bits, quality, ts) in last.items():
        sample = seg.read_index(k)
        assert _bits(TYPES[k], sample.value) == bits
        assert type(sample.value) is {SignalType.BOOL: bool, SignalType.INT: int,
                                      SignalType.FLOAT: float}[TYPES[k]]
        assert sample.quality == quality
        if ts:
            assert sample.source_ts_ns == ts
        assert _bits(TYPES[k], seg.get_index(k)) == bits
        assert _bits(TYPES[k], seg.get(f"s{k}")) == bits
    if last:
        raw = seg.read_batch(np.array(sorted(last), np.uint32))
        assert [int(b) for b in raw.values] == [last[k][0] for k in sorted(last)]
    batch = cons.read()
    assert cons.lost == 0
    assert list(batch.slot) == [k for k, *_ in writes]
    assert [int(b) for b in batch.value] == [_bits(TYPES[k], v) for k, v, *_ in writes]
    assert list(batch.quality) == [int(q) for _, _, q, _, _ in writes]


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(ANY_FLOAT, min_size=len(TYPES), max_size=len(TYPES)))
def test_batch_f64_round_trip_for_float_slots(seg: Segment, values: list[float]) -> None:
    floats = np.array([k for k, t in enumerate(TYPES) if t is SignalType.FLOAT], np.uint32)
    vals = np.array(values[: len(floats)], np.float64)
    assert seg.write_batch_f64(floats, vals) == len(floats)
    got, quality, busy = seg.read_batch_f64(floats)
    assert busy == 0 and list(quality) == [2] * len(floats)
    assert got.view(np.uint64).tolist() == vals.view(np.uint64).tolist()


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(I64, min_size=len(TYPES), max_size=len(TYPES)))
def test_raw_batch_round_trip(seg: Segment, values: list[int]) -> None:
    bits = np.array([_bits(t, v if t is not SignalType.BOOL else v & 1)
                     for t, v in zip(TYPES, values, strict=True)], np.uint64)
    assert seg.write_batch(None, bits) == len(TYPES)
    assert seg.read_batch().values.tolist() == bits.tolist()
