"""Alarm conditions with numpy: each kind, deadbands, delays on the monotonic clock,
spikes between passes from the journal, stale values, bad quality and device grouping."""

from __future__ import annotations

import math

import numpy as np
import pytest
from alarm_helpers import NS, T0, adef
from hypothesis import given, settings
from hypothesis import strategies as st

from petra.alarms import Conditions
from petra.config._alarms import AlarmDef
from petra.types import Quality

G, U, B = int(Quality.GOOD), int(Quality.UNCERTAIN), int(Quality.BAD)
SLOTS = {"x": 0, "y": 1, "sp": 2, "stop": 3, "d1": 4, "d2": 5}
OWNERS = {4: "driver:plc1", 5: "driver:plc1"}


def build(*defs: AlarmDef, period: float = 0.1) -> Conditions:
    return Conditions(list(defs), SLOTS.__getitem__, lambda s: OWNERS.get(s, "scan"),
                      period_s=period)


class Feed:
    """Values by signal name -> the arrays a pass takes (by watched position)."""

    def __init__(self, c: Conditions) -> None:
        self.c = c
        self.values = {n: 0.0 for n in SLOTS}
        self.quality = {n: G for n in SLOTS}
        self.mono = 100.0
        self.wall = T0

    def run(self, dt: float = 0.1, drivers: dict[str, bool] | None = None) -> list[int]:
        self.mono += dt
        self.wall += int(dt * NS)
        names = {v: k for k, v in SLOTS.items()}
        slots = self.c.slots.tolist()
        v = np.array([self.values[names[s]] for s in slots], np.float64)
        q = np.array([self.quality[names[s]] for s in slots], np.uint8)
        return self.c.evaluate(v, q, self.mono, self.wall, drivers or {}).cond


def test_high_with_deadband() -> None:
    c = build(adef("h", limit=10.0, deadband=1.0))
    f = Feed(c)
    f.values["x"] = 10.0
    assert f.run() == [] and not c.cond[0]  # at the limit is not above it
    f.values["x"] = 10.5
    assert f.run() == [0] and c.cond[0]
    assert c.value[0] == 10.5
    f.values["x"] = 9.5  # inside the deadband: stays
    assert f.run() == [] and c.cond[0]
    f.values["x"] = 9.0
    assert f.run() == [0] and not c.cond[0]


def test_low_high_high_low_low_and_deviation() -> None:
    c = build(adef("l", type="low", limit=2.0, deadband=0.5),
              adef("ll", type="low_low", limit=1.0),
              adef("hh", type="high_high", limit=20.0),
              adef("dev", type="deviation", setpoint="sp", limit=3.0, deadband=1.0))
    f = Feed(c)
    f.values.update(x=1.5, sp=5.0)
    assert f.run() == [0, 3]  # low; and |1.5 - 5| > 3
    f.values.update(x=2.2, sp=2.0)
    assert f.run() == [3]  # low stays inside its deadband (2.2 < 2.5); dev clears (0.2)
    f.values["x"] = 0.5
    assert f.run() == [1]
    f.values["x"] = 25.0
    assert sorted(f.run()) == [0, 1, 2, 3]


def test_value_conditions_hold_while_the_input_is_not_good() -> None:
    c = build(adef("h", limit=10.0))
    f = Feed(c)
    f.values["x"] = 11.0
    assert f.run() == [0]
    f.values["x"] = 0.0
    f.quality["x"] = B
    assert f.run() == [] and c.cond[0]  # a bad value neither clears nor raises
    f.quality["x"] = U
    assert f.run() == [] and c.cond[0]
    f.quality["x"] = G
    assert f.run() == [0]


def test_on_and_off_delay_on_the_monotonic_clock() -> None:
    c = build(adef("h", limit=10.0, on_delay_s=1.0, off_delay_s=0.5))
    f = Feed(c)
    step = 0.25  # exact in binary: the test is about the rule, not rounding
    f.values["x"] = 11.0
    for _ in range(4):
        assert f.run(step) == []
    f.values["x"] = 0.0  # a dip restarts the on-delay
    assert f.run(step) == []
    f.values["x"] = 11.0
    for _ in range(4):
        assert f.run(step) == []
    assert f.run(step) == [0]  # held for 1.0 s
    f.values["x"] = 0.0
    assert f.run(step) == []
    assert f.run(step) == []
    assert f.run(step) == [0] and not c.cond[0]


def test_a_spike_between_passes_raises_a_high_alarm() -> None:
    c = build(adef("h", limit=10.0), adef("l", type="low", limit=-5.0, signal="x"))
    f = Feed(c)
    c.take_journal(np.array([0, 0, 9], np.uint32), np.array([50.0, 1.0, 99.0]),
                   np.array([G, G, G], np.uint8), np.array([T0, T0, T0], np.int64))
    assert f.run() == [0]  # the slot now reads 0.0, but 50.0 was written in between
    assert c.value[0] == 50.0
    assert f.run() == [0]  # the peak is gone: clears on the current value
    c.take_journal(np.array([0], np.uint32), np.array([-9.0]), np.array([B], np.uint8),
                   np.array([T0], np.int64))
    assert f.run() == []  # a BAD write is not a measurement


def test_rate_of_change_over_its_window() -> None:
    c = build(adef("r", type="rate", limit=2.0, rate_window_s=0.5),
              adef("up", type="rate", limit=2.0, direction="rising"))
    f = Feed(c)
    for _ in range(6):
        assert f.run() == []
    for k in range(5):  # +0.1 per 0.1 s = 1/s: below the limit
        f.values["x"] = 0.1 * (k + 1)
        assert f.run() == []
    changed: list[int] = []
    for k in range(6):  # -0.5 per 0.1 s = -5/s: |rate| above, falling
        f.values["x"] = 0.5 - 0.5 * (k + 1)
        changed += f.run()
    assert changed == [0]
    assert c.value[0] == pytest.approx(-5.0)
    assert not c.cond[1]


def test_discrete_bad_quality_and_stale() -> None:
    c = build(adef("d", type="discrete", signal="y", state=3),
              adef("q", type="bad_quality", signal="y"),
              adef("qu", type="bad_quality", signal="y", uncertain=True),
              adef("s", type="stale", signal="x", timeout_s=2.0))
    f = Feed(c)
    c.seed_writes({0: f.wall})
    f.values["y"] = 3.0
    assert f.run() == [0]
    f.quality["y"] = U
    assert f.run() == [2]
    f.quality["y"] = B
    assert f.run() == [1]
    changed = []
    for _ in range(25):
        changed += f.run()
    assert changed == [3]
    assert c.value[3] > 2.0
    c.take_journal(np.array([0], np.uint32), np.array([1.0]), np.array([G], np.uint8),
                   np.array([f.wall], np.int64))
    assert f.run() == [3] and not c.cond[3]


def test_device_alarm_groups_the_signals_of_its_driver() -> None:
    c = build(adef("device.plc1", type="device", driver="plc1", signal=None, limit=None),
              adef("q1", type="bad_quality", signal="d1"),
              adef("s2", type="stale", signal="d2", timeout_s=1.0),
              adef("other", type="bad_quality", signal="y"))
    f = Feed(c)
    c.seed_writes({5: f.wall + NS})
    up = {"plc1": True}
    assert f.run(drivers=up) == []
    assert c.member_of.tolist() == [-1, 0, 0, -1]
    f.quality.update(d1=B, y=B)
    assert f.run(drivers=up) == [3]  # BAD already, the driver's heartbeat lags a moment
    ch = f.run(drivers={"plc1": False})
    assert ch == [0]  # the device; its member waits 1.5 passes, and is grouped by then
    assert c.supp.tolist() == [0, 2, 2, 0]  # the driver's signals are grouped under it
    assert f.run(drivers={"plc1": False}) == [1]  # now it counts: the engine suppresses it
    assert c.suppression_reason(1, [None] * 4) == "device plc1 is down"
    f.run(drivers=up)
    # back, but d1 not written since the outage began: still grouped (the heartbeat
    # says UP a moment before the first poll writes)
    assert c.supp.tolist() == [0, 2, 0, 0]
    f.quality["d1"] = G
    c.take_journal(np.array([4], np.uint32), np.array([0.0]), np.array([G], np.uint8),
                   np.array([f.wall], np.int64))
    f.run(drivers=up)
    assert c.supp.tolist() == [0, 0, 0, 0] and not c.cond[1]


def test_a_member_still_bad_after_its_device_returned_is_raised_after_the_grace() -> None:
    c = Conditions([adef("device.plc1", type="device", driver="plc1", signal=None,
                         limit=None), adef("q1", type="bad_quality", signal="d1")],
                   SLOTS.__getitem__, lambda s: OWNERS.get(s, "scan"), period_s=0.1,
                   device_grace_s=1.0)
    f = Feed(c)
    f.run(drivers={"plc1": True})
    f.quality["d1"] = B
    for _ in range(3):  # members wait 1.5 passes
        f.run(drivers={"plc1": False})
    assert c.cond.tolist() == [True, True] and c.supp.tolist() == [0, 2]
    changed = []
    for _ in range(9):  # back, the point stays BAD (no GOOD write): grouped for 1 s
        changed += f.run(drivers={"plc1": True})
        assert c.supp.tolist() == [0, 2]
    assert changed == [0]
    out = c.evaluate(np.array([0.0]), np.array([B], np.uint8), f.mono + 0.3, f.wall, {
        "plc1": True})
    assert out.suppression == [1] and c.supp.tolist() == [0, 0]  # now it is its own


def test_suppress_when_signal() -> None:
    c = build(adef("h", limit=10.0, suppress_when="stop"))
    f = Feed(c)
    f.values["stop"] = 1.0
    out = c.evaluate(np.array([0.0, 1.0]), np.array([G, G], np.uint8), 1.0, T0, {})
    assert out.suppression == [0]
    assert c.suppression_reason(0, ["stop"]) == "stop is true"
    assert f.run() == [] and c.supp[0] == 1


def test_seed_keeps_a_held_condition_across_a_restart() -> None:
    c = build(adef("h", limit=10.0, on_delay_s=5.0))
    c.seed([True])
    f = Feed(c)
    f.values["x"] = 11.0
    assert f.run() == []  # no clear, no re-raise after its on-delay
    assert c.cond[0] and not math.isnan(c.value[0])


# ----------------------------------------------------------------------------- selective
# A pass evaluates only the alarms whose inputs moved, the timed kinds and those with a
# delay running (see the module doc). The oracle: the same definitions evaluated in full
# every pass (``selective=False``) must give the same conditions, values, suppression
# and changes over any sequence of values, qualities, journal peaks, driver states and
# time steps.

ORACLE_DEFS = [
    adef("h", limit=10.0, deadband=2.0),
    adef("hd", limit=10.0, on_delay_s=0.25, off_delay_s=0.15, signal="y"),
    adef("l", type="low", limit=-5.0, deadband=1.0, signal="x"),
    adef("ld", type="low", limit=0.0, off_delay_s=0.2, signal="d1"),
    adef("dv", type="deviation", setpoint="sp", limit=3.0, deadband=0.5, signal="y"),
    adef("r", type="rate", limit=20.0, rate_window_s=0.3, signal="x"),
    adef("rr", type="rate", limit=20.0, direction="rising", signal="d2"),
    adef("ds", type="discrete", signal="y", state=4),
    adef("bq", type="bad_quality", signal="x"),
    adef("bu", type="bad_quality", signal="d1", uncertain=True),
    adef("st", type="stale", signal="d2", timeout_s=0.35),
    adef("dev", type="device", driver="plc1", signal=None, limit=None),
    adef("hs", limit=5.0, signal="sp", suppress_when="stop"),
    adef("m1", limit=1.0, signal="d1"),
]
NAMES = list(SLOTS)
STEP = st.tuples(
    st.lists(st.tuples(st.sampled_from(NAMES),
                       st.sampled_from([-20.0, -6.0, -4.5, 0.0, 1.5, 4.0, 9.0, 11.0, 13.0,
                                        50.0, math.nan]),
                       st.sampled_from([G, G, G, U, B])), max_size=4),
    st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from([-30.0, 12.0, 99.0]),
                       st.sampled_from([G, G, B])), max_size=2),
    st.booleans(),
    st.sampled_from([0.05, 0.1, 0.1, 0.1, 0.3]))


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(STEP, min_size=1, max_size=40), seed_cond=st.booleans())
def test_selective_evaluation_matches_evaluating_everything(
        steps: list[tuple[list[tuple[str, float, int]], list[tuple[str, float, int]], bool,
                          float]], seed_cond: bool) -> None:
    fast = build(*ORACLE_DEFS)
    full = Conditions(ORACLE_DEFS, SLOTS.__getitem__, lambda s: OWNERS.get(s, "scan"),
                      period_s=0.1, selective=False)
    if seed_cond:
        held = [k % 3 == 0 for k in range(len(ORACLE_DEFS))]
        fast.seed(held)
        full.seed(held)
    feeds = (Feed(fast), Feed(full))
    for c, f in zip((fast, full), feeds, strict=True):
        c.seed_writes({SLOTS["d2"]: f.wall})
    for writes, journal, up, dt in steps:
        outs = []
        for c, f in zip((fast, full), feeds, strict=True):
            for name, value, q in writes:
                f.values[name], f.quality[name] = value, q
                c.take_journal(np.array([SLOTS[name]], np.uint32), np.array([value]),
                               np.array([q], np.uint8), np.array([f.wall], np.int64))
            for name, value, q in journal:  # written and gone again before the pass
                c.take_journal(np.array([SLOTS[name]], np.uint32), np.array([value]),
                               np.array([q], np.uint8), np.array([f.wall], np.int64))
            f.mono += dt
            f.wall += int(dt * NS)
            slots = c.slots.tolist()
            by_slot = {v: k for k, v in SLOTS.items()}
            vals = np.array([f.values[by_slot[s]] for s in slots], np.float64)
            qual = np.array([f.quality[by_slot[s]] for s in slots], np.uint8)
            outs.append(c.evaluate(vals, qual, f.mono, f.wall, {"plc1": up}))
        assert outs[0] == outs[1]
        assert fast.cond.tolist() == full.cond.tolist()
        assert fast.raw.tolist() == full.raw.tolist()
        assert fast.supp.tolist() == full.supp.tolist()
        np.testing.assert_array_equal(fast.value, full.value)
    assert fast.evaluated_last <= full.evaluated_last == len(ORACLE_DEFS)


def test_a_quiet_pass_evaluates_only_the_timed_alarms() -> None:
    c = build(*ORACLE_DEFS)
    f = Feed(c)
    f.run(drivers={"plc1": True})
    assert c.evaluated_last == len(ORACLE_DEFS)  # the first pass: everything
    f.run(drivers={"plc1": True})
    f.run(drivers={"plc1": True})
    timed = {"r", "rr", "st", "dev"}
    assert c.evaluated_last == len(timed)
    f.values["y"] = 4.0  # hd, dv and ds read y
    f.run(drivers={"plc1": True})
    assert c.evaluated_last == len(timed) + 3


def test_rate_with_one_window_for_all_matches_mixed_windows() -> None:
    same = build(adef("r", type="rate", limit=2.0, rate_window_s=0.5),
                 adef("f", type="rate", limit=2.0, rate_window_s=0.5, direction="falling"))
    mixed = build(adef("r", type="rate", limit=2.0, rate_window_s=0.5),
                  adef("f", type="rate", limit=2.0, rate_window_s=0.5, direction="falling"),
                  adef("slow", type="rate", limit=2.0, rate_window_s=1.0))
    assert same.rate_window == 5 and mixed.rate_window == 0
    feeds = Feed(same), Feed(mixed)
    for k, x in enumerate([0, 0, 1, 3, 6, 6, 2, -4, -4, -4, -4, -4, 0, math.nan, 5]):
        for f in feeds:
            f.values["x"] = float(x)
            f.quality["x"] = B if k == 9 else G
            f.run()
        assert same.cond.tolist() == mixed.cond[:2].tolist()
        np.testing.assert_array_equal(same.value, mixed.value[:2])
    assert same.passes == 15
