"""Fuzz the MQTT command handler (``handle_command``) on a real segment.

Properties for any request bytes: it returns a reply and never raises; the reply is
strict JSON (no NaN or Infinity literals) whose ``ok`` matches; the reply topic is the
configured one or lies under the reply prefix; a refusal writes nothing; a set writes
only a writable signal, and only a value its signal allows; a refusal quotes at most a
few dozen characters of the request; ``get_all`` answers only where it is allowed.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fuzz_support import (
    FUZZ,
    JSON_DOC,
    NAMES,
    assert_sane,
    command_corpus,
    mutated,
    segment_fixture,
    snapshot,
)
from hypothesis import event, given
from hypothesis import strategies as st

from petra.config._drivers import topic_within
from petra.security import AuditLog
from petra.shm import Segment
from petra.sinks._mqtt_commands import CommandPolicy, Reply, handle_command
from petra.types import AccessRole


def _command(seg: Segment, payload: bytes, policy: CommandPolicy | str) -> Reply:
    """``handle_command`` from a sender with the operator role (the '*' role of the
    plain command topic); its audit records go to a throwaway log."""
    if isinstance(policy, str):
        policy = CommandPolicy(policy)
    return handle_command(seg, payload, replace(policy, roles={"*": AccessRole.OPERATOR}),
                          audit=_CMD_AUDIT)


_CMD_AUDIT = AuditLog(Path(tempfile.mkdtemp(prefix="petra-cmd-audit-")) / "audit.log",
                      fsync=False)


fseg = segment_fixture()
SEEDS = command_corpus()
POLICIES = [CommandPolicy("cmd/reply"), CommandPolicy("cmd/reply", "cmd/reply", True),
            CommandPolicy("cmd/reply", "clients")]
NUMBERS = st.one_of(st.floats(), st.integers(-(10**45), 10**45), st.booleans())
REQUEST = st.fixed_dictionaries(
    {"op": st.one_of(st.sampled_from(["set", "get", "get_all"]), JSON_DOC)},
    optional={"signal": st.one_of(st.sampled_from(NAMES), JSON_DOC),
              "value": st.one_of(NUMBERS, JSON_DOC),
              "id": st.one_of(st.text(max_size=140), st.integers(-(10**45), 10**45), JSON_DOC),
              "reply_to": st.one_of(st.sampled_from(["cmd/reply/x", "cmd/reply", "clients/7",
                                                     "cmd/replyx", "plant/in", "cmd/reply/#"]),
                                    st.text(max_size=40), JSON_DOC)})
# well-formed sets near the limits, so that accepted writes are common too
SETS = st.fixed_dictionaries({
    "op": st.just("set"), "signal": st.sampled_from(["sp", "free", "count", "flag", "pv"]),
    "value": st.one_of(NUMBERS, st.floats(-1, 6), st.integers(-120, 120))})
REQUESTS = st.one_of(REQUEST.map(lambda r: json.dumps(r).encode()),
                     SETS.map(lambda r: json.dumps(r).encode()), st.binary(max_size=300),
                     mutated(SEEDS), st.sampled_from(SEEDS))


def _strict(text: bytes) -> Any:
    def refuse(token: str) -> None:
        raise AssertionError(f"reply holds {token}, which JSON does not have")
    return json.loads(text, parse_constant=refuse)


def _check(seg: Segment, payload: bytes, policy: CommandPolicy) -> str:
    """Run one request, check every property, say what kind of answer it got."""
    before = snapshot(seg, NAMES)
    reply = _command(seg, payload, policy)
    after = snapshot(seg, NAMES)
    body = _strict(reply.payload)
    assert body["ok"] is reply.ok
    assert reply.topic == policy.reply_topic or topic_within(reply.topic,
                                                             policy.replies_under)
    changed = {n for n in NAMES if after[n] != before[n]}
    if not reply.ok:
        assert not changed, "a refusal wrote something"
        assert len(reply.payload) < 600
        return "refused"
    assert changed <= {body.get("signal")}, changed
    for name in changed:
        assert seg.info_of(name).writable
    if "signals" in body:
        assert policy.allow_get_all
    else:
        assert len(reply.payload) < 600
    assert_sane(seg)
    return "wrote" if changed else "answered"


@FUZZ
@given(payload=REQUESTS, policy=st.sampled_from(POLICIES))
def test_any_request_gets_a_safe_reply(fseg: Segment, payload: bytes,
                                       policy: CommandPolicy) -> None:
    event(_check(fseg, payload, policy))


@pytest.mark.parametrize("payload", SEEDS, ids=lambda p: repr(p[:30]))
def test_corpus_requests(fseg: Segment, payload: bytes) -> None:
    for policy in POLICIES:
        _check(fseg, payload, policy)
