"""Which journal entries the history records: change, deadband, intervals, period."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from petra.config._history import RecordRule
from petra.history import Recorder, Samples, SignalTable

S = 1_000_000_000
TABLE = SignalTable(("f", "i", "b", "g"), (3, 2, 1, 3))


def bits(values: list[float]) -> np.ndarray:
    return np.asarray(values, np.float64).view(np.uint64)


def offer(rec: Recorder, slots: list[int], values: list[float], now: int, *,
          quality: list[int] | None = None, substatus: list[int] | None = None) -> Samples:
    n = len(slots)
    v = np.asarray([np.float64(x).view(np.uint64) if TABLE.types[s] == 3
                    else np.uint64(int(x)) for s, x in zip(slots, values, strict=True)],
                   np.uint64)
    q = np.asarray(quality or [2] * n, np.uint8)
    sub = np.asarray(substatus or [0] * n, np.uint8)
    ts = np.arange(n, dtype=np.int64) + now
    return rec.offer(np.asarray(slots, np.uint32), v, q, sub, ts, ts, now)


def fvals(s: Samples) -> list[float]:
    return [float(x) for x in s.value.view(np.float64)]


def test_a_value_written_again_unchanged_is_not_a_sample() -> None:
    rec = Recorder(TABLE, [])
    out = offer(rec, [0, 0, 0, 1, 1, 0], [1.0, 1.0, 2.0, 5, 5, 2.0], S)
    assert out.sig.tolist() == [0, 0, 1]
    assert offer(rec, [0, 1], [2.0, 5], 2 * S).sig.tolist() == []  # the state carries over


def test_quality_and_substatus_changes_are_samples() -> None:
    rec = Recorder(TABLE, [RecordRule(signals=["*"], deadband=10.0, min_interval_s=100)])
    offer(rec, [0], [1.0], S)
    out = offer(rec, [0, 0, 0], [1.0, 1.0, 1.0], S + 1, quality=[0, 0, 0],
                substatus=[0, 3, 3])
    assert out.quality.tolist() == [0, 0] and out.substatus.tolist() == [0, 3]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.sampled_from([0.0, 1.0, 2.0]),
                          st.sampled_from([0, 2])), max_size=60),
       st.integers(1, 7))
def test_vectorised_change_detection_equals_the_sequential_rule(
        entries: list[tuple[int, float, int]], split: int) -> None:
    rec = Recorder(TABLE, [])
    got: list[tuple[int, float, int]] = []
    for a in range(0, len(entries), split):
        chunk = entries[a:a + split]
        out = offer(rec, [e[0] for e in chunk], [e[1] for e in chunk], S,
                    quality=[e[2] for e in chunk])
        vals = [float(np.uint64(v).view(np.float64)) if TABLE.types[s] == 3 else float(v)
                for s, v in zip(out.sig.tolist(), out.value.tolist(), strict=True)]
        got.extend(zip(out.sig.tolist(), vals, out.quality.tolist(), strict=True))
    last: dict[int, tuple[float, int]] = {}
    want = []
    for s, raw, q in entries:
        v = float(raw if TABLE.types[s] == 3 else int(raw))
        if last.get(s) != (v, q):
            want.append((s, v, q))
            last[s] = (v, q)
    assert got == want


def test_absolute_and_percent_deadband_against_the_last_recorded_value() -> None:
    rec = Recorder(TABLE, [RecordRule(signals=["f"], deadband=0.5),
                           RecordRule(signals=["g"], deadband_percent=10)],
                   spans=[None, None, None, 20.0])
    out = offer(rec, [0, 0, 0, 0], [10.0, 10.4, 10.49, 10.6], S)
    assert fvals(out) == [10.0, 10.6]  # 10.4 and 10.49 are within 0.5 of 10.0
    out = offer(rec, [3, 3, 3], [0.0, 1.9, 2.1], S)  # 10 % of the span 20 = 2
    assert fvals(out) == [0.0, 2.1]


def test_minimum_interval_keeps_the_latest_and_records_it_when_the_interval_ends() -> None:
    rec = Recorder(TABLE, [RecordRule(signals=["f"], min_interval_s=1.0)])
    assert fvals(offer(rec, [0], [1.0], S)) == [1.0]
    assert len(offer(rec, [0, 0, 0], [2.0, 3.0, 4.0], S + S // 2)) == 0  # held
    assert rec.next_due_ns() == 2 * S
    assert len(rec.tick(S + S // 2)) == 0
    out = rec.tick(2 * S)
    assert fvals(out) == [4.0]  # the last value before the quiet period is not lost
    # a held change that goes back to the recorded value is dropped
    offer(rec, [0, 0], [5.0, 4.0], 2 * S + 1)
    assert len(rec.tick(4 * S)) == 0


def test_maximum_interval_records_the_current_value_when_nothing_changes() -> None:
    rec = Recorder(TABLE, [RecordRule(signals=["f"], deadband=1.0, max_interval_s=10)])
    offer(rec, [0, 0], [1.0, 1.5], S)  # 1.5 is inside the deadband: current, not recorded
    assert len(rec.tick(5 * S)) == 0
    out = rec.tick(11 * S)
    assert fvals(out) == [1.5] and out.ts.tolist() == [11 * S]
    assert out.wts.tolist() == [S + 1]  # when the value was written
    assert len(rec.tick(12 * S)) == 0 and rec.next_due_ns() == 21 * S


def test_period_mode_samples_on_a_fixed_grid() -> None:
    rec = Recorder(TABLE, [RecordRule(signals=["i"], mode="period", period_s=2)])
    rec.seed(np.zeros(4, np.uint64), np.full(4, 2, np.uint8), np.zeros(4, np.int64), S)
    assert len(offer(rec, [1, 1], [3, 4], S)) == 0  # period signals ignore changes
    out = rec.tick(2 * S)
    assert out.sig.tolist() == [1] and out.value.tolist() == [4]
    assert len(rec.tick(3 * S)) == 0
    assert rec.tick(4 * S + 5).ts.tolist() == [4 * S]  # stamped on the grid


def test_off_and_unmatched_signals_are_not_recorded() -> None:
    rec = Recorder(TABLE, [RecordRule(signals=["f"]), RecordRule(signals=["i"], mode="off")])
    assert offer(rec, [0, 1, 2, 3], [1.0, 1, 1, 1.0], S).sig.tolist() == [0]


def test_snapshot_records_what_differs_from_the_last_recorded_value() -> None:
    rec = Recorder(TABLE, [])
    values = bits([1.0, 0.0, 0.0, 2.0])
    values[1] = 7
    q = np.full(4, 2, np.uint8)
    ts = np.arange(4, dtype=np.int64)
    assert len(rec.snapshot(values, q, ts, S)) == 4
    values2 = values.copy()
    values2[0] = bits([9.0])[0]
    out = rec.snapshot(values2, q, ts, 2 * S)
    assert out.sig.tolist() == [0]
    mask = np.array([False, True, True, True])
    values3 = values2.copy()
    values3[0] = bits([5.0])[0]
    values3[3] = bits([5.0])[0]
    assert rec.snapshot(values3, q, ts, 3 * S, only=mask).sig.tolist() == [3]
