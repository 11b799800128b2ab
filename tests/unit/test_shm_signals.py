"""Single-signal and batch reads and writes, the directory, and every signal-level error."""

from __future__ import annotations

import math
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from petra.errors import (
    InvalidNameError,
    SegmentReadOnlyError,
    SignalBusyError,
    SignalTypeError,
    UnknownSignalError,
    ValueOutOfRangeError,
)
from petra.shm import (
    BatchRead,
    JournalConsumer,
    Quality,
    Segment,
    SignalDef,
    SignalType,
    Substatus,
    decode_bits,
    unlink_instance,
    validate_signal_name,
)

I64_MIN, I64_MAX = -(2**63), 2**63 - 1

SIGNALS = [
    SignalDef("temp", SignalType.FLOAT, unit="degC", owner="driver:s7", writable=True),
    SignalDef("count", SignalType.INT, owner="scan"),
    SignalDef("alarm", SignalType.BOOL),
    SignalDef("température.zone_2", SignalType.FLOAT, unit="°C"),  # UTF-8 name and unit
]
F, I, B, U = 0, 1, 2, 3  # noqa: E741  # slot indices named by type


@pytest.fixture
def seg() -> Iterator[Segment]:
    s = Segment.create(f"t-{uuid.uuid4().hex[:12]}", SIGNALS, journal_capacity=1 << 10)
    yield s
    unlink_instance(s.instance)
    s.close()


# ------------------------------------------------------------------ directory
def test_directory_round_trip(seg: Segment) -> None:
    other = Segment.attach(seg.instance, readonly=True)
    try:
        infos = other.signals
        assert [i.name for i in infos] == [s.name for s in SIGNALS]
        assert [i.type for i in infos] == [s.type for s in SIGNALS]
        assert infos[F].unit == "degC"
        assert infos[F].owner == "driver:s7"
        assert infos[F].writable and not infos[I].writable
        assert infos[U].name == "température.zone_2"
        assert infos[U].unit == "°C"
        assert other.index("température.zone_2") == U
        assert other.info_of("count").index == I
        assert other.info_of(2).type is SignalType.BOOL
        assert list(other.indices(["alarm", "temp"])) == [B, F]
    finally:
        other.close()


def test_name_length_limits() -> None:
    validate_signal_name("a" * 63)
    validate_signal_name("é" * 31)  # 62 bytes
    with pytest.raises(InvalidNameError, match="63 bytes"):
        validate_signal_name("a" * 64)
    with pytest.raises(InvalidNameError, match="63 bytes"):
        validate_signal_name("é" * 32)  # 64 bytes in UTF-8
    with pytest.raises(InvalidNameError, match="15 bytes"):
        SignalDef("x", SignalType.INT, unit="u" * 16)
    with pytest.raises(InvalidNameError, match="23 bytes"):
        SignalDef("x", SignalType.INT, owner="o" * 24)


@pytest.mark.parametrize("bad", ["", "1abc", "a b", "a..b", ".a", "a.", "a;b", "tank\x00"])
def test_invalid_signal_names(bad: str) -> None:
    with pytest.raises(InvalidNameError):
        SignalDef(bad, SignalType.FLOAT)


def test_type_parse() -> None:
    assert SignalType.parse(" Double ") is SignalType.FLOAT
    assert SignalType.parse("int64") is SignalType.INT
    assert SignalType.parse("boolean") is SignalType.BOOL
    with pytest.raises(ValueError, match="unknown signal type"):
        SignalType.parse("string")


def test_long_names_fit_the_directory() -> None:
    sigs = [SignalDef("n" * 63, SignalType.INT), SignalDef("é" * 31, SignalType.BOOL)]
    s = Segment.create(f"t-{uuid.uuid4().hex[:12]}", sigs)
    try:
        assert s.names == ["n" * 63, "é" * 31]
        s.write("n" * 63, 5)
        assert s.get("n" * 63) == 5
    finally:
        s.unlink()
        s.close()


# ------------------------------------------------------------------ single reads and writes
def test_initial_values_and_quality(seg: Segment) -> None:
    sample = seg.read("temp")
    assert sample.value == 0.0
    assert sample.quality is Quality.UNCERTAIN
    assert sample.substatus is Substatus.INITIAL
    assert seg.get("alarm") is False
    assert seg.get("count") == 0


def test_read_write_by_name_and_index(seg: Segment) -> None:
    seg.write("temp", 21.5, Quality.UNCERTAIN, source_ts_ns=123)
    s = seg.read("temp")
    assert (s.value, s.quality, s.source_ts_ns, s.writer) == (21.5, Quality.UNCERTAIN, 123,
                                                              os.getpid())
    assert s.substatus is Substatus.NONE
    assert s.write_ts_ns > 0
    seg.write_index(I, -5)
    assert seg.get_index(I) == -5
    assert seg.read_index(I).value == -5
    seg.write_index(B, True)
    assert seg.get_index(B) is True
    assert seg.read(B).value is True
    seg.write("alarm", 0)
    assert seg.get("alarm") is False
    seg.write("temp", 3)  # int -> float is fine
    assert seg.get("temp") == 3.0
    assert isinstance(seg.get("temp"), float)
    seg.write("count", 4.0)  # integral float -> int is fine
    assert seg.get("count") == 4
    # source_ts 0 means "now": the write timestamp.
    seg.write("count", 1)
    s2 = seg.read("count")
    assert s2.source_ts_ns == s2.write_ts_ns


def test_special_values_round_trip(seg: Segment) -> None:
    for v in (math.inf, -math.inf, -0.0, 5e-324, 1.7976931348623157e308):
        seg.write_index(F, v)
        assert seg.get_index(F) == v
        assert math.copysign(1, seg.get_index(F)) == math.copysign(1, v)
    seg.write_index(F, math.nan)
    assert math.isnan(seg.get_index(F))  # NaN is a value, not an error sentinel
    assert math.isnan(seg.read_index(F).value)
    for v in (I64_MIN, I64_MAX, 0, -1):
        seg.write_index(I, v)
        assert seg.get_index(I) == v  # INT64_MIN is a value too
        assert seg.read_index(I).value == v


def test_unknown_signal_with_suggestion(seg: Segment) -> None:
    with pytest.raises(UnknownSignalError, match="did you mean temp"):
        seg.read("tmep")
    with pytest.raises(UnknownSignalError) as exc:
        seg.write("nope", 1)
    assert "did you mean" not in str(exc.value)
    assert isinstance(exc.value, KeyError)
    with pytest.raises(UnknownSignalError):
        seg.index("nope")


@pytest.mark.parametrize("bad", [-1, 4, 10**12, 1.5, None])
def test_bad_indices(seg: Segment, bad: object) -> None:
    ops: list[Callable[[Any], object]] = [
        seg.get_index, seg.read_index, seg.get, seg.read,
        lambda i: seg.write_index(i, 1.0), lambda i: seg.write(i, 1.0)]
    for op in ops:
        with pytest.raises(UnknownSignalError):
            op(bad)


def test_type_mismatch(seg: Segment) -> None:
    with pytest.raises(SignalTypeError, match="'temp' is float"):
        seg.write("temp", "hot")  # type: ignore[arg-type]
    with pytest.raises(SignalTypeError, match="is float"):
        seg.write("temp", True)
    with pytest.raises(SignalTypeError, match="is int"):
        seg.write("count", 1.5)
    with pytest.raises(SignalTypeError, match="is int"):
        seg.write("count", False)
    with pytest.raises(SignalTypeError, match="is bool"):
        seg.write("alarm", 0.5)
    assert isinstance(SignalTypeError("x"), TypeError)


def test_out_of_range(seg: Segment) -> None:
    with pytest.raises(ValueOutOfRangeError, match="int64"):
        seg.write("count", I64_MAX + 1)
    with pytest.raises(ValueOutOfRangeError, match="int64"):
        seg.write("count", I64_MIN - 1)
    with pytest.raises(ValueOutOfRangeError, match="not 0 or 1"):
        seg.write("alarm", 2)
    with pytest.raises(ValueOutOfRangeError):
        seg.write("temp", 1.0, quality=3)
    with pytest.raises((ValueOutOfRangeError, SignalTypeError)):
        seg.write("temp", 1.0, quality=-1)
    assert seg.get("count") == 0  # nothing was written


def test_read_only_writes(seg: Segment) -> None:
    ro = Segment.attach(seg.instance, readonly=True)
    try:
        assert ro.get("temp") == 0.0
        with pytest.raises(SegmentReadOnlyError):
            ro.write("temp", 1.0)
        with pytest.raises(SegmentReadOnlyError):
            ro.write_index(I, 1)
        with pytest.raises(SegmentReadOnlyError):
            ro.write_batch(None, np.zeros(4, np.uint64))
        with pytest.raises(SegmentReadOnlyError):
            ro.write_batch_f64([0], np.zeros(1))
        with pytest.raises(SegmentReadOnlyError):
            ro.repair_writer(12345)
    finally:
        ro.close()


def test_busy_slot_reports_busy(seg: Segment) -> None:
    """A slot held by a writer that never finishes: readers get busy after bounded
    retries; a writer waits for the (live) holder up to its wait budget, then gives up
    and says who holds it; a batch write lists the slot as failed."""
    seg.write("count", 41)
    seg._debug_begin_write("count")
    assert seg.slot_holder("count") == os.getpid()
    seg.set_retry_limit(8)
    seg.set_write_wait(0.02)
    with pytest.raises(SignalBusyError):
        seg.get("count")
    with pytest.raises(SignalBusyError):
        seg.read("count")
    with pytest.raises(SignalBusyError, match=f"held by pid {os.getpid()}, alive"):
        seg.write("count", 1)
    out = seg.read_batch()
    assert out.busy == 1 and out.busy_indices.tolist() == [I]
    w = seg.write_batch(None, np.array([0, 2, 0, 0], np.uint64))
    assert w == 3 and w.written == 3 and w.failed.tolist() == [I]
    stats = seg.lock_stats()
    assert stats.busy_live == 2 and stats.waits == 2
    assert (stats.busy_dead, stats.busy_stopped) == (0, 0)
    assert seg.repair_writer(os.getpid()) == 1
    sample = seg.read("count")
    assert (sample.quality, sample.substatus) == (Quality.BAD, Substatus.WRITER_DIED)
    assert seg.repair_writer(os.getpid()) == 0
    with pytest.raises(ValueOutOfRangeError):
        seg.repair_writer(0)


@pytest.mark.parametrize("how", ["read", "get"])
def test_a_read_waits_for_a_live_holder_to_leave(seg: Segment, how: str) -> None:
    """A holder that is alive (on a busy box: preempted inside its write section) is
    waited for, as a write waits, instead of failing the read after a few microseconds
    of spinning (the API's WebSocket resync died of that under load). Here the holder
    is this process, and another handle frees the slot 50 ms later by repairing it."""
    seg.write("count", 41)
    seg._debug_begin_write("count")
    seg.set_retry_limit(8)
    other = Segment.attach(seg.instance)
    freer = threading.Timer(0.05, lambda: other.repair_writer(os.getpid()))
    freer.start()
    try:
        if how == "read":
            sample = seg.read("count")  # waits for the holder, then reads
            # the debug write left a torn value: the repair marks it, it does not undo it
            assert (sample.quality, sample.substatus) == (Quality.BAD, Substatus.WRITER_DIED)
        else:
            assert isinstance(seg.get("count"), int)  # no SignalBusyError
    finally:
        freer.join()
        other.close()


# ------------------------------------------------------------------ batches
def test_batch_read_range_and_indices(seg: Segment) -> None:
    seg.write("temp", 1.5)
    seg.write("count", -7)
    seg.write("alarm", True)
    seg.write(U, math.inf, Quality.BAD)
    full = seg.read_batch()
    assert full.busy == 0
    assert [decode_bits(t, int(b)) for t, b in zip([s.type for s in SIGNALS], full.values,
                                                    strict=True)] == [1.5, -7, True, math.inf]
    assert list(full.quality) == [2, 2, 2, 0]
    part = seg.read_batch(first=1, count=2)
    assert list(part.values.view(np.int64)) == [-7, 1]
    picked = seg.read_batch(np.array([2, 0], np.uint32))
    assert int(picked.values[0]) == 1
    assert picked.values.view(np.float64)[1] == 1.5
    vals, q, busy = seg.read_batch_f64([0, 1, 2, 3])
    assert list(vals) == [1.5, -7.0, 1.0, math.inf]
    assert list(q) == [2, 2, 2, 0] and busy == 0
    vals2, _, _ = seg.read_batch_f64(first=1, count=2)
    assert list(vals2) == [-7.0, 1.0]


def test_batch_out_reuse(seg: Segment) -> None:
    out = BatchRead(np.zeros(4, np.uint64), np.zeros(4, np.uint8), np.zeros(4, np.int64), 0)
    seg.write("count", 9)
    got = seg.read_batch(out=out)
    assert got is out
    assert int(out.values[1]) == 9
    vals = np.zeros(4)
    q = np.zeros(4, np.uint8)
    v2, q2, _ = seg.read_batch_f64(values=vals, quality=q)
    assert v2 is vals and q2 is q and vals[1] == 9.0
    with pytest.raises(ValueOutOfRangeError, match="holds 2 entries, 4 needed"):
        seg.read_batch(out=BatchRead(np.zeros(2, np.uint64), np.zeros(2, np.uint8),
                                     np.zeros(2, np.int64), 0))
    with pytest.raises(ValueOutOfRangeError, match="holds 1 entries, 4 needed"):
        seg.read_batch_f64(values=np.zeros(1))


def test_batch_read_busy_keeps_last_value(seg: Segment) -> None:
    seg.write("count", 5)
    out = seg.read_batch()
    assert int(out.values[I]) == 5
    seg._debug_begin_write("count")  # leaves 0xDEAD... in the slot, seq odd
    seg.set_retry_limit(4)
    out = seg.read_batch(out=out)
    assert out.busy == 1 and out.busy_indices.tolist() == [I]
    assert int(out.values[I]) == 5  # the last good value stands
    vals = np.full(4, 7.0)
    _, _, busy = seg.read_batch_f64(values=vals)
    assert busy == 1 and vals[I] == 7.0
    seg.repair_writer(os.getpid())


def test_batch_write_paths(seg: Segment) -> None:
    bits = np.array([seg.encode("temp", 2.5), seg.encode("count", -3), 1,
                     seg.encode(U, -math.inf)], np.uint64)
    q = np.array([2, 1, 0, 2], np.uint8)
    ts = np.array([10, 20, 30, 40], np.int64)
    assert seg.write_batch(None, bits, q, source_ts_ns=ts) == 4
    assert seg.read("temp").value == 2.5
    c = seg.read("count")
    assert (c.value, c.quality, c.source_ts_ns) == (-3, Quality.UNCERTAIN, 20)
    assert seg.read("alarm").quality is Quality.BAD
    assert seg.write_batch([1], np.array([seg.encode("count", 8)], np.uint64)) == 1
    assert seg.get("count") == 8
    assert seg.write_batch(None, np.array([seg.encode("count", 9)], np.uint64), first=1) == 1
    assert seg.get("count") == 9
    assert seg.write_batch_f64(None, np.array([1.0, 2.0, 0.0, 4.0])) == 4
    assert (seg.get("temp"), seg.get("count"), seg.get("alarm")) == (1.0, 2, False)
    assert seg.write_batch_f64([2, 1], np.array([1.0, -5.0]), np.array([1, 1], np.uint8)) == 2
    assert seg.get("alarm") is True and seg.get("count") == -5


def test_batch_errors(seg: Segment) -> None:
    with pytest.raises(UnknownSignalError, match="outside"):
        seg.read_batch(first=3, count=2)
    with pytest.raises(UnknownSignalError, match="outside"):
        seg.read_batch(np.array([0, 4], np.uint32))
    with pytest.raises(UnknownSignalError):
        seg.read_batch(first=-1)
    assert seg.read_batch(np.array([0, 1], np.int64)).values.size == 2  # converted
    with pytest.raises(SignalTypeError, match="uint32"):
        seg.read_batch(np.array([0.0, 1.0]))
    with pytest.raises(UnknownSignalError, match="negative"):
        seg.read_batch([0, -1])
    with pytest.raises(ValueOutOfRangeError, match="do not fit"):
        seg.write_batch_f64([0], [2**63 + 1])
    with pytest.raises(SignalTypeError, match="one-dimensional"):
        seg.read_batch(np.zeros((2, 2), np.uint32))
    with pytest.raises(ValueOutOfRangeError, match="values for"):
        seg.read_batch(np.array([0], np.uint32), count=2)
    with pytest.raises(SignalTypeError, match="uint64"):
        seg.write_batch(None, np.zeros(4))
    with pytest.raises(ValueOutOfRangeError, match="quality has"):
        seg.write_batch(None, np.zeros(4, np.uint64), np.zeros(3, np.uint8))
    with pytest.raises(ValueOutOfRangeError, match=r"0\.\.2"):
        seg.write_batch(None, np.zeros(4, np.uint64), np.full(4, 3, np.uint8))
    with pytest.raises(ValueOutOfRangeError, match="bool must be 0/1"):
        seg.write_batch(None, np.array([0, 0, 2, 0], np.uint64))
    with pytest.raises(ValueOutOfRangeError, match="NaN"):
        seg.write_batch_f64([1], np.array([math.nan]))
    with pytest.raises(ValueOutOfRangeError, match="NaN"):
        seg.write_batch_f64([1], np.array([2.0**63]))
    with pytest.raises(ValueOutOfRangeError, match="NaN"):
        seg.write_batch_f64([2], np.array([math.nan]))
    # A refused batch writes nothing, not even its valid prefix.
    assert seg.get("temp") == 0.0


def test_batch_write_journals_every_slot(seg: Segment) -> None:
    cons = JournalConsumer(seg)
    seg.write_batch_f64(None, np.array([1.0, 2.0, 1.0, 4.0]))
    batch = cons.read()
    assert list(batch.slot) == [0, 1, 2, 3]
    assert batch.decoded() == [1.0, 2, True, 4.0]


# ------------------------------------------------------------------ encode / decode
def test_encode_decode(seg: Segment) -> None:
    assert seg.encode("temp", 1.0) == 0x3FF0000000000000
    assert seg.encode("count", -1) == 0xFFFFFFFFFFFFFFFF
    assert seg.encode("alarm", True) == 1
    assert seg.decode("temp", 0x3FF0000000000000) == 1.0
    assert seg.decode("count", 0xFFFFFFFFFFFFFFFF) == -1
    assert seg.decode("count", 1 << 63) == I64_MIN
    assert seg.decode("alarm", 1) is True
    assert decode_bits(SignalType.BOOL, 0) is False
    assert math.isnan(float(decode_bits(SignalType.FLOAT, 0x7FF8000000000001)))
    with pytest.raises(ValueOutOfRangeError):
        seg.encode("count", 2**63)
    with pytest.raises(SignalTypeError):
        seg.encode("alarm", 0.5)
