"""MQTT commands: set or get signals through a command topic, with a reply.

Request (JSON, on the command topic)::

    {"op": "set", "signal": "pump.speed_sp", "value": 42.5, "id": "c-17",
     "reply_to": "client7/replies"}
    {"op": "get", "signal": "tank.level", "id": "c-18"}
    {"op": "get_all", "id": "c-19"}

Reply (JSON, on ``reply_to`` if given, else the configured reply topic)::

    {"id": "c-17", "ok": true, "signal": "pump.speed_sp", "value": 42.5,
     "quality": "GOOD"}
    {"id": "c-20", "ok": false, "error": "signal 'tank.level' is not writable"}

Authorisation: a set is accepted only for a signal declared ``writable: true`` in the
plant (its directory flag); user-level permissions come with the security work. Every
refusal is counted and logged with the reason (never with the value of a secret).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from petra.errors import SignalError
from petra.shm import Segment
from petra.types import coerce_value

MAX_REQUEST_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Reply:
    topic: str
    payload: bytes
    ok: bool
    reason: str = ""


def _json_value(v: object) -> object:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def handle_command(  # noqa: PLR0911 - one early reply per refusal reason
        seg: Segment, payload: bytes, default_reply_topic: str) -> Reply:
    """Run one command against the segment and build the reply."""
    req_id: object = None
    reply_to = default_reply_topic

    def fail(reason: str) -> Reply:
        body = {"id": req_id, "ok": False, "error": reason}
        return Reply(reply_to, json.dumps(body).encode(), False, reason)

    if len(payload) > MAX_REQUEST_BYTES:
        return fail(f"request larger than {MAX_REQUEST_BYTES} bytes")
    try:
        req = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return fail("request is not valid JSON")
    if not isinstance(req, dict):
        return fail("request must be a JSON object")
    req_id = req.get("id")
    if isinstance(req.get("reply_to"), str) and req["reply_to"] and not any(
            c in req["reply_to"] for c in "+#"):
        reply_to = req["reply_to"]
    op = req.get("op")
    if op == "get_all":
        signals: dict[str, Any] = {}
        for info in seg.signals:
            s = seg.read_index(info.index)
            signals[info.name] = {"value": _json_value(s.value), "quality": s.quality.name}
        body = {"id": req_id, "ok": True, "signals": signals}
        return Reply(reply_to, json.dumps(body).encode(), True)
    if op not in ("get", "set"):
        return fail(f"unknown op {op!r}; expected set, get or get_all")
    name = req.get("signal")
    if not isinstance(name, str) or name not in seg:
        return fail(f"no signal named {name!r}")
    info = seg.info_of(name)
    if op == "set":
        if not info.writable:
            return fail(f"signal {name!r} is not writable")
        if "value" not in req:
            return fail("set needs a value")
        try:
            value = coerce_value(info.type, req["value"], name=name)
            seg.write(name, value)
        except SignalError as exc:
            return fail(str(exc))
    s = seg.read(name)
    body = {"id": req_id, "ok": True, "signal": name, "value": _json_value(s.value),
            "quality": s.quality.name}
    return Reply(reply_to, json.dumps(body).encode(), True)
