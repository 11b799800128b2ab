"""Alarms on the API: read the alarm manager's list, events and metrics; act on alarms;
acknowledge by SMS reply (Twilio webhook).

The API never holds alarm state. It reads what the alarm process publishes in its
directory (``alarms.json``, ``status.json``, ``events.jsonl``) and hands actions to it
through its request spool (:class:`petra.io.RequestSpool`), the same path the CLI and
MQTT commands take, so every front end gets the same answer and nothing is lost while
the alarm process restarts.

An action is checked here first (body shape, alarm and area names against the plant's
definitions, text sizes, a shelving duration finite and within the alarm's maximum),
so bad input is a 4xx that never reaches the spool. Then it is submitted with the
authenticated user, role, ``via`` and address, and the answer awaited for
``api.alarm_wait_s``: 200 when done, 403/409 when the alarm process refused (its text),
503 when it did not answer in time (the request stays queued and is applied when the
process runs, unless it is older than ``alarms.request_max_age_s`` by then).

Audit: the alarm process appends every request it handles, allowed or refused, to the
hash-chained audit log (with ``via`` and ``source``), so the API does not record those
again. What never reaches it is recorded here: a caller whose role lacks the
permission (in the auth middleware, rules with ``audit``), and an SMS reply refused
before submission (unknown number, unknown code).

Events: one :class:`AlarmFeed` per process reads ``events.jsonl`` as it grows (a rotated
file is noticed by its inode and read from the start), keeps the newest
``EVENTS_KEPT`` events in memory for ``GET /alarms/events``, and hands each batch to
the WebSocket hub, which encodes each event once for all subscribed clients: nothing is
polled per client.

Why SMS codes: the reply ``ACK K7Q2MX`` names one occurrence of one alarm by the code
the SMS carried (:func:`petra.config._alarms.ack_code`), so an old SMS never
acknowledges a later occurrence. The request's authenticity is Twilio's signature
(checked with the twilio package's ``RequestValidator`` against the auth token and the
configured public URL, never a hand-rolled HMAC); the sender must be a configured
contact, and acts as that contact's user with the operator role, ``via: sms``.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from twilio.request_validator import (
    SIGNATURE_HEADER,
    SIGNATURE_SETTINGS_HEADER,
    RequestValidator,
    get_signature_algorithm,
)
from twilio.twiml.messaging_response import MessagingResponse

from petra.api._auth import ctx_of, peer, session_of
from petra.api._context import ApiContext
from petra.api._http import ApiError, int_param, json_response, query, read_object
from petra.config._alarms import (
    PRIORITIES,
    ack_code,
    effective_definitions,
    list_file,
    resolve_dir,
    spool_dir,
    status_file,
)
from petra.io import RequestSpool
from petra.security import AuditError, Permission, Principal, read_secret, resolve
from petra.types import AccessRole

log = logging.getLogger("petra.api.alarms")

EVENTS_FILE = "events.jsonl"
EVENTS_KEPT = 10_000
EVENTS_LIMIT = 1000
MAX_TARGETS = 1000
MAX_TEXT = 512
MAX_NAME = 256
POLL_S = 0.02
FEED_TICK_S = 0.1
MAX_FEED_READ = 4 * 2**20
TAIL_BYTES = 8 * 2**20  # >> EVENTS_KEPT lines of a few hundred bytes
UNACKED = ("unack", "rtn_unack")
VIA_SMS = "sms"
SMS_FORM_MAX = 16 * 1024
_CODE_RE = re.compile(r"^ACK\s+([A-Z2-7]{6})$")
_STATE_RE = re.compile(r"^[a-z_]{1,32}$")


# ----------------------------------------------------------------------------- the link
@dataclass(frozen=True, slots=True)
class SmsReplies:
    """What the SMS-reply webhook needs: the token, the signed URL, who may answer."""

    url: str
    token: str
    contacts: Mapping[str, tuple[str, str]]  # phone -> (contact, user)


@dataclass(frozen=True, slots=True)
class AlarmsLink:
    """Where the alarm process of this plant publishes and what it knows."""

    dir: Path
    shelve_max_s: Mapping[str, float]  # alarm -> its longest shelving
    areas: frozenset[str]
    sms: SmsReplies | None = None

    @property
    def spool(self) -> RequestSpool:
        return RequestSpool(spool_dir(self.dir))


def alarms_link(config: Any, instance: str, plant_path: str | Path | None
                ) -> AlarmsLink | None:
    """The link for a plant's ``alarms:`` section (None without one). Reads the Twilio
    auth token when SMS replies are configured (a start-up error when unreadable)."""
    cfg = getattr(config, "alarms", None)
    if cfg is None:
        return None
    defs = effective_definitions(config)
    base = Path(plant_path).resolve().parent if plant_path is not None else None
    sms = None
    notif = cfg.notifications
    if notif is not None and notif.twilio.sms_reply_url:
        tw = notif.twilio
        secret = read_secret(file=resolve(tw.auth_token_file, base) if tw.auth_token_file
                             else None, env=tw.auth_token_env, min_bytes=8)
        if secret is None:
            log.warning("event=api_sms_replies_off reason='no Twilio auth token found'")
        else:
            sms = SmsReplies(tw.sms_reply_url, secret.reveal().decode().strip(),
                             {c.phone: (c.name, c.user or c.name) for c in notif.contacts})
    return AlarmsLink(
        dir=resolve_dir(cfg, instance, plant_path),
        shelve_max_s={d.name: d.shelve_max_s if d.shelve_max_s is not None
                      else cfg.shelve_max_s for d in defs},
        areas=frozenset(d.area for d in defs if d.area), sms=sms)


def _link(ctx: ApiContext) -> AlarmsLink:
    link = ctx.alarms
    if link is None:
        raise ApiError(404, "this plant has no alarms: section")
    return link


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise ApiError(503, f"the alarm manager has not published its {what} yet") from None
    except (OSError, ValueError):
        raise ApiError(503, f"the alarm manager's {what} cannot be read now") from None
    if not isinstance(doc, dict):
        raise ApiError(503, f"the alarm manager's {what} is not an object")
    return doc


def read_list(link: AlarmsLink) -> dict[str, Any]:
    return _read_json(list_file(link.dir), "list")


def snapshot_message(link: AlarmsLink) -> dict[str, Any]:
    """The ``alarms`` WebSocket message: the published list (empty while there is none)."""
    try:
        doc = read_list(link)
    except ApiError:
        doc = {}
    return {"type": "alarms", "alarms": [r for r in doc.get("alarms") or []
                                         if isinstance(r, dict)],
            "updated_ns": int(doc.get("time_ns") or 0), "seq": int(doc.get("seq") or 0)}


# ----------------------------------------------------------------------------- events
class AlarmFeed:
    """The one reader of ``events.jsonl`` in the API process (see the module doc)."""

    def __init__(self, directory: Path | None, keep: int = EVENTS_KEPT) -> None:
        self.path = directory / EVENTS_FILE if directory is not None else None
        self.events: collections.deque[dict[str, Any]] = collections.deque(maxlen=keep)
        self.last_seq = 0
        self.listeners: list[Callable[[list[dict[str, Any]]], None]] = []
        self._ino = -1
        self._pos = 0
        self._partial = b""
        self._skip_line = False

    def poll(self) -> list[dict[str, Any]]:
        """The events appended since the last call (whole lines only)."""
        if self.path is None:
            return []
        try:
            st = os.stat(self.path)
        except OSError:
            return []
        if st.st_ino != self._ino or st.st_size < self._pos:  # first look, rotated, replaced
            # at the first look only the tail matters (memory keeps the newest events):
            # start a line into the last TAIL_BYTES instead of parsing a 16 MiB log
            first = self._ino == -1 and st.st_size > TAIL_BYTES
            self._ino, self._pos, self._partial = st.st_ino, 0, b""
            if first:
                self._pos = st.st_size - TAIL_BYTES
                self._skip_line = True
        if st.st_size == self._pos:
            return []
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self._pos)
                data = fh.read(MAX_FEED_READ)
        except OSError:
            return []
        self._pos += len(data)
        data = self._partial + data
        if self._skip_line:  # started inside a line: drop it
            nl = data.find(b"\n")
            if nl < 0:
                self._partial = b""
                return []
            data, self._skip_line = data[nl + 1:], False
        cut = data.rfind(b"\n") + 1
        self._partial = data[cut:]
        out = []
        for line in data[:cut].splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue  # a damaged line: the alarm process skips it too
            if not isinstance(doc, dict):
                continue
            seq = doc.get("seq")
            if not isinstance(seq, int) or isinstance(seq, bool) or seq <= self.last_seq:
                continue
            doc.pop("put", None)  # the state it leaves: internal, and large
            self.last_seq = seq
            out.append(doc)
        self.events.extend(out)
        return out

    def pump(self) -> None:
        """Read what is new and hand it to every listener (the WebSocket hub)."""
        new = self.poll()
        if new:
            for listener in self.listeners:
                listener(new)

    async def run(self, tick_s: float = FEED_TICK_S) -> None:
        # the first read may be a whole 16 MiB log: off the event loop
        await asyncio.to_thread(self._catch_up)
        while True:
            self.pump()
            await asyncio.sleep(tick_s)

    def _catch_up(self) -> None:
        while self.poll():
            pass

    def after(self, seq: int, limit: int, alarm: str | None) -> tuple[list[dict[str, Any]],
                                                                     int]:
        """Up to ``limit`` kept events with seq > ``seq`` (of ``alarm``), and the seq to
        ask after next."""
        out: list[dict[str, Any]] = []
        next_seq = seq
        for ev in self.events:
            s = ev["seq"]
            if s <= seq:
                continue
            if alarm is None or ev.get("alarm") == alarm:
                if len(out) == limit:
                    break
                out.append(ev)
            next_seq = s
        return out, max(next_seq, seq)

    @property
    def oldest_seq(self) -> int:
        return int(self.events[0]["seq"]) if self.events else self.last_seq + 1


FEED = web.AppKey("alarm_feed", AlarmFeed)


# ----------------------------------------------------------------------------- reads
async def list_alarms(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    link = _link(ctx)
    params = query(request, ("state", "priority", "area"))
    state = params.get("state")
    if state is not None and not _STATE_RE.match(state):
        raise ApiError(400, "state must be an alarm state such as unack, acked, shelved")
    priority = params.get("priority")
    if priority is not None and priority not in PRIORITIES:
        raise ApiError(400, f"priority must be one of {', '.join(PRIORITIES)}")
    area = params.get("area")
    doc = await asyncio.to_thread(read_list, link)
    rows = [r for r in doc.get("alarms") or [] if isinstance(r, dict)
            and (state is None or r.get("state") == state)
            and (priority is None or r.get("priority") == priority)
            and (area is None or r.get("area") == area)]
    return json_response({"alarms": rows, "updated_ns": int(doc.get("time_ns") or 0),
                          "seq": int(doc.get("seq") or 0),
                          "total": int(doc.get("total") or len(link.shelve_max_s))})


async def list_events(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    link = _link(ctx)
    params = query(request, ("after_seq", "limit", "alarm"))
    after = int_param(params, "after_seq", 0, 0, 1 << 62)
    limit = int_param(params, "limit", 100, 1, EVENTS_LIMIT)
    alarm = params.get("alarm")
    if alarm is not None and alarm not in link.shelve_max_s:
        raise ApiError(404, f"no alarm named {alarm[:80]!r}")
    feed = request.app[FEED]
    events, next_seq = feed.after(after, limit, alarm)
    return json_response({"events": events, "next_seq": next_seq,
                          "oldest_seq": feed.oldest_seq})


async def alarm_status(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    link = _link(ctx)
    query(request, ())
    return json_response(await asyncio.to_thread(_read_json, status_file(link.dir),
                                                 "status"))


# ----------------------------------------------------------------------------- actions
def _text(body: Mapping[str, Any], key: str, *, required: bool = False) -> str:
    v = body.get(key, "")
    if not isinstance(v, str):
        raise ApiError(400, f"{key} must be a string")
    if len(v) > MAX_TEXT:
        raise ApiError(400, f"{key} is longer than {MAX_TEXT} characters")
    if any(ord(c) < 32 and c != "\t" for c in v) or "\x7f" in v:
        raise ApiError(400, f"{key} holds control characters")
    if required and not v.strip():
        raise ApiError(400, f"{key} is required")
    return v


def _names(link: AlarmsLink, body: Mapping[str, Any], *, one: bool = False) -> list[str]:
    raw = body.get("alarms")
    if (not isinstance(raw, list) or not raw or len(raw) > MAX_TARGETS
            or not all(isinstance(a, str) and 0 < len(a) <= MAX_NAME for a in raw)):
        raise ApiError(400, f"alarms must be a list of 1-{MAX_TARGETS} alarm names")
    if one and len(raw) != 1:
        raise ApiError(400, "a comment goes to exactly one alarm")
    names = list(dict.fromkeys(raw))
    unknown = [a for a in names if a not in link.shelve_max_s]
    if unknown:
        more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
        raise ApiError(404, f"no alarm named {unknown[0][:80]!r}{more}")
    return names


def _check(link: AlarmsLink, op: str, body: Mapping[str, Any]) -> dict[str, Any]:  # noqa: PLR0912
    """The spool request for a checked body (ApiError otherwise)."""
    out: dict[str, Any] = {"op": op}
    if op == "ack":
        given = [k for k in ("alarms", "area", "all") if k in body]
        if len(given) != 1:
            raise ApiError(400, "ack takes exactly one of alarms, area or all")
        if "alarms" in body:
            out["alarms"] = _names(link, body)
        elif "area" in body:
            area = body["area"]
            if not isinstance(area, str):
                raise ApiError(400, "area must be a string")
            if area not in link.areas:
                raise ApiError(404, f"no alarm in area {str(area)[:80]!r}")
            out["area"] = area
        else:
            if body["all"] is not True:
                raise ApiError(400, "all must be true")
            out["all"] = True
        comment = _text(body, "comment")
        if comment:
            out["reason"] = comment
        return out
    out["alarms"] = _names(link, body, one=op == "comment")
    if op == "shelve":
        out["reason"] = _text(body, "reason", required=True)
        duration, oneshot = body.get("duration_s"), body.get("oneshot", False)
        if oneshot is not True and oneshot is not False:
            raise ApiError(400, "oneshot must be true or false")
        if (duration is None) == (not oneshot):
            raise ApiError(400, "shelve takes duration_s or oneshot: true (one of them)")
        if duration is not None:
            if (isinstance(duration, bool) or not isinstance(duration, int | float)
                    or not math.isfinite(duration) or duration <= 0):
                raise ApiError(400, "duration_s must be a finite number of seconds > 0")
            worst = min(out["alarms"], key=lambda a: link.shelve_max_s[a])
            if duration > link.shelve_max_s[worst]:
                raise ApiError(422, f"{worst} may be shelved for at most "
                                    f"{link.shelve_max_s[worst]:g} s")
            out["duration_s"] = float(duration)
        else:
            out["oneshot"] = True
    elif op == "comment":
        out["text"] = _text(body, "text", required=True)
    elif op == "remove":
        out["reason"] = _text(body, "reason", required=True)
    return out


async def submit(ctx: ApiContext, link: AlarmsLink, request_body: dict[str, Any],
                 principal: Principal) -> tuple[str, dict[str, Any] | None]:
    """Spool the request as ``principal`` and wait for the answer (None: no answer in
    ``api.alarm_wait_s``)."""
    spool = link.spool
    body = {**request_body, "user": principal.name, "role": principal.role.label,
            "via": principal.via, "source": principal.source}
    try:
        rid = await asyncio.to_thread(spool.submit, body)
    except (OSError, ValueError) as exc:
        raise ApiError(503, f"cannot queue the request for the alarm manager: {exc}"
                       ) from None
    deadline = time.monotonic() + ctx.config.alarm_wait_s
    while True:
        result = await asyncio.to_thread(spool.result, rid)
        if result is not None or time.monotonic() >= deadline:
            return rid, result
        await asyncio.sleep(POLL_S)


def _answer(rid: str, result: dict[str, Any] | None) -> web.Response:
    if result is None:
        return json_response({"error": "alarm manager not answering; the request stays "
                                       "queued and is applied when it runs (unless it is "
                                       "older than request_max_age_s by then)",
                              "status": 503, "id": rid}, 503)
    if result.get("ok"):
        out: dict[str, Any] = {"ok": True, "done": list(result.get("done") or []), "id": rid}
        if result.get("skipped"):
            out["skipped"] = result["skipped"]
        return json_response(out)
    error = str(result.get("error") or "refused")[:1000]
    status = 403 if re.search(r"may not \S+; it needs the \w+ role", error) else 409
    return json_response({"error": error, "status": status, "id": rid}, status)


def _action(op: str, fields: Mapping[str, type | tuple[type, ...]],
            required: tuple[str, ...]) -> Callable[[web.Request], Any]:
    async def handler(request: web.Request) -> web.Response:
        ctx = ctx_of(request)
        link = _link(ctx)
        query(request, ())
        body = await read_object(request, fields, required)
        checked = _check(link, op, body)
        rid, result = await submit(ctx, link, checked, session_of(request).principal)
        return _answer(rid, result)

    handler.__name__ = f"alarm_{op}"
    return handler


_NAMES: dict[str, type | tuple[type, ...]] = {"alarms": list}
ack = _action("ack", {"alarms": list, "area": str, "all": bool, "comment": str}, ())
reset = _action("reset", _NAMES, ("alarms",))
shelve = _action("shelve", {"alarms": list, "reason": str, "duration_s": (int, float),
                            "oneshot": bool}, ("alarms", "reason"))
unshelve = _action("unshelve", _NAMES, ("alarms",))
comment = _action("comment", {"alarms": list, "text": str}, ("alarms", "text"))
out_of_service = _action("remove", {"alarms": list, "reason": str}, ("alarms", "reason"))
return_to_service = _action("return", _NAMES, ("alarms",))


async def audit_refusal(ctx: ApiContext, principal: Principal, permission: Permission,
                        path: str, reason: str) -> None:
    """A caller whose role lacks an alarm permission never reaches the alarm process:
    record the refusal here (the auth middleware calls this for rules with audit)."""
    try:
        await ctx.record(principal, permission.value, path.rsplit("/", 1)[-1],
                         outcome="refused", reason=reason)
    except AuditError as exc:
        log.error("event=api_audit_failed error=%s", exc)


# ----------------------------------------------------------------------------- SMS replies
def twiml(text: str | None, status: int = 200) -> web.Response:
    """A TwiML answer: one reply SMS (escaped by the twilio package), or none."""
    resp = MessagingResponse()
    if text is not None:
        resp.message(text)
    return web.Response(text=str(resp), status=status, content_type="text/xml")


async def twilio_sms(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    link = _link(ctx)
    if link.sms is None:
        raise ApiError(404, "SMS replies are not configured (alarms.notifications.twilio."
                            "sms_reply_url)")
    sms = link.sms
    addr = peer(request)
    ctx.guard.check(None, addr)
    if request.content_type != "application/x-www-form-urlencoded":
        raise ApiError(415, "Twilio posts application/x-www-form-urlencoded")
    if (request.content_length or 0) > SMS_FORM_MAX:
        raise ApiError(413, "the body is too large")
    form = await request.post()
    url = sms.url + (f"?{request.query_string}" if request.query_string
                     and "?" not in sms.url else "")
    algorithm = get_signature_algorithm(request.headers.get(SIGNATURE_SETTINGS_HEADER))
    signature = request.headers.get(SIGNATURE_HEADER, "")
    if not signature or not RequestValidator(sms.token).validate(url, form, signature,
                                                                  algorithm):
        ctx.guard.failure(None, addr)
        log.warning("event=api_sms_bad_signature source=%s", addr)
        raise ApiError(403, "the Twilio signature does not match")
    sender, text = form.get("From"), form.get("Body")
    if not isinstance(sender, str) or not isinstance(text, str):
        raise ApiError(400, "From and Body are required")
    sender, text = sender.strip()[:32], text.strip()[:160]
    who = sms.contacts.get(sender)
    if who is None:
        await _sms_refused(ctx, None, sender, text, "the number is not a configured contact")
        return twiml(None, 403)  # no reply: an unknown number gets nothing back
    contact, user = who
    principal = Principal(user, AccessRole.OPERATOR, VIA_SMS, sender)
    m = _CODE_RE.match(" ".join(text.upper().split()))
    if m is None:
        return twiml("Reply ACK and the code from the alarm message, e.g. ACK K7Q2MX.")
    code = m.group(1)
    rows = (await asyncio.to_thread(read_list, link)).get("alarms") or []
    match = [r for r in rows if isinstance(r, dict) and r.get("state") in UNACKED
             and isinstance(r.get("name"), str) and isinstance(r.get("occurrence"), int)
             and ack_code(r["name"], r["occurrence"]) == code]
    if not match:
        await _sms_refused(ctx, principal, sender, text,
                           f"no unacknowledged alarm with code {code}")
        return twiml(f"No unacknowledged alarm has the code {code} (already acknowledged, "
                     "or a newer occurrence).")
    name = match[0]["name"]
    rid, result = await submit(ctx, link, {"op": "ack", "alarms": [name]}, principal)
    log.info("event=api_sms_ack contact=%s alarm=%s request=%s ok=%s", contact, name, rid,
             None if result is None else bool(result.get("ok")))
    if result is None:
        return twiml(f"The alarm manager is not answering; your ACK of {name} is queued.")
    if result.get("ok"):
        return twiml(f"Acknowledged {name} #{match[0]['occurrence']}.")
    return twiml(f"Not acknowledged: {str(result.get('error'))[:120]}")


async def _sms_refused(ctx: ApiContext, principal: Principal | None, sender: str,
                       text: str, reason: str) -> None:
    log.warning("event=api_sms_refused source=%s reason=%r", sender, reason)
    try:
        await ctx.record(principal, Permission.ALARM_ACK.value, "", outcome="refused",
                         reason=reason, user=None if principal else f"sms:{sender}",
                         source=sender, via=VIA_SMS, extra={"body": text[:64]})
    except AuditError as exc:
        log.error("event=api_audit_failed error=%s", exc)
