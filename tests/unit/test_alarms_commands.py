"""MQTT alarm commands, the pure part: who sent a command, where the answer goes, what
reaches the spool, and that nothing in a message makes ``prepare`` raise."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from petra.alarms._commands import (
    MAX_CORRELATION_BYTES,
    CommandPolicy,
    Prepared,
    Refused,
    ReplyTo,
    prepare,
)
from petra.alarms._model import parse_action
from petra.types import AccessRole

CMD = "petra/p1/alarms/cmd"
POLICY = CommandPolicy(CMD, f"{CMD}/reply", {"alice": AccessRole.OPERATOR,
                                             "bob": AccessRole.VIEWER})


def test_the_sender_is_the_last_topic_level_and_replies_are_not_commands() -> None:
    assert POLICY.sender(CMD) == (True, None)
    assert POLICY.sender(f"{CMD}/alice") == (True, "alice")
    assert POLICY.sender(f"{CMD}/reply") == (False, None)  # our own answers
    assert POLICY.sender(f"{CMD}/reply/alice") == (False, None)
    assert POLICY.sender(f"{CMD}/alice/x") == (False, None)
    assert POLICY.sender("petra/p1/cmd/alice") == (False, None)


def test_an_operator_request_goes_to_the_spool_as_that_broker_user() -> None:
    got = prepare(json.dumps({"op": "ack", "alarms": ["a"], "id": "c-1", "user": "admin",
                              "role": "admin", "via": "api", "source": "x",
                              "mqtt_reply": {"topic": "elsewhere"}}).encode(),
                  "alice", POLICY)
    assert isinstance(got, Prepared)
    # who acts comes from the topic and the config, never from the body
    assert got.body["user"] == "mqtt:alice" and got.body["role"] == "operator"
    assert got.body["via"] == "mqtt" and got.body["source"] == "broker"
    assert got.body["mqtt_reply"] == {"topic": f"{CMD}/reply", "id": "c-1",
                                      "correlation": None}
    action = parse_action({**got.body, "id": "r"})
    assert action.op == "ack" and action.alarms == ("a",)
    assert action.role is AccessRole.OPERATOR


def test_reply_topics_stay_below_the_reply_topic() -> None:
    ok = prepare(b'{"op": "ack", "all": true}', "alice", POLICY,
                 response_topic=f"{CMD}/reply/alice/7", correlation=b"\x01\x02")
    assert isinstance(ok, Prepared)
    assert ok.reply == ReplyTo(f"{CMD}/reply/alice/7", b"\x01\x02", None)
    assert ReplyTo.from_json(ok.body["mqtt_reply"]) == ok.reply
    for bad in ("petra/p1/other", f"{CMD}/reply/+", f"{CMD}/replyx", "", 7):
        got = prepare(b'{"op": "ack", "all": true}', "alice", POLICY, response_topic=bad)
        assert isinstance(got, Refused) and got.reply.topic == f"{CMD}/reply", bad
    got = prepare(json.dumps({"op": "ack", "all": True, "reply_to": "x/#"}).encode(),
                  "alice", POLICY)
    assert isinstance(got, Refused) and "wildcards" in got.error
    got = prepare(b'{"op": "ack", "all": true}', "alice", POLICY,
                  response_topic=f"{CMD}/reply", correlation=b"x" * (MAX_CORRELATION_BYTES + 1))
    assert isinstance(got, Refused) and "correlation" in got.error


def test_senders_without_a_role_are_refused_with_who_they_are() -> None:
    for sender in ("mallory", None):
        got = prepare(b'{"op": "ack", "all": true, "id": 5}', sender, POLICY)
        assert isinstance(got, Refused) and "no role" in got.error
        assert got.reply.client_id == 5
        assert got.info["user"] == f"mqtt:{sender or '*'}" and "role" not in got.info
        assert got.info["op"] == "ack" and got.fields == {"op": "ack", "all": True}


def test_malformed_payloads_are_refused() -> None:
    cases = {b"": "JSON", b"nope": "JSON", b"[1]": "object", b"\xff": "JSON",
             b"[" * 70_000: "JSON", b'{"a": ' * 40 + b"1" + b"}" * 40: "JSON",
             b'{"id": ' + b"1" * 50 + b"}": "JSON", b'{"id": [1]}': "id",
             b'{"id": true}': "id", json.dumps({"id": "x" * 200}).encode(): "id"}
    for payload, word in cases.items():
        got = prepare(payload, "alice", POLICY)
        assert isinstance(got, Refused) and word in got.error, (payload[:20], got)
        assert len(got.error) < 400


@settings(max_examples=300, deadline=None)
@given(payload=st.one_of(st.binary(max_size=300),
                         st.recursive(st.none() | st.booleans() | st.floats() | st.integers()
                                      | st.text(max_size=20),
                                      lambda c: st.lists(c, max_size=4)
                                      | st.dictionaries(st.sampled_from(
                                          ["op", "alarms", "id", "area", "all", "reason",
                                           "duration_s", "reply_to", "x"]), c, max_size=5),
                                      max_leaves=20).map(lambda v: json.dumps(v).encode())),
       sender=st.sampled_from(["alice", "bob", "mallory", None]),
       response=st.one_of(st.none(), st.text(max_size=30)),
       corr=st.one_of(st.none(), st.binary(max_size=300)))
def test_prepare_never_raises_and_always_has_an_answer(
        payload: bytes, sender: str | None, response: str | None, corr: bytes | None) -> None:
    got = prepare(payload, sender, POLICY, response_topic=response, correlation=corr)
    body = json.loads(got.reply.payload({"ok": False, "error": "x"}, "rid"))
    assert body["ok"] is False and body["request"] == "rid"
    if isinstance(got, Prepared):
        assert got.body["user"] == f"mqtt:{sender}" and sender in ("alice", "bob")
        json.dumps(got.body, allow_nan=True)


def test_non_finite_numbers_are_refused_before_the_spool() -> None:
    for text in (b'{"op": "shelve", "alarms": ["a"], "reason": "r", "duration_s": NaN}',
                 b'{"op": "shelve", "alarms": ["a"], "reason": "r", "duration_s": 1e999}'):
        got = prepare(text, "alice", POLICY)
        assert isinstance(got, Refused) and "finite" in got.error
