"""The alarm engine beyond the table: roles, action scopes, messages, first-out,
metrics and restore; and the checks of operator requests."""

from __future__ import annotations

from typing import Any

import pytest
from alarm_helpers import NS, T0, act, adef

from petra.alarms import (
    ActionError,
    AlarmEngine,
    AlarmMetrics,
    AlarmState,
    parse_action,
    render,
)
from petra.types import AccessRole

S = AlarmState


def state(e: AlarmEngine, i: int) -> AlarmState:
    """Alarm ``i``'s state (a call, so the type checker does not carry an earlier
    assertion over the transitions in between)."""
    return e.records[i].state


def test_roles_operator_acks_engineer_takes_out_of_service() -> None:
    e = AlarmEngine([adef("a")])
    e.set_condition(0, True, T0)
    viewer = e.act(act("ack", "a", role=AccessRole.VIEWER, user="v"), T0)
    assert not viewer.ok and "it needs the operator role" in viewer.error
    op_oos = e.act(act("remove", "a", role=AccessRole.OPERATOR, user="o", reason="r"), T0)
    assert not op_oos.ok and "engineer" in op_oos.error
    assert e.act(act("ack", "a", role=AccessRole.OPERATOR, user="o"), T0).ok
    assert e.act(act("remove", "a", role=AccessRole.ENGINEER, user="eng", reason="r"), T0).ok
    assert e.records[0].oos_by == "eng"
    assert e.act(act("return", "a", role=AccessRole.ADMIN, user="adm"), T0).ok
    events, _ = e.drain()
    users = [(ev.trigger, ev.user, ev.role) for ev in events if ev.user]
    assert users == [("ack", "o", "operator"), ("remove", "eng", "engineer"),
                     ("return", "adm", "admin")]


def test_ack_by_area_all_and_names() -> None:
    e = AlarmEngine([adef("a", area="north"), adef("b", area="north"),
                     adef("c", area="south"), adef("d", area="south")])
    for i in range(4):
        e.set_condition(i, True, T0)
    e.act(act("shelve", "d", reason="noisy", duration_s=60.0), T0)
    res = e.act(act("ack", area="north"), T0)
    assert res.ok and res.done == ("a", "b")
    res = e.act(act("ack", all=True), T0)
    assert res.done == ("c",)  # the shelved one is not visible, hence not acknowledged
    assert state(e, 3) is S.SHELVED
    res = e.act(act("ack", "a", "c"), T0)
    assert res.ok and res.done == () and set(res.skipped or {}) == {"a", "c"}
    res = e.act(act("ack", "a", "nope", "nope2"), T0)
    assert not res.ok and res.error == "unknown alarm 'nope' (and 1 more)"


def test_expired_request_and_comment() -> None:
    e = AlarmEngine([adef("a")])
    e.set_condition(0, True, T0)
    res = e.act(act("ack", "a", expires_ns=T0 - 1), T0)
    assert not res.ok and "expired" in res.error
    assert state(e, 0) is S.UNACK
    e.drain()
    assert e.act(act("comment", "a", text="checked on site"), T0).ok
    (ev,), _ = e.drain()
    assert ev.event == "comment" and ev.reason == "checked on site" and ev.user == "alice"


def test_messages_fill_value_unit_and_limit() -> None:
    e = AlarmEngine([adef("a", limit=80.0, message="Level {value:.1f} {unit} > {limit:g}"),
                     adef("b", description="Tank 1"),
                     adef("c", type="discrete", signal="s", state=True),
                     adef("d", type="stale", signal="s", timeout_s=5.0,
                          message="{value:.1f}s {name}")],
                    units={"a": "%", "b": "m"})
    e.set_condition(0, True, T0, 93.25)
    e.set_condition(1, True, T0, 12.0)
    e.set_condition(2, True, T0, 1.0)
    e.set_condition(3, True, T0, None)  # no value: the spec does not fit, text instead
    assert e.records[0].message == "Level 93.2 % > 80"
    assert e.records[1].message == "Tank 1: x high: 12 m (limit 10 m)"
    assert e.records[2].message == "s is True"
    assert e.records[3].message == "?s d"
    assert render("{value:%} {x!r}", {"value": "n/a", "x": "q"}) == "n/a 'q'"


def test_first_out_of_a_group() -> None:
    e = AlarmEngine([adef("a", group="g"), adef("b", group="g"), adef("c")])
    e.set_condition(1, True, T0)
    e.set_condition(0, True, T0 + NS)
    e.set_condition(2, True, T0 + NS)
    assert [r.first_out for r in e.records] == [False, True, False]
    e.act(act("ack", all=True), T0 + 2 * NS)
    for i in range(3):
        e.set_condition(i, False, T0 + 3 * NS)
    e.set_condition(0, True, T0 + 4 * NS)
    assert e.records[0].first_out and e.records[0].occurrence == 2


def test_metrics_flood_chattering_standing_and_mtta() -> None:
    m = AlarmMetrics(chatter_count=3, chatter_window_s=60.0, flood_per_10min=2)
    e = AlarmEngine([adef("a"), adef("b")], metrics=m)
    t = T0
    for _ in range(3):  # a raised three times within a minute: chattering
        e.set_condition(0, True, t)
        e.set_condition(0, False, t + NS)
        e.act(act("ack", "a"), t + 11 * NS)
        t += 20 * NS
    assert m.chattering() == ["a"]
    assert m.per_10min(t) == 3 and m.flood(t)
    assert m.mtta_s() == pytest.approx(11.0)
    e.set_condition(1, True, t)
    e.act(act("ack", "b"), t + NS)
    counts = e.counts(t + 25 * 3600 * NS, standing_after_s=24 * 3600)
    assert counts == {"active": 1, "unacked": 0, "hidden": 0, "standing": 1}
    m.expire(t + 11 * 60 * NS)
    assert m.chattering() == [] and m.per_10min(t + 11 * 60 * NS) == 0
    back = AlarmMetrics(chatter_count=3, chatter_window_s=60.0)
    back.load(m.to_json())
    assert back.raised_24h() == m.raised_24h() and back.mtta_s() == m.mtta_s()
    assert back.bad_actors() == [("a", 3), ("b", 1)]


def test_restore_takes_records_by_name() -> None:
    e = AlarmEngine([adef("a"), adef("b")])
    e.set_condition(0, True, T0)
    e.act(act("shelve", "b", reason="r", duration_s=10.0), T0)
    saved = {"a": e.records[0].to_json(), "b": e.records[1].to_json(), "gone": {}}
    f = AlarmEngine([adef("b"), adef("a"), adef("new")])
    assert f.restore(saved) == 2
    assert state(f, 1) is S.UNACK and f.records[1].occurrence == 1
    assert state(f, 0) is S.SHELVED
    f.tick(T0 + 10 * NS)  # the restored shelve still expires
    assert state(f, 0) is S.NORMAL
    assert state(f, 2) is S.NORMAL


# ----------------------------------------------------------------------------- requests
GOOD: dict[str, Any] = {"op": "ack", "alarms": ["a"], "user": "alice", "role": "operator"}


@pytest.mark.parametrize(("change", "error"), [
    ({"op": "explode"}, "unknown op"),
    ({"op": 3}, "op must be"),
    ({"user": ""}, "user is required"),
    ({"user": "x" * 200}, "longer than"),
    ({"role": "root"}, "unknown role"),
    ({"alarms": [1]}, "list of alarm names"),
    ({"all": True}, "exactly one of"),
    ({"all": "yes"}, "all must be"),
    ({"op": "shelve"}, "needs a reason"),
    ({"op": "shelve", "reason": "r"}, "needs duration_s"),
    ({"op": "shelve", "reason": "r", "duration_s": -1}, "duration_s must be"),
    ({"op": "shelve", "reason": "r", "duration_s": float("nan")}, "duration_s must be"),
    ({"op": "unshelve", "duration_s": 5}, "apply to shelve only"),
    ({"op": "remove"}, "needs a reason"),
    ({"op": "comment", "alarms": ["a", "b"], "text": "t"}, "exactly one alarm"),
    ({"op": "comment"}, "needs text"),
    ({"op": "unshelve", "alarms": [], "area": "x"}, "takes alarms by name"),
    ({"reason": "a\x00b"}, "control characters"),
    ({"expires_ns": "soon"}, "expires_ns"),
])
def test_bad_requests_are_refused_with_a_reason(change: dict[str, Any], error: str) -> None:
    with pytest.raises(ActionError, match=error):
        parse_action({**GOOD, **change})


def test_a_good_request_and_aliases() -> None:
    a = parse_action({**GOOD, "id": "r1", "via": "api", "source": "10.0.0.7"})
    assert (a.op, a.user, a.role, a.alarms, a.request) == (
        "ack", "alice", AccessRole.OPERATOR, ("a",), "r1")
    b = parse_action({**GOOD, "op": "oos", "reason": "maintenance", "alarms": "a"})
    assert b.op == "remove" and b.alarms == ("a",)
