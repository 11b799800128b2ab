"""The ISA-18.2 state machine: every transition of the table driven through the engine
with a fake clock, and Hypothesis over random condition / operator sequences checking
the invariants (an unacknowledged alarm is never lost, shelving always expires, ack
only from the allowed states, the state always agrees with its inputs)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest
from alarm_helpers import NS, T0, act, adef
from hypothesis import given, settings
from hypothesis import strategies as st

from petra.alarms import (
    ACKABLE,
    HIDDEN,
    LATCHING,
    TRANSITIONS,
    UNACKED,
    AlarmEngine,
    AlarmRecord,
    AlarmState,
    Trigger,
    next_state,
)
from petra.types import AccessRole

S = AlarmState
T = Trigger
ON = "x is true"  # a design suppression reason


def state(e: AlarmEngine, i: int) -> AlarmState:
    """Alarm ``i``'s state (a call, so the type checker does not carry an earlier
    assertion over the transitions in between)."""
    return e.records[i].state


def make(latch: bool = False) -> AlarmEngine:
    return AlarmEngine([adef("a", latch=latch)], shelve_max_s=3600.0)


# -- how to bring alarm "a" into each state (each step at T0 + k seconds)
def reach(e: AlarmEngine, state: AlarmState) -> None:
    t = T0
    steps: dict[AlarmState, list[Callable[[], object]]] = {
        S.NORMAL: [],
        S.UNACK: [lambda: e.set_condition(0, True, t)],
        S.ACKED: [lambda: e.set_condition(0, True, t), lambda: e.act(act("ack", "a"), t)],
        S.RTN_UNACK: [lambda: e.set_condition(0, True, t),
                      lambda: e.set_condition(0, False, t)],
        S.LATCHED: [lambda: e.set_condition(0, True, t), lambda: e.act(act("ack", "a"), t),
                    lambda: e.set_condition(0, False, t)],
        S.SHELVED: [lambda: e.act(act("shelve", "a", reason="r", duration_s=60), t)],
        S.SUPPRESSED: [lambda: e.set_suppression(0, ON, t),
                       lambda: e.set_condition(0, True, t)],
        S.OUT_OF_SERVICE: [lambda: e.act(act("remove", "a", reason="r"), t)],
    }
    for step in steps[state]:
        step()
    assert e.records[0].state is state
    e.drain()


# -- how to apply each trigger (the stimulus; the engine decides the transition)
def stimulus(e: AlarmEngine, trigger: Trigger, t: int) -> None:
    rec = e.records[0]
    if trigger is T.ACTIVATE:
        e.set_suppression(0, "", t)
        e.set_condition(0, True, t)
    elif trigger is T.CLEAR:
        e.set_condition(0, False, t)
    elif trigger is T.SUPPRESS:
        e.set_suppression(0, ON, t)
        e.set_condition(0, True, t)
    elif trigger is T.UNSUPPRESS:
        e.set_suppression(0, "", t)
    else:
        op = {T.ACK: "ack", T.RESET: "reset", T.SHELVE: "shelve", T.UNSHELVE: "unshelve",
              T.REMOVE: "remove", T.RETURN: "return"}[trigger]
        kw = {"reason": "r", "duration_s": 60.0} if op == "shelve" else (
            {"reason": "r"} if op == "remove" else {})
        res = e.act(act(op, "a", **kw), t)
        assert res.ok, (rec.state, trigger, res.error)


def _cases() -> list[tuple[AlarmState, Trigger, AlarmState, bool]]:
    # LATCHED exists for latching alarms only
    out = [(s, t, to, s is S.LATCHED) for (s, t), to in TRANSITIONS.items()]
    out += [(s, t, to, True) for (s, t), to in LATCHING.items()]
    return out


@pytest.mark.parametrize(("start", "trigger", "target", "latch"), _cases(),
                         ids=lambda v: v.value if hasattr(v, "value") else str(v))
def test_every_transition_of_the_table(start: AlarmState, trigger: Trigger,
                                       target: AlarmState, latch: bool) -> None:
    e = make(latch)
    reach(e, start)
    stimulus(e, trigger, T0 + 5 * NS)
    events, _ = e.drain()
    first = events[0]
    assert (first.from_state, first.trigger, first.to_state) == (
        start.value, trigger.value, target.value)
    assert first.time_ns == T0 + 5 * NS
    assert first.record is not None and first.record.state is target
    # each event is a transition of the table, and the record is its after-state
    for ev in events:
        assert next_state(S(ev.from_state), T(ev.trigger), latching=latch) is S(ev.to_state)


def test_pairs_outside_the_table_are_no_transitions() -> None:
    for s in AlarmState:
        for t in Trigger:
            if (s, t) not in TRANSITIONS:
                assert next_state(s, t) is None or (s, t) in LATCHING


def test_ack_is_defined_from_unack_and_rtn_unack_only() -> None:
    assert frozenset({S.UNACK, S.RTN_UNACK}) == ACKABLE
    e = make()
    res = e.act(act("ack", "a"), T0)
    assert not res.ok and "only unack and rtn_unack" in res.error
    assert e.drain()[0] == []


def test_process_alone_never_takes_an_unacknowledged_alarm_away() -> None:
    e = make()
    e.set_condition(0, True, T0)
    e.set_suppression(0, ON, T0)  # design suppression waits for the ack
    assert state(e, 0) is S.UNACK
    e.set_condition(0, False, T0 + NS)
    assert state(e, 0) is S.RTN_UNACK
    e.set_condition(0, True, T0 + 2 * NS)  # suppressed now: stays waiting for its ack
    assert state(e, 0) is S.RTN_UNACK
    e.act(act("ack", "a"), T0 + 3 * NS)  # acknowledged: now suppression applies
    assert state(e, 0) is S.SUPPRESSED
    assert e.records[0].suppressed_by == ON


def test_unshelve_re_evaluates_against_the_process() -> None:
    e = make()
    e.act(act("shelve", "a", reason="noisy", duration_s=60.0), T0)
    e.set_condition(0, True, T0 + NS)
    assert state(e, 0) is S.SHELVED  # evaluated, not annunciated
    assert e.records[0].cond is True
    e.drain()
    e.act(act("unshelve", "a"), T0 + 2 * NS)
    events, _ = e.drain()
    assert [(ev.from_state, ev.to_state) for ev in events] == [
        ("shelved", "normal"), ("normal", "unack")]
    assert events[0].user == "alice" and events[1].user == ""


def test_timed_shelve_expires_and_oneshot_ends_at_return_to_normal() -> None:
    e = AlarmEngine([adef("a"), adef("b")], shelve_max_s=100.0)
    e.set_condition(0, True, T0)
    e.act(act("shelve", "a", reason="r", duration_s=30.0), T0)
    e.act(act("shelve", "b", reason="r", oneshot=True), T0)
    e.tick(T0 + 29 * NS)
    assert state(e, 0) is S.SHELVED
    e.tick(T0 + 30 * NS)
    assert state(e, 0) is S.UNACK  # expired, re-evaluated: still active
    e.set_condition(1, True, T0 + 31 * NS)
    assert state(e, 1) is S.SHELVED
    e.set_condition(1, False, T0 + 32 * NS)
    assert state(e, 1) is S.NORMAL
    ev = [x for x in e.drain()[0] if x.alarm == "b" and x.trigger == "unshelve"]
    assert ev[0].reason.startswith("returned to normal")
    # a one-shot shelve is bounded by the maximum too
    e.act(act("shelve", "b", reason="r", oneshot=True), T0 + 40 * NS)
    assert e.records[1].shelved_until_ns == T0 + 140 * NS
    e.tick(T0 + 140 * NS)
    assert state(e, 1) is S.NORMAL


def test_shelving_longer_than_the_maximum_is_refused() -> None:
    e = AlarmEngine([adef("a", shelve_max_s=10.0)], shelve_max_s=100.0)
    res = e.act(act("shelve", "a", reason="r", duration_s=11.0), T0)
    assert not res.ok and "at most 10 s" in res.error


# ----------------------------------------------------------------------------- Hypothesis
OPS = st.one_of(
    st.tuples(st.just("cond"), st.booleans()),
    st.tuples(st.just("supp"), st.booleans()),
    st.tuples(st.just("time"), st.integers(1, 4000)),
    st.tuples(st.just("ack"), st.sampled_from(["a", "*"])),
    st.tuples(st.just("shelve"), st.one_of(st.floats(1, 5000), st.just(-1.0))),
    st.tuples(st.just("unshelve"), st.none()),
    st.tuples(st.just("remove"), st.none()),
    st.tuples(st.just("return"), st.none()),
    st.tuples(st.just("reset"), st.none()),
    st.tuples(st.just("viewer_ack"), st.none()),
)
OPERATOR_TAKES = {"ack", "shelve", "remove"}  # actions allowed to end "unacknowledged"
SHELVE_MAX = 3600.0


def settled(rec: AlarmRecord, supp: bool) -> bool:
    """The state agrees with its inputs (what _settle guarantees)."""
    s, c = rec.state, rec.cond
    return {
        S.NORMAL: not c,
        S.UNACK: c,
        S.ACKED: c and not supp,
        S.RTN_UNACK: not c or supp,
        S.LATCHED: not c or supp,
        S.SUPPRESSED: c and supp,
        S.SHELVED: True,
        S.OUT_OF_SERVICE: True,
    }[s]


def apply(e: AlarmEngine, op: str, arg: object, now: int, supp: bool) -> tuple[int, bool]:
    """One random step; returns the new time and design suppression."""
    if op == "cond":
        e.set_condition(0, bool(arg), now)
    elif op == "supp":
        supp = bool(arg)
        e.set_suppression(0, ON if supp else "", now)
    elif op == "time":
        now += int(arg) * NS  # type: ignore[call-overload]
        e.tick(now)
    elif op == "ack":
        e.act(act("ack", all=True) if arg == "*" else act("ack", "a"), now)
    elif op == "viewer_ack":
        res = e.act(act("ack", "a", role=AccessRole.VIEWER), now)
        assert not res.ok and "operator role" in res.error
    elif op == "shelve":
        dur = float(arg)  # type: ignore[arg-type]
        e.act(act("shelve", "a", reason="r", duration_s=None if dur < 0 else dur,
                  oneshot=dur < 0), now)
    else:
        e.act(act(op, "a", reason="r"), now)
    return now, supp


@settings(max_examples=300, deadline=None)
@given(latch=st.booleans(), ops=st.lists(OPS, max_size=60))
def test_invariants_over_random_sequences(latch: bool, ops: list[tuple[str, object]]) -> None:
    e = AlarmEngine([adef("a", latch=latch), adef("b")], shelve_max_s=SHELVE_MAX)
    now = T0
    supp = False
    history: list[AlarmRecord] = []
    for op, arg in ops:
        before = replace(e.records[0])
        now, supp = apply(e, op, arg, now, supp)
        rec = e.records[0]
        events, _ = e.drain()
        # every event is a table transition; acks only from the allowed states
        for ev in events:
            if ev.event != "transition":
                continue
            assert next_state(S(ev.from_state), T(ev.trigger), latching=latch is True
                              and ev.alarm == "a") is S(ev.to_state)
            if ev.trigger == "ack":
                assert S(ev.from_state) in ACKABLE
        # an unacknowledged alarm is never lost: only ack / shelve / remove end it
        if before.state in UNACKED and rec.state not in UNACKED:
            assert op in OPERATOR_TAKES, (op, before.state, rec.state)
        # shelving always expires, within the maximum
        if rec.state is S.SHELVED:
            assert 0 < rec.shelved_until_ns - now <= SHELVE_MAX * NS
        assert settled(rec, supp), (rec.state, rec.cond, supp)
        if rec.state not in HIDDEN and rec.cond and not supp:
            assert rec.state in (S.UNACK, S.ACKED)
        history.append(replace(rec))
        # the last event's record is the state (what a replay of the log rebuilds)
        if events and events[-1].alarm == "a" and events[-1].record is not None:
            assert events[-1].record == rec
    e.tick(now + int(SHELVE_MAX * NS) + 1)
    assert e.records[0].state is not S.SHELVED
