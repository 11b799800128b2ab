"""MQTT commands: set or get signals through a command topic, with a reply.

Request (JSON, on the command topic)::

    {"op": "set", "signal": "pump.speed_sp", "value": 42.5, "id": "c-17",
     "reply_to": "petra/site1/cmd/reply/client7"}
    {"op": "get", "signal": "tank.level", "id": "c-18"}
    {"op": "get_all", "id": "c-19"}

Reply (JSON, on ``reply_to`` if given and allowed, else the configured reply topic)::

    {"id": "c-17", "ok": true, "signal": "pump.speed_sp", "value": 42.5,
     "quality": "GOOD"}
    {"id": "c-20", "ok": false, "error": "signal 'tank.level' is not writable"}

Authorisation:

- who sent a command is the broker user in the topic: ``<topic>/<user>`` (the broker's
  ACL lets each user publish only there, e.g. Mosquitto's ``pattern write
  petra/+/cmd/%u``); ``mqtt.commands.roles`` maps that user to a role, and ``'*'``
  gives a role to the plain ``<topic>``. A sender without a role is refused; a get
  needs viewer, a set operator (``docs/security.md``);
- a set goes through :func:`petra.security.authorised_write`, the one authorised
  write path: the role, then :meth:`petra.shm.Segment.write_checked` (the signal must
  be declared ``writable``, the value of its type, finite unless the signal allows
  otherwise, inside its min/max; otherwise nothing is written), then one audit record
  naming ``mqtt:<user>`` with the value before and after;
- ``reply_to`` must be the reply topic or lie below the configured reply prefix (no
  wildcards), so a client cannot make Petra publish elsewhere with its credentials;
- ``get_all`` discloses every signal and is refused unless the configuration allows it.

Hostile input: the request is at most :data:`MAX_REQUEST_BYTES`, parsed by the bounded
JSON parser (numbers of at most 40 characters, 32 levels deep); ``id`` is echoed only
when it is a short string or an integer; reasons quote at most a few dozen characters
of what was sent. :func:`handle_command` returns a reply for every input, however
malformed, and never raises for anything the request holds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from petra.config._drivers import topic_within
from petra.errors import PetraError
from petra.io import InputError, parse_json
from petra.io._input import show
from petra.security import AuditLog, Permission, Principal, authorised_write
from petra.shm import Segment
from petra.types import AccessRole

MAX_REQUEST_BYTES = 64 * 1024
MAX_ID_CHARS = 128
MAX_TOPIC_BYTES = 1024
MAX_REASON_CHARS = 300


@dataclass(frozen=True, slots=True)
class Reply:
    topic: str
    payload: bytes
    ok: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class CommandPolicy:
    """What the command handler lets clients do (from ``mqtt.commands``)."""

    reply_topic: str
    reply_prefix: str = ""  # reply_to must be here or below; "" = the reply topic
    allow_get_all: bool = False
    roles: Mapping[str, AccessRole] = field(default_factory=dict)  # broker user -> role

    @property
    def replies_under(self) -> str:
        return self.reply_prefix or self.reply_topic

    def principal(self, sender: str | None) -> Principal | None:
        """Who a command from ``sender`` (the broker user of its topic, None for the
        plain command topic) acts as, or None when that sender has no role."""
        key = "*" if sender is None else sender
        role = self.roles.get(key)
        if role is None:
            return None
        return Principal(f"mqtt:{key}", role, "mqtt", "broker")


def _json_value(v: object) -> object:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _reply_topic(req: dict[str, Any], policy: CommandPolicy) -> tuple[str, str]:
    """The topic to answer on, and why a requested ``reply_to`` was not honoured."""
    want = req.get("reply_to")
    if want is None:
        return policy.reply_topic, ""
    if (not isinstance(want, str) or not want or len(want.encode("utf-8", "replace"))
            > MAX_TOPIC_BYTES or any(c in want for c in "+#\0")):
        return policy.reply_topic, "reply_to must be a topic name without wildcards"
    if not topic_within(want, policy.replies_under):
        return policy.reply_topic, (f"reply_to {show(want)} lies outside "
                                    f"{policy.replies_under!r}")
    return want, ""


def handle_command(  # noqa: PLR0911 - one early refusal per reason
        seg: Segment, payload: bytes, policy: CommandPolicy | str, *,
        audit: AuditLog, sender: str | None = None) -> Reply:
    """Run one command from ``sender`` against the segment and build the reply (never
    raises for anything in ``payload``). ``policy`` may be just the reply topic (then
    nobody has a role and every command is refused)."""
    if isinstance(policy, str):
        policy = CommandPolicy(policy)
    req_id: object = None
    reply_to = policy.reply_topic

    def fail(reason: str) -> Reply:
        reason = reason if len(reason) <= MAX_REASON_CHARS else (
            reason[:MAX_REASON_CHARS] + "...")
        body = {"id": req_id, "ok": False, "error": reason}
        return Reply(reply_to, json.dumps(body).encode(), False, reason)

    try:
        req = parse_json(payload, max_bytes=MAX_REQUEST_BYTES)
    except InputError as exc:
        return fail(f"request is not valid JSON: {exc}")
    if not isinstance(req, dict):
        return fail("request must be a JSON object")
    rid = req.get("id")
    if rid is None or (isinstance(rid, str) and len(rid) <= MAX_ID_CHARS) or (
            isinstance(rid, int) and not isinstance(rid, bool)):
        req_id = rid
    else:
        return fail(f"id must be a string of at most {MAX_ID_CHARS} characters or an "
                    "integer")
    reply_to, refused = _reply_topic(req, policy)
    if refused:
        return fail(refused)
    who = policy.principal(sender)
    if who is None:
        return fail(f"the sender {show(sender or '*')} has no role for commands "
                    "(mqtt.commands.roles)")
    result = _execute(seg, req, policy, who, audit)
    if isinstance(result, str):
        return fail(result)
    body = {"id": req_id, "ok": True, **result}
    return Reply(reply_to, json.dumps(body).encode(), True)


def _execute(  # noqa: PLR0911 - one early refusal per reason
        seg: Segment, req: dict[str, Any], policy: CommandPolicy, who: Principal,
        audit: AuditLog) -> dict[str, Any] | str:
    """The reply's fields for a request, or the reason it is refused."""
    op = req.get("op")
    if not who.may(Permission.SIGNAL_READ):
        return f"{who.name} ({who.role.label}) may not read signals"
    if op == "get_all":
        if not policy.allow_get_all:
            return "get_all is not allowed (mqtt.commands.allow_get_all)"
        signals: dict[str, Any] = {}
        for info in seg.signals:
            s = seg.read_index(info.index)
            signals[info.name] = {"value": _json_value(s.value), "quality": s.quality.name}
        return {"signals": signals}
    if op not in ("get", "set"):
        return f"unknown op {_shown(op)}; expected set, get or get_all"
    name = req.get("signal")
    if not isinstance(name, str) or name not in seg:
        return f"no signal named {_shown(name)}"
    if op == "set":
        if "value" not in req:
            return "set needs a value"
        value = req["value"]
        if not isinstance(value, bool | int | float):
            return f"signal {name!r}: {_shown(value)} is not a value"
        try:
            authorised_write(seg, who, name, value, audit, extra={"command_id": req.get("id")})
        except (PetraError, OverflowError) as exc:
            return str(exc)
    s = seg.read(name)
    return {"signal": name, "value": _json_value(s.value), "quality": s.quality.name}


def _shown(x: object) -> str:
    """A short, safe rendering of a request field for a reason."""
    if isinstance(x, str):
        return show(x)
    if x is None or isinstance(x, bool | int | float):
        return repr(x)
    return type(x).__name__
