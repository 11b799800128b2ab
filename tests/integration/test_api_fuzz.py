"""Hostile input at the API's boundary: bodies, query strings and WebSocket messages.

Hypothesis (bounded: tens of examples per test, fixed seed) sends what a broken or
malicious client might: bytes that are not JSON, JSON of every shape, unknown fields,
huge numbers, deep nesting, strings where numbers belong, random query parameters.
Each must get a 4xx with a JSON error body, the connection must keep working, and
nothing may change: the segment's values, the users file.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from api_peers import LiveApi, alarms_extra
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                      st.text(max_size=30))
json_any = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    tmp = tmp_path_factory.mktemp("fuzz")
    live = LiveApi(tmp, extra=alarms_extra(tmp, wait_s=0.05),
                   lockout="{user_failures: 1000, address_failures: 100000, lockout_s: 1}")
    live.start()
    yield live
    live.close()


def _state(api: LiveApi) -> tuple[Any, ...]:
    return (tuple(api.seg.read(s.name)[:2] for s in api.seg.signals),
            api.users_file.read_bytes())


def _is_valid_write(body: bytes) -> bool:
    """A body that is a legitimate write of tank.level_sp (it may change state)."""
    try:
        data = json.loads(body)
    except ValueError:
        return False
    return (isinstance(data, dict) and set(data) == {"value"}
            and isinstance(data["value"], int | float) and not isinstance(data["value"], bool)
            and 0 <= data["value"] <= 5)


bodies = st.one_of(st.binary(max_size=200),
                   json_any.map(lambda v: json.dumps(v).encode()),
                   st.dictionaries(st.sampled_from(["value", "Value", "quality", "x", ""]),
                                   json_any, max_size=3).map(lambda d: json.dumps(d).encode()),
                   st.sampled_from([b'{"value": 1e999}', b'{"value": NaN}',
                                    b'{"value": Infinity}', b'{"value": "1"}',
                                    b'{"value": ' + b"9" * 5000 + b"}",
                                    b"[" * 5000 + b"]" * 5000, b'{"value": true}',
                                    b'{"value": 1, "value": "x"}', b"\xff\xfe{}"]))


@SETTINGS
@given(body=bodies, target=st.sampled_from(["tank.level_sp", "tank.level", "plant.count",
                                            "nope"]))
def test_write_bodies(api: LiveApi, body: bytes, target: str) -> None:
    if target == "tank.level_sp" and _is_valid_write(body):
        return
    if target == "plant.count":
        try:
            v = json.loads(body)
            if isinstance(v, dict) and set(v) == {"value"} and type(v["value"]) is int \
                    and 0 <= v["value"] <= 1000:
                return
        except ValueError:
            pass
    before = _state(api)
    status, reply, _ = api.request("PUT", f"/api/v1/signals/{target}", raw=body,
                                   token=api.token("admin"))
    assert 400 <= status < 500, (status, reply)
    assert isinstance(reply, dict) and reply["status"] == status and reply["error"]
    assert _state(api) == before


@SETTINGS
@given(body=bodies, path=st.sampled_from(["/api/v1/auth/login", "/api/v1/auth/refresh",
                                          "/api/v1/users", "/api/v1/users/viewer",
                                          "/api/v1/me/password"]))
def test_other_bodies(api: LiveApi, body: bytes, path: str) -> None:
    method = {"/api/v1/users/viewer": "PATCH", "/api/v1/me/password": "PUT"}.get(path, "POST")
    before = _state(api)
    status, reply, _ = api.request(method, path, raw=body, token=api.token("admin"))
    assert 400 <= status < 500, (status, reply, body)
    assert isinstance(reply, dict) and reply["status"] == status
    assert _state(api) == before


ALARM_ACTIONS = ["ack", "reset", "shelve", "unshelve", "comment", "out-of-service",
                 "return-to-service"]
alarm_bodies = st.one_of(
    bodies,
    st.dictionaries(st.sampled_from(["alarms", "area", "all", "reason", "duration_s",
                                     "oneshot", "text", "comment", "x"]),
                    st.one_of(json_any, st.just(["lvl.high"]), st.just("tanks"),
                              st.sampled_from([1e308, 3600, 3601, -1, 0, True])),
                    max_size=4).map(lambda d: json.dumps(d).encode()),
    st.sampled_from([b'{"alarms": ["lvl.high"], "reason": "r", "duration_s": 1e999}',
                     b'{"alarms": ["lvl.high"], "reason": "r", "duration_s": NaN}',
                     b'{"alarms": ["lvl.high"], "reason": "\\u0000", "oneshot": true}',
                     b'{"alarms": ["lvl.high"] ' + b" " * 70000 + b"}"]))


def _queued(api: LiveApi) -> int:
    incoming = api.tmp / "alarms" / "actions" / "incoming"
    return len(list(incoming.iterdir())) if incoming.exists() else 0


@SETTINGS
@given(body=alarm_bodies, action=st.sampled_from(ALARM_ACTIONS))
def test_alarm_action_bodies(api: LiveApi, body: bytes, action: str) -> None:
    """Anything but a well-formed action on a configured alarm is a 4xx and is not
    queued; a well-formed one is queued and, with no alarm manager running, answered
    503 with its request id."""
    queued = _queued(api)
    status, reply, _ = api.request("POST", f"/api/v1/alarms/{action}", raw=body,
                                   token=api.token("admin"))
    assert isinstance(reply, dict) and reply["status"] == status, (status, reply)
    if status == 503:
        assert reply["id"] and _queued(api) == queued + 1
    else:
        assert 400 <= status < 500 and reply["error"], (status, reply, body)
        assert _queued(api) == queued


query_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)


@SETTINGS
@given(params=st.lists(st.tuples(st.sampled_from(["match", "limit", "offset", "writable",
                                                  "type", "after", "x", ""]) | query_text,
                                 query_text), max_size=4),
       path=st.sampled_from(["/api/v1/signals", "/api/v1/audit", "/api/v1/signals/tank.level",
                             "/api/v1/status", "/api/v1/alarms", "/api/v1/alarms/events"]))
def test_query_strings(api: LiveApi, params: list[tuple[str, str]], path: str) -> None:
    before = _state(api)
    qs = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params)
    status, reply, _ = api.request("GET", f"{path}?{qs}" if qs else path,
                                   token=api.token("admin"))
    # 503: this plant's alarm manager never ran, so it has published no list
    assert status in (200, 503) or 400 <= status < 500, (status, reply)
    if status != 200:
        assert reply["status"] == status and reply["error"]
    assert _state(api) == before


ws_messages = st.one_of(
    st.text(max_size=100),
    json_any.map(json.dumps),
    st.fixed_dictionaries({"op": st.sampled_from(["subscribe", "unsubscribe", "auth", "ping",
                                                  "write", "", "subscribe_alarms",
                                                  "unsubscribe_alarms"])},
                          optional={"id": json_any, "signals": json_any, "token": json_any,
                                    "value": json_any}).map(json.dumps))


async def _ws_fuzz(api: LiveApi, messages: list[str]) -> list[dict[str, Any]]:
    replies: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{api.base}/api/v1/ws",
                                   headers={"Authorization": f"Bearer {api.token('viewer')}"})
        assert (await ws.receive_json(timeout=10))["type"] == "hello"
        for text in messages:
            await ws.send_str(text)
        await ws.send_str('{"op": "ping", "id": "end"}')
        while True:
            msg = await ws.receive_json(timeout=10)
            replies.append(msg)
            if msg == {"type": "pong", "id": "end"}:
                break
        await ws.close()
    return replies


@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(messages=st.lists(ws_messages, min_size=1, max_size=8))
def test_websocket_messages(api: LiveApi, messages: list[str]) -> None:
    before = _state(api)
    replies = asyncio.run(_ws_fuzz(api, messages))
    assert replies[-1] == {"type": "pong", "id": "end"}  # still answering
    for r in replies:
        assert r["type"] in ("error", "pong", "subscribed", "snapshot", "changes", "hello",
                             "resync", "subscribed_alarms", "alarms")
        if r["type"] == "error":
            assert 400 <= r["status"] < 500 and r["error"]
    assert _state(api) == before
