"""MQTT alarm commands: operators act on alarms through a command topic.

Request (JSON, on ``alarms.mqtt.command_topic``, ``{prefix}/alarms/cmd`` by default)::

    {"op": "ack", "alarms": ["tank1.level_high"], "id": "c-17"}
    {"op": "ack", "area": "tank_farm"}          {"op": "ack", "all": true}
    {"op": "shelve", "alarms": ["flow.low"], "reason": "sensor swap", "duration_s": 3600}
    {"op": "unshelve" | "reset" | "comment" | "remove" | "return", ...}

The fields are those of the action spool (``docs/alarms.md``); ``id`` is the client's
own and is echoed. Reply (JSON)::

    {"id": "c-17", "ok": true, "done": ["tank1.level_high"], "request": "<spool id>"}
    {"id": "c-18", "ok": false, "error": "mqtt:bob (viewer) may not alarm.ack; ..."}

Where the reply goes: the MQTT 5 *response topic* of the request when it has one
(then the request's *correlation data* comes back as the reply's), else ``reply_to``
in the JSON, else ``alarms.mqtt.reply_topic``. A requested topic must be the reply
topic or lie below it (no wildcards), so a client cannot make Petra publish elsewhere
with its broker credentials; otherwise the request is refused on the reply topic.

Who acts: the same rule as signal commands (``petra.sinks`` and ``docs/security.md``).
The broker user is the last topic level, ``<command_topic>/<user>``, which the broker's
ACL lets only that user publish to (Mosquitto: ``pattern write petra/+/alarms/cmd/%u``);
``mqtt.commands.roles`` maps it to a role, and ``'*'`` gives a role to the plain
``<command_topic>``. The alarm process records ``mqtt:<user>`` with that role and checks
the op's permission itself, as for every front end.

Every request that parses goes through the action spool (``petra.io.RequestSpool``)
with ``via: "mqtt"``: nothing is lost while the process restarts, and a request acted
on before a crash is answered from the log, never twice. A request that cannot go there
(not JSON, too large or deep, not an object, a sender without a role, a forbidden reply
topic, too many waiting) is refused at once; it is still logged and audited.

Hostile input: at most :data:`MAX_REQUEST_BYTES`, parsed by the bounded JSON parser
(numbers of at most 40 characters, 32 levels), only the known fields are passed on,
correlation data of at most :data:`MAX_CORRELATION_BYTES`; :func:`prepare` never raises
for anything in the message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from petra.config._drivers import topic_within
from petra.io import InputError, parse_json
from petra.io._input import show
from petra.types import AccessRole

MAX_REQUEST_BYTES = 60 * 1024  # below the spool's 64 KiB, with room for who and where
MAX_ID_CHARS = 128
MAX_TOPIC_BYTES = 1024
MAX_CORRELATION_BYTES = 256
MAX_REASON_CHARS = 300
FIELDS = ("op", "alarms", "area", "all", "reason", "duration_s", "oneshot", "text",
          "expires_ns")
VIA = "mqtt"
SOURCE = "broker"


@dataclass(frozen=True, slots=True)
class ReplyTo:
    """Where and how to answer one request."""

    topic: str
    correlation: bytes | None = None
    client_id: str | int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"topic": self.topic, "id": self.client_id,
                "correlation": None if self.correlation is None else self.correlation.hex()}

    @staticmethod
    def from_json(doc: object) -> ReplyTo | None:
        """The reply target stored in a spool request (None when absent or bad: the
        request file may have been touched by hand)."""
        if not isinstance(doc, dict) or not isinstance(doc.get("topic"), str):
            return None
        cid = doc.get("id")
        if not (cid is None or isinstance(cid, str | int)) or isinstance(cid, bool):
            cid = None
        corr = doc.get("correlation")
        try:
            data = bytes.fromhex(corr) if isinstance(corr, str) else None
        except ValueError:
            data = None
        return ReplyTo(doc["topic"], data, cid)

    def payload(self, result: Mapping[str, Any], request_id: str | None = None) -> bytes:
        """The reply body for ``result`` (the spool's answer or a refusal)."""
        body: dict[str, Any] = {"id": self.client_id, "ok": bool(result.get("ok"))}
        for key in ("done", "skipped", "error"):
            if result.get(key) is not None:
                body[key] = result[key]
        if request_id is not None:
            body["request"] = request_id
        return json.dumps(body, separators=(",", ":"), default=str).encode()


@dataclass(frozen=True, slots=True)
class CommandPolicy:
    """The alarm command topics and who may use them (from ``alarms.mqtt`` and
    ``mqtt.commands.roles``)."""

    topic: str
    reply_topic: str
    roles: Mapping[str, AccessRole] = field(default_factory=dict)

    def sender(self, topic: str) -> tuple[bool, str | None]:
        """Whether ``topic`` is one of ours and, if so, its broker user (None for the
        plain command topic). Our own replies (the reply topic may lie below the command
        topic) and deeper levels are not ours."""
        if topic == self.topic:
            return True, None
        if not topic.startswith(self.topic + "/") or topic_within(topic, self.reply_topic):
            return False, None
        user = topic[len(self.topic) + 1:]
        if not user or "/" in user:
            return False, None
        return True, user

    def role_of(self, sender: str | None) -> AccessRole | None:
        return self.roles.get("*" if sender is None else sender)


@dataclass(frozen=True, slots=True)
class Prepared:
    """A request ready for the spool, and where its answer goes."""

    body: dict[str, Any]
    reply: ReplyTo


@dataclass(frozen=True, slots=True)
class Refused:
    """A request answered at once; ``info`` and ``fields`` are what the event log and
    the audit record get."""

    reply: ReplyTo
    error: str
    info: dict[str, str]
    fields: dict[str, Any]


def _cut(reason: str) -> str:
    return reason if len(reason) <= MAX_REASON_CHARS else reason[:MAX_REASON_CHARS] + "..."


def _wanted_topic(want: object, policy: CommandPolicy, what: str) -> tuple[str, str]:
    """The topic to answer on, and why ``want`` is not allowed (or "")."""
    if want is None:
        return policy.reply_topic, ""
    if (not isinstance(want, str) or not want
            or len(want.encode("utf-8", "replace")) > MAX_TOPIC_BYTES
            or any(c in want for c in "+#\0")):
        return policy.reply_topic, f"{what} must be a topic name without wildcards"
    if not topic_within(want, policy.reply_topic):
        return policy.reply_topic, f"{what} {show(want)} lies outside {policy.reply_topic!r}"
    return want, ""


def prepare(payload: bytes, sender: str | None, policy: CommandPolicy, *,  # noqa: PLR0911
            response_topic: object = None, correlation: object = None) -> Prepared | Refused:
    """Check one command from ``sender`` (its broker user, None for the plain topic)
    and build the spool request, or the refusal. ``response_topic`` and
    ``correlation`` are the MQTT 5 properties of the message, when it had them."""
    user = f"mqtt:{sender if sender is not None else '*'}"
    role = policy.role_of(sender)
    info = {"user": user, "via": VIA, "source": SOURCE}
    if role is not None:
        info["role"] = role.label
    corr = bytes(correlation) if isinstance(correlation, bytes | bytearray) else None
    reply = ReplyTo(policy.reply_topic)

    def refuse(reason: str, fields: dict[str, Any] | None = None) -> Refused:
        return Refused(reply, _cut(reason), info, fields or {})

    if corr is not None and len(corr) > MAX_CORRELATION_BYTES:
        return refuse(f"correlation data longer than {MAX_CORRELATION_BYTES} bytes")
    if response_topic is not None:
        topic, why = _wanted_topic(response_topic, policy, "the response topic")
        if why:
            return refuse(why)
        reply = ReplyTo(topic, corr)
    try:
        req = parse_json(payload, max_bytes=MAX_REQUEST_BYTES)
    except InputError as exc:
        return refuse(f"request is not valid JSON: {exc}")
    if not isinstance(req, dict):
        return refuse("request must be a JSON object")
    rid = req.get("id")
    if not (rid is None or (isinstance(rid, str) and len(rid) <= MAX_ID_CHARS)
            or (isinstance(rid, int) and not isinstance(rid, bool) and abs(rid) < 1 << 63)):
        return refuse(f"id must be a string of at most {MAX_ID_CHARS} characters or an "
                      "integer")
    reply = ReplyTo(reply.topic, reply.correlation, rid)
    fields = {k: req[k] for k in FIELDS if k in req}
    if isinstance(req.get("op"), str):
        info["op"] = req["op"][:32]
    if response_topic is None and "reply_to" in req:
        topic, why = _wanted_topic(req["reply_to"], policy, "reply_to")
        if why:
            return refuse(why, fields)
        reply = ReplyTo(topic, reply.correlation, rid)
    try:
        json.dumps(fields, allow_nan=False)
    except ValueError:
        return refuse("numbers must be finite (no NaN or infinity)", fields)
    if role is None:
        return refuse(f"the broker user {show(sender or '*')} has no role for commands "
                      "(mqtt.commands.roles)", fields)
    body = {**fields, "user": user, "role": role.label, "via": VIA, "source": SOURCE,
            "mqtt_reply": reply.to_json()}
    return Prepared(body, reply)


__all__ = ["CommandPolicy", "Prepared", "Refused", "ReplyTo", "prepare"]
