"""WebSocket subscriptions, fed from the change journal.

One :class:`Hub` per API process owns the process's only :class:`JournalConsumer`:
every ``tick`` it takes what the journal holds and fans it out. Clients that
subscribed to the same patterns share one mask over the slots and one encoded
message, so ten dashboards watching the same plant cost one JSON encoding per tick,
not ten; nothing is polled per client. Within a tick only the latest change of each
signal is sent (a client sees every value the display could show, not every
intermediate one a fast loop wrote).

Each client has a bounded send queue and its own writer task. A client too slow to
keep up is not allowed to grow memory: its queue is emptied and the writer sends a
``resync`` (a snapshot of its signals) instead, with the count of dropped messages.
A journal lap (the consumer fell a whole ring behind) resyncs every client the same
way: loss is reported, never silent.

Protocol (JSON text frames). Client to server::

    {"op": "auth", "token": "..."}                    first, unless the upgrade
                                                      request carried Authorization
    {"op": "subscribe", "id": 1, "signals": ["tank.*", "plant.start"]}
    {"op": "unsubscribe", "id": 2, "signals": ["tank.*"]}   (no signals: all)
    {"op": "ping", "id": 3}
    {"op": "subscribe_alarms", "id": 4}                 alarm events (alarm.read)
    {"op": "unsubscribe_alarms", "id": 5}

Server to client: ``hello``, ``subscribed``, ``snapshot``, ``changes``, ``resync``,
``subscribed_alarms``, ``alarms`` (the list: on subscribe and after a resync),
``alarm_event`` (one per line of the alarm manager's event log, from the process's one
:class:`~petra.api._alarms.AlarmFeed`), ``pong`` and ``error``
(``{"type": "error", "status": 400, "id": .., "error": ..}``).
A bad message gets an error and changes nothing; the connection stays open. A
credential that expires or is revoked closes the connection with code 4401.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import logging
import re
import time
from typing import Any

import numpy as np
import numpy.typing as npt
from aiohttp import WSMsgType, web

from petra.api._alarms import AlarmFeed, snapshot_message
from petra.api._auth import SESSION, ctx_of
from petra.api._context import ApiContext, Session
from petra.api._http import ApiError, jvalue
from petra.errors import SignalBusyError
from petra.security import AuthenticationError, Permission, PermissionDeniedError
from petra.shm import JournalBatch, JournalConsumer
from petra.types import QUALITIES, SUBSTATUSES, ApiCounter, Quality, SignalType

log = logging.getLogger("petra.api.ws")

MAX_MESSAGE_BYTES = 64 * 1024
MAX_PATTERNS = 256
MAX_PATTERN_CHARS = 128
QUEUE_MAX = 64
AUTH_TIMEOUT_S = 10.0
CHECK_EVERY_S = 2.0
MAX_ENTRIES_PER_TICK = 1 << 18
CLOSE_UNAUTHORISED = 4401
RESYNC = "\0resync"
_QNAMES = tuple(q.name for q in QUALITIES)
_SUBNAMES = tuple(s.name for s in SUBSTATUSES)  # by raw byte: 256 entries


class WsClient:
    def __init__(self, ws: web.WebSocketResponse, session: Session, n_signals: int) -> None:
        self.ws = ws
        self.session = session
        self.patterns: list[str] = []
        self.mask: npt.NDArray[np.bool_] = np.zeros(n_signals, np.bool_)
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(QUEUE_MAX)
        self.dropped = 0
        self.alarms = False  # subscribed to alarm events

    @property
    def key(self) -> tuple[str, ...]:
        return tuple(self.patterns)

    def offer(self, text: str) -> bool:
        """Queue a message; when the queue is full, empty it and queue a resync."""
        try:
            self.queue.put_nowait(text)
            return True
        except asyncio.QueueFull:
            self.resync()
            return False

    def resync(self) -> None:
        while not self.queue.empty():
            if self.queue.get_nowait() not in (None, RESYNC):
                self.dropped += 1
        self.queue.put_nowait(RESYNC)


class Hub:
    """The journal reader and fan-out of one API process."""

    def __init__(self, ctx: ApiContext, feed: AlarmFeed | None = None) -> None:
        self.ctx = ctx
        self.clients: set[WsClient] = set()
        self.names = ctx.segment.names
        self.consumer: JournalConsumer | None = None
        self.feed = feed
        if feed is not None:
            feed.listeners.append(self.alarm_events)

    async def run(self, tick_s: float) -> None:
        self.consumer = JournalConsumer(self.ctx.segment)
        async with asyncio.TaskGroup() as tg:
            if self.feed is not None:
                tg.create_task(self.feed.run(tick_s))  # the same tick as the journal
            while True:
                self.pump()
                await asyncio.sleep(tick_s)

    def alarm_events(self, events: list[dict[str, Any]]) -> None:
        """New alarm events: each encoded once, queued to every subscribed client."""
        members = [c for c in self.clients if c.alarms]
        if not members:
            return
        for ev in events:
            text = json.dumps({**ev, "type": "alarm_event"}, allow_nan=False, default=str)
            for client in members:
                if not client.offer(text):
                    self.ctx.count(ApiCounter.WS_DROPPED)

    def pump(self) -> None:
        consumer = self.consumer
        if consumer is None:
            return
        lost = consumer.lost
        taken = 0
        while taken < MAX_ENTRIES_PER_TICK:
            batch = consumer.read()
            if not len(batch):
                break
            taken += len(batch)
            if self.clients:
                self.dispatch(batch)
        if consumer.lost > lost:
            log.warning("event=ws_journal_lapped lost=%d clients=%d", consumer.lost - lost,
                        len(self.clients))
            for client in self.clients:
                client.resync()

    def dispatch(self, batch: JournalBatch) -> None:
        groups: dict[tuple[str, ...], list[WsClient]] = {}
        for client in self.clients:
            if client.patterns:
                groups.setdefault(client.key, []).append(client)
        slot = batch.slot
        for members in groups.values():
            sel = np.flatnonzero(members[0].mask[slot])
            if not sel.size:
                continue
            # the last change of each slot in this batch, in journal order
            rev = slot[sel][::-1]
            _, first_in_rev = np.unique(rev, return_index=True)
            keep = np.sort(sel[len(sel) - 1 - first_in_rev])
            text = json.dumps({"type": "changes", "changes": self._changes(batch, keep)},
                              allow_nan=False)
            for client in members:
                if not client.offer(text):
                    self.ctx.count(ApiCounter.WS_DROPPED)

    def _changes(self, batch: JournalBatch, keep: npt.NDArray[np.intp]) -> list[dict[str, Any]]:
        as_f = batch.value.view(np.float64)
        as_i = batch.value.view(np.int64)
        out = []
        for k in keep.tolist():
            t = int(batch.type[k])
            v: bool | int | float = (float(as_f[k]) if t == SignalType.FLOAT
                                     else int(as_i[k]) if t == SignalType.INT
                                     else bool(as_i[k] == 1))
            q = int(batch.quality[k])
            change = {"signal": self.names[int(batch.slot[k])], "value": jvalue(v),
                      "quality": _QNAMES[q] if q < len(_QNAMES) else str(q),
                      "ts": int(batch.source_ts_ns[k])}
            if q != Quality.GOOD:  # why: the substatus written with this value
                change["substatus"] = _SUBNAMES[int(batch.substatus[k])]
            out.append(change)
        return out

    def snapshot(self, mask: npt.NDArray[np.bool_]) -> dict[str, Any]:
        seg = self.ctx.segment
        out: dict[str, Any] = {}
        for i in np.flatnonzero(mask).tolist():
            try:
                s = seg.read_index(i)
            except SignalBusyError:
                # held by a writer that died or stopped inside (a live one is waited
                # for): left out, not guessed; the repair or the finished write is a
                # journal entry, which reaches this client as a change
                continue
            out[self.names[i]] = {"value": jvalue(s.value), "quality": s.quality.name,
                                  "substatus": s.substatus.name, "ts": s.source_ts_ns}
        return out

    def match(self, patterns: list[str]) -> npt.NDArray[np.bool_]:
        mask = np.zeros(len(self.names), np.bool_)
        for p in patterns:
            rx = re.compile(fnmatch.translate(p))
            for i, name in enumerate(self.names):
                if rx.match(name):
                    mask[i] = True
        return mask


HUB = web.AppKey("hub", Hub)


def _error(status: int, message: str, req_id: object = None) -> str:
    return json.dumps({"type": "error", "status": status, "id": req_id, "error": message})


def _parse(data: str) -> dict[str, Any]:
    try:
        msg = json.loads(data)
    except (ValueError, RecursionError):
        raise ApiError(400, "not valid JSON") from None
    if not isinstance(msg, dict):
        raise ApiError(400, "a message must be a JSON object")
    return msg


def _req_id(msg: dict[str, Any]) -> object:
    rid = msg.get("id")
    if rid is None or (isinstance(rid, int) and not isinstance(rid, bool)
                       and abs(rid) < 1 << 53) or (isinstance(rid, str) and len(rid) <= 64):
        return rid
    raise ApiError(400, "id must be an integer or a string of at most 64 characters")


def _fields(msg: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(msg) - allowed)
    if unknown:
        raise ApiError(400, f"unknown field(s) {', '.join(repr(k)[:40] for k in unknown[:5])}")


def _patterns(msg: dict[str, Any], required: bool) -> list[str] | None:
    pats = msg.get("signals")
    if pats is None and not required:
        return None
    if not isinstance(pats, list) or not pats or len(pats) > MAX_PATTERNS or not all(
            isinstance(p, str) and 0 < len(p) <= MAX_PATTERN_CHARS for p in pats):
        raise ApiError(400, f"signals must be a list of 1-{MAX_PATTERNS} names or patterns "
                       f"of 1-{MAX_PATTERN_CHARS} characters")
    return list(dict.fromkeys(pats))


async def ws_handler(request: web.Request) -> web.StreamResponse:
    ctx = ctx_of(request)
    hub = request.app[HUB]
    if len(hub.clients) >= ctx.config.ws_max_clients:
        raise ApiError(503, f"too many WebSocket clients ({ctx.config.ws_max_clients})")
    ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES, heartbeat=30.0)
    await ws.prepare(request)
    session: Session | None = request.get(SESSION)
    if session is None:
        session = await _first_auth(ctx, ws, request.remote or "?")
        if session is None:
            return ws
    client = WsClient(ws, session, len(hub.names))
    hub.clients.add(client)
    ctx.count(ApiCounter.WS_CLIENTS)
    try:
        await ws.send_str(json.dumps({"type": "hello", "user": session.principal.name,
                                      "role": session.principal.role.label}))
        async with asyncio.TaskGroup() as tg:
            writer = tg.create_task(_writer(ctx, hub, client))
            try:
                await _reader(ctx, hub, client)
            finally:
                writer.cancel()
    finally:
        hub.clients.discard(client)
        ctx.count(ApiCounter.WS_CLIENTS, -1)
        await ws.close()
    return ws


async def _first_auth(ctx: ApiContext, ws: web.WebSocketResponse, addr: str
                      ) -> Session | None:
    try:
        msg = await ws.receive(timeout=AUTH_TIMEOUT_S)
    except TimeoutError:
        await ws.close(code=CLOSE_UNAUTHORISED, message=b"no credentials")
        return None
    try:
        if msg.type != WSMsgType.TEXT:
            raise ApiError(401, "send {\"op\": \"auth\", \"token\": ...} first")
        body = _parse(msg.data)
        if body.get("op") != "auth" or not isinstance(body.get("token"), str):
            raise ApiError(401, "send {\"op\": \"auth\", \"token\": ...} first")
        _fields(body, {"op", "token", "id"})
        session = ctx.authenticate(body["token"], addr)
    except (ApiError, AuthenticationError) as exc:
        status = exc.status if isinstance(exc, ApiError) else 401
        with contextlib.suppress(ConnectionError):
            await ws.send_str(_error(status, str(exc)))
        await ws.close(code=CLOSE_UNAUTHORISED, message=b"unauthorised")
        return None
    return session


async def _reader(ctx: ApiContext, hub: Hub, client: WsClient) -> None:
    async for msg in client.ws:
        if msg.type == WSMsgType.TEXT:
            reply = _handle(ctx, hub, client, msg.data)
        elif msg.type == WSMsgType.BINARY:
            reply = [_error(400, "send JSON text frames")]
        else:
            break
        for text in reply:
            client.offer(text)


def _alarm_subscription(ctx: ApiContext, hub: Hub, client: WsClient, msg: dict[str, Any],
                        req_id: object) -> list[str]:
    """subscribe_alarms / unsubscribe_alarms: alarm events for this client on or off."""
    _fields(msg, {"op", "id"})
    client.session.principal.require(Permission.ALARM_READ)
    if hub.feed is None or ctx.alarms is None:
        raise ApiError(404, "this plant has no alarms: section")
    client.alarms = msg["op"] == "subscribe_alarms"
    reply = [json.dumps({"type": "subscribed_alarms", "id": req_id,
                         "alarms": client.alarms, "seq": hub.feed.last_seq})]
    if client.alarms:
        reply.append(json.dumps(snapshot_message(ctx.alarms), allow_nan=False, default=str))
    return reply


def _handle(ctx: ApiContext, hub: Hub, client: WsClient, data: str) -> list[str]:  # noqa: PLR0911 - one answer per op
    req_id: object = None
    try:
        msg = _parse(data)
        req_id = _req_id(msg)
        op = msg.get("op")
        if op == "ping":
            _fields(msg, {"op", "id"})
            return [json.dumps({"type": "pong", "id": req_id})]
        if op == "subscribe":
            _fields(msg, {"op", "id", "signals"})
            pats = _patterns(msg, True) or []
            if len(set(client.patterns) | set(pats)) > MAX_PATTERNS * 4:
                raise ApiError(400, "too many patterns on this connection")
            added = hub.match(pats)
            new = added & ~client.mask
            client.patterns = list(dict.fromkeys([*client.patterns, *pats]))
            client.mask = client.mask | added
            return [json.dumps({"type": "subscribed", "id": req_id,
                                "patterns": client.patterns,
                                "signals": int(client.mask.sum())}),
                    json.dumps({"type": "snapshot", "signals": hub.snapshot(new)},
                               allow_nan=False)]
        if op == "unsubscribe":
            _fields(msg, {"op", "id", "signals"})
            gone = _patterns(msg, False)
            client.patterns = [] if gone is None else [
                p for p in client.patterns if p not in gone]
            client.mask = hub.match(client.patterns)
            return [json.dumps({"type": "subscribed", "id": req_id,
                                "patterns": client.patterns,
                                "signals": int(client.mask.sum())})]
        if op in ("subscribe_alarms", "unsubscribe_alarms"):
            return _alarm_subscription(ctx, hub, client, msg, req_id)
        if op == "auth":
            _fields(msg, {"op", "id", "token"})
            token = msg.get("token")
            if not isinstance(token, str):
                raise ApiError(400, "auth needs a token")
            try:
                session = ctx.authenticate(token, client.session.principal.source)
            except AuthenticationError as exc:
                raise ApiError(401, str(exc)) from None
            if session.principal.name != client.session.principal.name:
                raise ApiError(403, "a connection keeps its user")
            client.session = session
            return [json.dumps({"type": "hello", "id": req_id, "user": session.principal.name,
                                "role": session.principal.role.label})]
        raise ApiError(400, "op must be subscribe, unsubscribe, subscribe_alarms, "
                            "unsubscribe_alarms, auth or ping")
    except ApiError as exc:
        return [_error(exc.status, exc.message, req_id)]
    except PermissionDeniedError as exc:
        return [_error(403, str(exc), req_id)]


async def _writer(ctx: ApiContext, hub: Hub, client: WsClient) -> None:
    last_check = time.monotonic()
    while True:
        try:
            text = await asyncio.wait_for(client.queue.get(), CHECK_EVERY_S)
        except TimeoutError:
            text = ""
        if time.monotonic() - last_check >= CHECK_EVERY_S:
            last_check = time.monotonic()
            if not _still_valid(ctx, client.session):
                with contextlib.suppress(ConnectionError):
                    await client.ws.send_str(_error(401, "credentials expired or revoked"))
                await client.ws.close(code=CLOSE_UNAUTHORISED, message=b"expired")
                return
        if text is None:
            return
        if not text:
            continue
        if text == RESYNC:
            text = json.dumps({"type": "resync", "dropped": client.dropped,
                               "signals": hub.snapshot(client.mask)}, allow_nan=False)
            if client.alarms and ctx.alarms is not None:  # alarm events were dropped too
                with contextlib.suppress(ConnectionError):
                    await client.ws.send_str(text)
                text = json.dumps({**snapshot_message(ctx.alarms), "resync": True},
                                  allow_nan=False, default=str)
        try:
            await client.ws.send_str(text)
        except ConnectionError:  # the client went away; the reader sees the close
            return
        ctx.count(ApiCounter.WS_SENT)


def _still_valid(ctx: ApiContext, session: Session) -> bool:
    if session.expires is not None and time.time() >= session.expires:
        return False
    user = ctx.users.get().get(session.user.name)
    if user is None or user.disabled:
        return False
    if session.credential == "token":
        return user.generation == session.user.generation
    return any(k.id == session.key_id for k in user.keys)
