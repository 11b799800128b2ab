"""Fuzz the API's alarm boundary: action bodies, SMS-reply texts, the event-log reader.

Properties for any input:

- ``_check`` (the API's check of an action body) either refuses with a 4xx
  :class:`ApiError` or returns a request that the alarm process's own parser
  (``petra.alarms._model.parse_action``) accepts, naming only configured alarms and
  areas, with a finite duration within the alarm's maximum: the API never queues what
  the alarm process would reject as malformed, and never lets through a shelving longer
  than the alarm allows;
- ``AlarmFeed.poll`` over any bytes appended to ``events.jsonl`` (torn lines, garbage,
  wrong types, rotation) never raises and hands out only objects with increasing
  integer ``seq`` and no ``put``.

The live server gets the same bodies in ``tests/integration/test_api_fuzz.py``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from fuzz_support import FUZZ, JSON_DOC
from hypothesis import given
from hypothesis import strategies as st

from petra.alarms._model import ActionError, parse_action
from petra.api._alarms import AlarmFeed, AlarmsLink, _check
from petra.api._http import ApiError

LINK = AlarmsLink(dir=Path("/nonexistent"),
                  shelve_max_s={"lvl.high": 3600.0, "temp.high": 28800.0, "a": 1.0},
                  areas=frozenset({"tanks"}))
OPS = ("ack", "reset", "shelve", "unshelve", "comment", "remove", "return")
NAMES = st.sampled_from(["lvl.high", "temp.high", "a", "nope", "", "x" * 300])
TEXT = st.one_of(st.text(max_size=20), st.sampled_from(["", " ", "\t", "\x00", "ok\n",
                                                        "x" * 600, "\u3000", "\x7f"]))
NUMBER = st.one_of(st.floats(), st.integers(-(10**30), 10**30), st.booleans(),
                   st.sampled_from([0, 1, 3600, 3600.0000001, 28800, 1e308, -0.0]))
BODY = st.fixed_dictionaries({}, optional={
    "alarms": st.one_of(st.lists(NAMES, max_size=4), JSON_DOC, NAMES),
    "area": st.one_of(st.sampled_from(["tanks", "nope", ""]), JSON_DOC),
    "all": st.one_of(st.booleans(), JSON_DOC),
    "comment": st.one_of(TEXT, JSON_DOC),
    "reason": st.one_of(TEXT, JSON_DOC),
    "text": st.one_of(TEXT, JSON_DOC),
    "duration_s": st.one_of(NUMBER, JSON_DOC),
    "oneshot": st.one_of(st.booleans(), JSON_DOC),
})


@FUZZ
@given(op=st.sampled_from(OPS), body=BODY)
def test_checked_actions_are_what_the_alarm_process_accepts(op: str, body: dict[str, Any]
                                                           ) -> None:
    try:
        out = _check(LINK, op, body)
    except ApiError as exc:
        assert 400 <= exc.status < 500 and exc.message
        return
    assert out["op"] == op
    action = parse_action({**out, "user": "fuzz", "role": "engineer", "via": "api"})
    assert all(a in LINK.shelve_max_s for a in action.alarms)
    assert action.area is None or action.area in LINK.areas
    if action.duration_s is not None:
        assert math.isfinite(action.duration_s) and action.duration_s > 0
        assert all(action.duration_s <= LINK.shelve_max_s[a] for a in action.alarms)
    json.dumps(out, allow_nan=False)  # what goes into the spool is strict JSON


def test_a_refused_body_is_an_action_error_there_too() -> None:
    """The converse on hand-picked cases: what the alarm process refuses, the API
    refuses first (so no malformed request ever reaches the spool)."""
    cases: list[tuple[str, dict[str, Any]]] = [
                     ("shelve", {"alarms": ["a"], "reason": "r"}),
                     ("ack", {}), ("comment", {"alarms": ["a", "lvl.high"], "text": "t"}),
                     ("remove", {"alarms": ["a"], "reason": " "}),
                     ("shelve", {"alarms": ["a"], "reason": "r", "duration_s": math.inf})]
    for op, body in cases:
        try:
            parse_action({"op": op, **body, "user": "u", "role": "engineer"})
            refused_there = False
        except ActionError:
            refused_there = True
        try:
            _check(LINK, op, body)
            refused_here = False
        except ApiError:
            refused_here = True
        assert refused_there and refused_here, (op, body, refused_there, refused_here)


LINE = st.one_of(
    st.builds(lambda s, a: json.dumps({"seq": s, "alarm": a, "put": {"x": 1}}) + "\n",
              st.integers(-5, 50), st.text(max_size=5)),
    st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
    st.sampled_from(["\n", "{}\n", "[]\n", '{"seq": "1"}\n', '{"seq": 1.5}\n',
                     '{"seq": true}\n', '{"seq": 3', "null\n",
                     '{"seq": 99999999999999999999}\n']))


@FUZZ
@given(chunks=st.lists(st.tuples(st.lists(LINE, max_size=6), st.booleans()), max_size=6))
def test_the_event_feed_survives_any_log(tmp_path_factory: Any,
                                         chunks: list[tuple[list[str], bool]]) -> None:
    d = tmp_path_factory.mktemp("feed")
    feed = AlarmFeed(d, keep=50)
    path = d / "events.jsonl"
    last = 0
    for lines, rotate in chunks:
        if rotate and path.exists():
            path.rename(d / "events.jsonl.1")
        with open(path, "a", encoding="latin-1", errors="replace") as fh:
            fh.write("".join(lines))
        for ev in feed.poll():
            assert isinstance(ev, dict) and "put" not in ev
            assert isinstance(ev["seq"], int) and not isinstance(ev["seq"], bool)
            assert ev["seq"] > last
            last = ev["seq"]
    events, nxt = feed.after(0, 1000, None)
    assert nxt >= 0 and [e["seq"] for e in events] == sorted({e["seq"] for e in events})
