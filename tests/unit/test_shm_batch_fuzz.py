"""Fuzz every batch API with arrays of any dtype, length, stride, shape and writability.

Each array the C core may write into is a view placed inside a larger buffer of guard
bytes. Whatever Hypothesis draws, a call either succeeds (and then only for arrays that
are exactly right) or raises a TypeError/ValueError, and not one byte outside the
entries the call owns changes: not before the array, not after it, not in the slack of
an output array longer than the batch.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from petra.shm import BatchRead, Segment, SignalDef, SignalType, unlink_instance

N = 5
SIGNALS = [SignalDef(f"s{k}", SignalType.FLOAT) for k in range(N)]
GUARD = 64
FILL = 0xA5
DTYPES = [np.dtype(t) for t in (np.uint8, np.int8, np.uint16, np.int32, np.uint32, np.int64,
                                np.uint64, np.float32, np.float64, np.bool_)]
DTYPES += [np.dtype(">u8"), np.dtype(">f8"), np.dtype(">i8")]


@dataclass
class Guarded:
    """An array view inside a guard-filled arena; ``lo..hi`` is the view's byte extent."""

    view: npt.NDArray[Any]
    arena: npt.NDArray[np.uint8]
    lo: int
    hi: int

    def untouched_outside(self, owned_bytes: int = 0) -> bool:
        """No byte changed before the view, after it, or past its first
        ``owned_bytes`` (the entries the call was allowed to write)."""
        a = self.arena
        return bool((a[:self.lo] == FILL).all() and (a[self.lo + owned_bytes:] == FILL).all())


@st.composite
def guarded(draw: st.DrawFn, exact: np.dtype[Any] | None = None) -> Guarded:
    """An array of a drawn (or the given) dtype, length, stride, shape and writability."""
    dtype = exact if exact is not None and draw(st.booleans()) else draw(st.sampled_from(DTYPES))
    length = draw(st.integers(0, N + 3))
    step = draw(st.sampled_from([1, 1, 1, 2]))
    two_d = draw(st.integers(0, 9)) == 0
    readonly = draw(st.integers(0, 9)) == 0
    span = max(length * step, 1) * dtype.itemsize
    arena = np.full(span + 2 * GUARD, FILL, np.uint8)
    flat = arena[GUARD:GUARD + span].view(dtype)
    view = flat[::step][:length]
    if two_d and length % 2 == 0 and length:
        view = view.reshape(2, length // 2)
    if readonly:
        view.flags.writeable = False
    return Guarded(view, arena, GUARD, GUARD + span)


def _exactly(g: Guarded, dtype: type[np.generic], n: int) -> bool:
    v = g.view
    return (v.dtype == np.dtype(dtype) and v.ndim == 1 and v.flags.c_contiguous
            and v.flags.writeable and len(v) >= n)


@pytest.fixture(scope="module")
def seg() -> Iterator[Segment]:
    s = Segment.create(f"fz-{uuid.uuid4().hex[:10]}", SIGNALS, journal_capacity=64)
    s.write_batch_f64(None, np.arange(N, dtype=np.float64) + 0.5)
    yield s
    unlink_instance(s.instance)
    s.close()


FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(values=guarded(np.dtype(np.uint64)), quality=guarded(np.dtype(np.uint8)),
       sts=guarded(np.dtype(np.int64)), count=st.integers(0, N))
def test_read_batch_out(seg: Segment, values: Guarded, quality: Guarded, sts: Guarded,
                        count: int) -> None:
    out = BatchRead(values.view, quality.view, sts.view, 0)
    ok = (_exactly(values, np.uint64, count) and _exactly(quality, np.uint8, count)
          and _exactly(sts, np.int64, count))
    try:
        got = seg.read_batch(first=0, count=count, out=out)
    except (TypeError, ValueError):
        assert not ok, "a valid output was refused"
        owned = (0, 0, 0)
    else:
        assert ok, "an invalid output was accepted"
        assert got.values[:count].view(np.float64).tolist() == [k + 0.5 for k in range(count)]
        owned = (count * 8, count, count * 8)
    for g, b in zip((values, quality, sts), owned, strict=True):
        assert g.untouched_outside(b)


@FUZZ
@given(values=guarded(np.dtype(np.float64)), quality=guarded(np.dtype(np.uint8)),
       count=st.integers(0, N))
def test_read_batch_f64_out(seg: Segment, values: Guarded, quality: Guarded,
                            count: int) -> None:
    ok = _exactly(values, np.float64, count) and _exactly(quality, np.uint8, count)
    try:
        v, _, _ = seg.read_batch_f64(first=0, count=count, values=values.view,
                                     quality=quality.view)
    except (TypeError, ValueError):
        assert not ok, "a valid output was refused"
        owned = (0, 0)
    else:
        assert ok, "an invalid output was accepted"
        assert v[:count].tolist() == [k + 0.5 for k in range(count)]
        owned = (count * 8, count)
    for g, b in zip((values, quality), owned, strict=True):
        assert g.untouched_outside(b)


@FUZZ
@given(indices=guarded(np.dtype(np.uint32)), fill=st.integers(-2, N + 1))
def test_read_batch_indices(seg: Segment, indices: Guarded, fill: int) -> None:
    if indices.view.flags.writeable and indices.view.size:
        indices.view[...] = np.array(fill, np.int64).astype(indices.view.dtype)  # may wrap
    before = indices.arena.copy()
    try:
        got = seg.read_batch(indices.view)
    except (TypeError, ValueError, KeyError):
        pass  # UnknownSignalError is a KeyError: an index outside the table
    else:
        assert indices.view.ndim == 1
        assert indices.view.size == 0 or indices.view.dtype.kind in "iu"  # no float/bool
        idx = indices.view.astype(np.int64)
        assert ((idx >= 0) & (idx < N)).all()
        assert got.values.view(np.float64).tolist() == [k + 0.5 for k in idx.tolist()]
    assert (indices.arena == before).all()  # an input is never written


@FUZZ
@given(values=guarded(np.dtype(np.uint64)), quality=st.none() | guarded(np.dtype(np.uint8)),
       sts=st.none() | guarded(np.dtype(np.int64)))
def test_write_batch_inputs(seg: Segment, values: Guarded, quality: Guarded | None,
                            sts: Guarded | None) -> None:
    bits = np.float64(1.25).view(np.uint64)
    if values.view.flags.writeable and values.view.size:
        values.view[...] = bits if values.view.dtype == np.uint64 else 1
    arenas = [g.arena.copy() for g in (values, quality, sts) if g is not None]
    head = seg.info().journal_head
    try:
        w = seg.write_batch(None, values.view, None if quality is None else quality.view,
                            source_ts_ns=None if sts is None else sts.view)
    except (TypeError, ValueError, KeyError):
        assert seg.info().journal_head == head, "a refused batch wrote something"
    else:
        n = len(values.view)
        assert w == n and w.failed.size == 0
        assert seg.info().journal_head == head + n
    for g, a in zip([g for g in (values, quality, sts) if g is not None], arenas, strict=True):
        assert (g.arena == a).all()
    seg.write_batch_f64(None, np.arange(N, dtype=np.float64) + 0.5)  # restore


@FUZZ
@given(values=guarded(np.dtype(np.float64)), quality=st.none() | guarded(np.dtype(np.uint8)),
       first=st.integers(-1, N + 1))
def test_write_batch_f64_inputs(seg: Segment, values: Guarded, quality: Guarded | None,
                                first: int) -> None:
    if values.view.flags.writeable and values.view.size:
        values.view[...] = 1
    head = seg.info().journal_head
    try:
        w = seg.write_batch_f64(None, values.view,
                                None if quality is None else quality.view, first=first)
    except (TypeError, ValueError, KeyError):
        assert seg.info().journal_head == head, "a refused batch wrote something"
    else:
        n = len(values.view)
        assert first >= 0 and first + n <= N
        assert w == n and seg.info().journal_head == head + n
    assert values.untouched_outside(values.hi - values.lo)
    seg.write_batch_f64(None, np.arange(N, dtype=np.float64) + 0.5)  # restore
