"""Fuzz the MQTT-in payload path: the bounded number and JSON parsers, ``parse_payload``
for every signal type and format, and a whole driver's message handler on a segment.

Properties: only the documented refusal escapes (InputError / PayloadError), never
another exception; a parse that succeeds gives a value of the signal type's kind; a
handled message either writes GOOD or is counted exactly once; no slot ever holds a
GOOD value its signal does not allow; a signal outside a subscription's allow-list is
never touched.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from typing import Any

import pytest
from fuzz_support import (
    FUZZ,
    JSON_DOC,
    NUMBER_TEXT,
    assert_sane,
    json_within_limits,
    mutated,
    payload_corpus,
    same,
    segment_fixture,
    snapshot,
)
from hypothesis import given
from hypothesis import strategies as st

from petra.config._drivers import MqttInConfig, MqttSubscription
from petra.drivers.mqtt_in import MqttInDriver, PayloadError, parse_payload
from petra.io import InputError, parse_json, parse_number
from petra.io._input import MAX_NUMBER_CHARS, json_depth_exceeds
from petra.shm import Segment, SignalType
from petra.types import DriverCounter

fseg = segment_fixture()
SEEDS = payload_corpus()
PAYLOADS = st.one_of(st.binary(max_size=300), mutated(SEEDS), st.sampled_from(SEEDS),
                     NUMBER_TEXT.map(lambda t: t.encode("utf-8", "surrogatepass")),
                     JSON_DOC.map(lambda d: json.dumps(d).encode()))
SUBS = [MqttSubscription(topic="t", signal="s"),
        MqttSubscription(topic="t", signal="s", format="json"),
        MqttSubscription(topic="t", signal="s", format="json", json_path="value"),
        MqttSubscription(topic="t", signal="s", format="json", json_path="a.0.b")]


def _kind_ok(value: object, typ: SignalType) -> bool:
    if typ is SignalType.BOOL:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if typ is SignalType.INT:
        return isinstance(value, int) or (isinstance(value, float) and not math.isfinite(value))
    return isinstance(value, int | float)


# ----------------------------------------------------------------------------- parsers
@FUZZ
@given(text=NUMBER_TEXT)
def test_parse_number_refuses_or_returns_a_bounded_number(text: str) -> None:
    try:
        v = parse_number(text)
    except InputError as exc:
        assert len(str(exc)) < 200
        return
    assert isinstance(v, int | float) and not isinstance(v, bool)
    assert len(text.strip()) <= MAX_NUMBER_CHARS
    if isinstance(v, int):
        assert abs(v) < 10**MAX_NUMBER_CHARS


@FUZZ
@given(x=st.one_of(st.floats(), st.integers(-(10**39) + 1, 10**39 - 1)))  # <= 40 chars
def test_parse_number_round_trips_what_python_writes(x: float) -> None:
    v = parse_number(repr(x))
    assert same(v, x) or (isinstance(x, float) and math.isnan(x) and math.isnan(v))


@FUZZ
@given(doc=JSON_DOC)
def test_parse_json_accepts_exactly_what_fits_the_limits(doc: Any) -> None:
    text = json.dumps(doc)
    if json_within_limits(doc) and len(text) <= 64 * 1024:
        assert same(parse_json(text), doc)
    else:
        with pytest.raises(InputError):
            parse_json(text)


@FUZZ
@given(data=PAYLOADS)
def test_parse_json_only_refuses(data: bytes) -> None:
    try:
        parse_json(data)
    except InputError as exc:
        assert len(str(exc)) < 200


@FUZZ
@given(depth=st.integers(1, 200), opener=st.sampled_from(["[", '{"a":']))
def test_depth_limit_is_exact(depth: int, opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    text = opener * depth + "1" + closer * depth
    if depth <= 32:
        doc = parse_json(text)
        for _ in range(depth):
            doc = doc[0] if isinstance(doc, list) else doc["a"]
        assert doc == 1
    else:
        with pytest.raises(InputError, match="deeper"):
            parse_json(text)


TRICKY_TEXT = st.text(alphabet='[]{}"\\ab', max_size=8)
TRICKY_DOC = st.recursive(st.one_of(st.integers(0, 9), TRICKY_TEXT), lambda kids: st.one_of(
    st.lists(kids, max_size=3), st.dictionaries(TRICKY_TEXT, kids, max_size=3)),
    max_leaves=25)


def _depth(doc: Any) -> int:
    if isinstance(doc, list):
        return 1 + max((_depth(x) for x in doc), default=0)
    if isinstance(doc, dict):
        return 1 + max((_depth(x) for x in doc.values()), default=0)
    return 0


@FUZZ
@given(doc=TRICKY_DOC, limit=st.integers(0, 8), indent=st.sampled_from([None, 1]))
def test_depth_check_ignores_brackets_inside_strings(doc: Any, limit: int,
                                                     indent: int | None) -> None:
    """Strings full of brackets, quotes and backslashes do not fool the depth scan."""
    assert json_depth_exceeds(json.dumps(doc, indent=indent), limit) == (_depth(doc) > limit)


@FUZZ
@given(payload=PAYLOADS, sub=st.sampled_from(SUBS), typ=st.sampled_from(list(SignalType)))
def test_parse_payload_gives_the_signal_kind_or_a_refusal(
        payload: bytes, sub: MqttSubscription, typ: SignalType) -> None:
    try:
        v = parse_payload(payload, sub, typ)
    except PayloadError as exc:
        assert len(str(exc)) < 300
        return
    assert _kind_ok(v, typ), (payload[:40], typ, v)


@pytest.mark.parametrize("payload", SEEDS, ids=lambda p: repr(p[:24]))
def test_corpus_through_every_payload_form(payload: bytes) -> None:
    for sub in SUBS:
        for typ in SignalType:
            try:
                v = parse_payload(payload, sub, typ)
            except PayloadError:
                continue
            assert _kind_ok(v, typ)
        with contextlib.suppress(InputError):
            parse_json(payload)
    with contextlib.suppress(InputError):
        parse_number(payload.decode("utf-8", "replace"))


# ----------------------------------------------------------------------------- the handler
SUBSCRIPTIONS: list[dict[str, object]] = [
    {"topic": "p/f", "signal": "f"}, {"topic": "p/n", "signal": "n"},
    {"topic": "p/b", "signal": "b", "format": "json"},
    {"topic": "p/lim", "signal": "lim", "format": "json", "json_path": "v"},
    {"topic": "sec/+", "signal": "{1}", "signals": ["sec.a", "sec.b"]},
    {"topic": "deep/#", "signal": "sec.{1}", "signals": ["sec.a"]}]
TOPIC = st.one_of(
    st.sampled_from(["p/f", "p/n", "p/b", "p/lim", "sec/sec.a", "sec/sec.b", "sec/scan.out",
                     "sec/pv", "sec/sp", "deep/a", "deep/a/b", "deep/../sp", "sec/"]),
    st.builds(lambda a, b: f"{a}/{b}", st.sampled_from(["sec", "deep"]), st.text(max_size=30)))
OUTSIDE = ["sp", "free", "count", "flag", "pv", "scan.out"]


@pytest.fixture(scope="module")
def driver(fseg: Segment) -> Iterator[MqttInDriver]:
    cfg = MqttInConfig.model_validate({"kind": "mqtt", "name": "fz", "broker": {"port": 1},
                                       "subscriptions": SUBSCRIPTIONS})
    yield MqttInDriver(cfg, fseg)


@FUZZ
@given(i=st.integers(0, len(SUBSCRIPTIONS) - 1), topic=TOPIC, payload=PAYLOADS)
def test_a_message_is_written_good_or_counted_once(
        driver: MqttInDriver, fseg: Segment, i: int, topic: str, payload: bytes) -> None:
    outside = snapshot(fseg, OUTSIDE)
    before = driver.tm[DriverCounter.REJECTED]
    ok = driver.on_payload(i, topic, payload)
    assert driver.tm[DriverCounter.REJECTED] == before + (0 if ok else 1)
    assert snapshot(fseg, OUTSIDE) == outside, "only allow-listed signals written"
    assert_sane(fseg)
