"""The mqtt-out sink: publish signal changes from the change journal to a broker.

Pipeline (one asyncio loop, one broker connection)::

    journal -> rule match -> deadband / minimum interval -> message (or batch entry)
            -> bounded queue -> broker, within the in-flight window

- Rules are matched once per signal at start (first matching rule wins), so the hot
  loop does a list lookup per change.
- Only changes are published: an entry whose value, quality and substatus equal what
  was last published for the signal is dropped (a driver writes every poll to the
  journal; subscribers want changes). ``heartbeat_s`` on a rule republishes a signal's
  current value when nothing was published for it that long.
- At start and after every reconnect the sink publishes every routed signal's current
  value from the slots (retained where the rule says so; a slot still holding its
  initial value, never written, is left out, and so is a value equal to the one last
  emitted, except on a retained route after a reconnect), then follows the journal
  from that point: a change written before the sink connected, or while it was
  restarting or away, is never left unpublished.
- Deadband is absolute against the last *published* value; a quality change always
  publishes. A minimum interval holds the latest value and sends it when the interval
  ends (trailing edge), so the last value is never lost to rate limiting.
- The queue holds messages while the broker is away, up to ``offline_queue``; when full
  the oldest message is dropped and counted (DROPPED), and the drop total is logged.
  While connected and the queue is full, the sink stops reading the journal
  (backpressure); the journal's own loss accounting covers a sink that falls a whole
  ring behind.
- QoS 1/2: at most ``max_inflight`` messages await an ack. Unacked messages are kept and
  requeued at the front on a connection loss, so nothing handed to the sink is lost
  (a duplicate is possible, as QoS 1 allows).
- Batched mode: rules with ``batch: true`` feed one JSON array per message (up to
  ``batch.max_changes`` entries or ``batch.max_delay_s``), for throughput.

Payloads: ``json`` is ``{"value": v, "quality": "GOOD", "substatus": "NONE", "ts": ns}``
(ts = source time, ns since the Unix epoch; substatus says why a value is not GOOD, e.g.
``NOT_CONNECTED``; it is the one the journal entry carries, written with the value,
never a newer one read from the slot); ``plain`` is the value alone (``true``, ``42``, ``1.5``),
for consumers that only want the number and accept not knowing its quality. A batch is
``[{"signal": s, "value": v, "quality": q, "substatus": sub, "ts": ns}, ...]``.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np

from petra.config._drivers import MqttConfig, PublishRule, topic_within
from petra.io import ConnectedProcess, IoLimits, MqttLink, describe, wait_or_stop
from petra.security import AuditLog, default_audit_file
from petra.shm import JournalConsumer, Segment
from petra.sinks._mqtt_commands import CommandPolicy, handle_command
from petra.types import (
    QUALITIES,
    SINK_MQTT_OUT,
    SINK_PREFIX,
    SUBSTATUSES,
    AccessRole,
    Quality,
    SignalType,
    SinkCounter,
    Substatus,
)

log = logging.getLogger("petra.sinks.mqtt_out")
QUALITY_NAMES = tuple(q.name for q in QUALITIES)
SUBSTATUS_NAMES = tuple(s.name for s in SUBSTATUSES)
_GOOD = int(Quality.GOOD)
IDLE_POLL_S = 0.002
JOURNAL_BATCH = 4096

Message = tuple[str, bytes, int, bool]


def _fmt(value: float | int | bool) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else "null"
    return str(value)


class _Route:
    """Per-signal publishing state, resolved from the first matching rule."""

    __slots__ = ("batch", "deadband", "heartbeat", "json", "last_q", "last_raw", "last_sub",
                 "last_t", "last_v", "min_interval", "name", "pending", "qos", "retain",
                 "topic")

    def __init__(self, name: str, rule: PublishRule, prefix: str) -> None:
        self.name = name
        self.topic = rule.topic.format(prefix=prefix, signal=name,
                                       path=name.replace(".", "/"))
        self.qos = rule.qos
        self.retain = rule.retain
        self.json = rule.format == "json"
        self.deadband = rule.deadband
        self.min_interval = rule.min_interval_s
        self.batch = rule.batch
        self.heartbeat = rule.heartbeat_s
        self.last_v: float | None = None
        self.last_raw: float | int | bool | None = None
        self.last_q = -1
        self.last_sub = 0
        self.last_t = -math.inf
        self.pending: tuple[float | int | bool, int, int, int] | None = None

    def same(self, v: float | int | bool, q: int, sub: int) -> bool:
        """True when ``v``/``q``/``sub`` is what was last published (NaN equals NaN)."""
        last = self.last_raw
        return (q == self.last_q and sub == self.last_sub and last is not None
                and (last == v or (last != last and v != v)))  # noqa: PLR0124  # NaN


class MqttOutSink(ConnectedProcess):
    """Publishes journal changes; also serves the command topic when configured."""

    role_kind = SINK_PREFIX

    def __init__(self, cfg: MqttConfig, segment: Segment, *,
                 clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None, audit: AuditLog | None = None) -> None:
        super().__init__(SINK_MQTT_OUT, segment, IoLimits.from_config(cfg.retry, cfg.timeouts),
                         clock=clock, rng=rng, logger="petra.sinks")
        self.cfg = cfg
        self.prefix = cfg.topic_prefix.format(instance=segment.instance)
        self.status_topic = cfg.status_topic.format(prefix=self.prefix,
                                                    instance=segment.instance)
        self.batch_topic = cfg.batch.topic.format(prefix=self.prefix, instance=segment.instance)
        self.routes: list[_Route | None] = []
        for info in segment.signals:
            rule = next((r for r in cfg.publish
                         if any(fnmatch.fnmatchcase(info.name, pat) for pat in r.signals)), None)
            self.routes.append(None if rule is None else _Route(info.name, rule, self.prefix))
        self.cmd_topic: str | None = None
        self.policy: CommandPolicy | None = None
        if cfg.commands is not None:
            fmt = {"prefix": self.prefix, "instance": segment.instance}
            self.cmd_topic = cfg.commands.topic.format(**fmt)
            self.policy = CommandPolicy(
                cfg.commands.reply_topic.format(**fmt),
                (cfg.commands.reply_prefix or "").format(**fmt),
                cfg.commands.allow_get_all,
                {user: AccessRole.parse(role) for user, role in cfg.commands.roles.items()})
        self.audit = audit or AuditLog(default_audit_file(), instance=segment.instance)
        self.queue: deque[Message] = deque()
        self.inflight: dict[int, tuple[Message, float]] = {}
        self.batch_buf: list[str] = []
        self.batch_deadline = math.inf
        self.held: set[int] = set()  # slots with a value held by the minimum interval
        self.link: MqttLink | None = None
        self.connected = False
        self.consumer = JournalConsumer(segment, batch=JOURNAL_BATCH)
        self._types = [int(info.type) for info in segment.signals]
        self._lost_seen = 0
        self._dropped_logged = 0
        self._hb_routes = [(i, r) for i, r in enumerate(self.routes)
                           if r is not None and r.heartbeat]
        self._next_hb_check = 0.0
        self._sessions = 0  # broker connections made so far

    # ------------------------------------------------------------------ ConnectedProcess hooks
    def _endpoint(self) -> str:
        return f"{self.cfg.broker.host}:{self.cfg.broker.port}"

    def _background(self, stop: asyncio.Event) -> list[Coroutine[Any, Any, None]]:
        return [self._pump(stop)]

    async def _connect(self) -> None:
        b = self.cfg.broker
        cid = b.client_id or f"petra-{self.seg.instance}-mqtt-out"
        will = (self.status_topic, b"offline", 1, True)
        self.link = MqttLink(b, cid, will=will, max_inflight=self.cfg.max_inflight,
                             on_message=self._on_command, on_publish=self._on_publish,
                             on_error=self._command_failed)
        await self.link.connect()
        self.link.publish(self.status_topic, b"online", 1, True)
        if self.cmd_topic is not None and self.cfg.commands is not None:
            # <topic> for the '*' role, <topic>/<broker user> for each user's own
            self.link.subscribe([(self.cmd_topic, self.cfg.commands.qos),
                                 (f"{self.cmd_topic}/+", self.cfg.commands.qos)])
        # messages unacked on the previous connection go first, in their order
        for mid in sorted(self.inflight, reverse=True):
            self.queue.appendleft(self.inflight[mid][0])
        self.inflight.clear()
        self._snapshot()
        self.connected = True
        if self.tm[SinkCounter.DROPPED] != self._dropped_logged:
            self.log.warning("event=offline_queue_dropped dropped_total=%d",
                             self.tm[SinkCounter.DROPPED])
            self._dropped_logged = self.tm[SinkCounter.DROPPED]

    async def _close(self) -> None:
        self.connected = False
        link, self.link = self.link, None
        if link is not None:
            await link.close(final=(self.status_topic, b"offline", 1, True))

    async def _session(self, stop: asyncio.Event) -> None:
        assert self.link is not None
        try:
            await self.link.hold(stop)
        finally:
            self.connected = False

    # ------------------------------------------------------------------ pump
    async def _pump(self, stop: asyncio.Event) -> None:
        """Journal -> queue -> broker, for the whole life of the process."""
        while not stop.is_set():
            busy = False
            if not (self.connected and len(self.queue) >= self.cfg.offline_queue):
                busy = self._consume() or busy
            now = self.clock()
            if self.held:
                self._release_held(now)
            if self._hb_routes and now >= self._next_hb_check:
                self._heartbeats(now)
            if self.batch_buf and now >= self.batch_deadline:
                self._flush_batch()
            if self.connected and self.queue:
                busy = self._drain() or busy
            self.tm.set(SinkCounter.QUEUED, len(self.queue) + len(self.inflight))
            if busy:
                await asyncio.sleep(0)
            else:
                await wait_or_stop(stop, IDLE_POLL_S)

    def _consume(self) -> bool:
        batch = self.consumer.read()
        n = len(batch)
        self.tm.set(SinkCounter.JOURNAL_POSITION, self.consumer.position)
        if self.consumer.lost != self._lost_seen:
            missed = self.consumer.lost - self._lost_seen
            self._lost_seen = self.consumer.lost
            self.tm.inc(SinkCounter.DROPPED, missed)
            self.rlog(logging.WARNING, "journal_lost",
                      "event=journal_lost missed=%d total=%d", missed, self._lost_seen)
            self._resync()
            return True
        if n == 0:
            return False
        self._offer(batch.slot.tolist(), batch.type.tolist(),
                    batch.value.view(np.float64).tolist(), batch.value.view(np.int64).tolist(),
                    batch.quality.tolist(), batch.source_ts_ns.tolist(),
                    batch.substatus.tolist())
        return True

    def _snapshot(self) -> None:
        """Publish every routed signal's current value from the slots and follow the
        journal from there (at start and after every reconnect).

        A value equal to the one last emitted (queued or sent) is not emitted again:
        the pump follows the journal before the first connect too, so that value is
        already on its way (CI saw the level published twice, same source time). After
        a reconnect a retained route is published all the same: a broker that
        restarted without persistence has lost its retained copy."""
        self.consumer.resync()  # the journal from here on; the slots before it
        self.tm.set(SinkCounter.JOURNAL_POSITION, self.consumer.position)
        reconnect = self._sessions > 0
        self._sessions += 1
        now = self.clock()
        n = 0
        for slot, route in enumerate(self.routes):
            if route is None:
                continue
            smp = self.seg.read_index(slot)
            if smp.substatus == Substatus.INITIAL:  # never written: nothing to tell yet
                continue
            q, sub = int(smp.quality), int(smp.substatus)
            if route.same(smp.value, q, sub) and not (reconnect and route.retain):
                continue
            self.held.discard(slot)
            self._emit(route, smp.value, q, smp.source_ts_ns, now, sub)
            n += 1
        self.log.info("event=snapshot_published signals=%d", n)

    def _heartbeats(self, now: float) -> None:
        """Republish the current value of signals whose heartbeat interval passed with
        nothing published for them."""
        self._next_hb_check = now + 0.05
        for slot, route in self._hb_routes:
            if now - route.last_t >= route.heartbeat and slot not in self.held:
                smp = self.seg.read_index(slot)
                self._emit(route, smp.value, int(smp.quality), smp.source_ts_ns, now,
                           int(smp.substatus))

    def _resync(self) -> None:
        """After journal entries were lost, catch up from the slots themselves: every
        routed signal whose value or quality differs from what was last published is
        published again (the lost entries' batch is superseded by the snapshot)."""
        snap = self.consumer.resync()
        self.tm.set(SinkCounter.JOURNAL_POSITION, self.consumer.position)
        before = len(self.queue) + len(self.batch_buf)
        self._offer(list(range(len(snap.values))), self._types,
                    snap.values.view(np.float64).tolist(), snap.values.view(np.int64).tolist(),
                    snap.quality.tolist(), snap.source_ts_ns.tolist(), None)
        log.info("event=journal_resync republished=%d",
                 len(self.queue) + len(self.batch_buf) - before)

    def _offer(  # noqa: PLR0917  # the columns of one journal batch
        self, slots: list[int], types: list[int], vf: list[float], vi: list[int],
        quals: list[int], ts: list[int], subs: list[int] | None, *, force: bool = False,
    ) -> None:
        """Publish what the rules let through: nothing equal to what was last published
        (value, quality and substatus), deadband, minimum interval; with ``force``
        (the snapshot on connect) every routed signal, rules aside. ``subs``: each
        entry's substatus, as the journal entry carries it (written with the value);
        None for a snapshot of the slots, whose substatus is then read from the slot
        (a not-GOOD one: GOOD has none)."""
        routes = self.routes
        now = self.clock()
        for k in range(len(slots)):
            route = routes[slots[k]]
            if route is None:
                continue
            t = types[k]
            v: float | int | bool = (vf[k] if t == SignalType.FLOAT
                                     else vi[k] if t == SignalType.INT else vi[k] == 1)
            q = quals[k]
            if subs is not None:
                sub = subs[k]
            else:
                sub = 0 if q == _GOOD else int(self.seg.read_index(slots[k]).substatus)
            if force:
                self._emit(route, v, q, ts[k], now, sub)
                continue
            if route.same(v, q, sub):
                continue
            if (route.deadband and q == route.last_q and route.last_v is not None
                    and abs(float(v) - route.last_v) < route.deadband):
                continue
            if route.min_interval and now - route.last_t < route.min_interval:
                route.pending = (v, q, ts[k], sub)
                self.held.add(slots[k])
                continue
            self._emit(route, v, q, ts[k], now, sub)

    def _emit(self, route: _Route, v: float | int | bool, q: int, ts: int, now: float,  # noqa: PLR0917
              sub: int = 0) -> None:
        route.last_v = float(v)
        route.last_raw = v
        route.last_q = q
        route.last_sub = sub
        route.last_t = now
        route.pending = None
        if route.batch:
            self.batch_buf.append(f'{{"signal":"{route.name}","value":{_fmt(v)},'
                                  f'"quality":"{QUALITY_NAMES[q]}",'
                                  f'"substatus":"{SUBSTATUS_NAMES[sub]}","ts":{ts}}}')
            if len(self.batch_buf) == 1:
                self.batch_deadline = now + self.cfg.batch.max_delay_s
            if len(self.batch_buf) >= self.cfg.batch.max_changes:
                self._flush_batch()
            return
        if route.json:
            payload = (f'{{"value":{_fmt(v)},"quality":"{QUALITY_NAMES[q]}",'
                       f'"substatus":"{SUBSTATUS_NAMES[sub]}","ts":{ts}}}')
        else:
            payload = _fmt(v)
        self._enqueue((route.topic, payload.encode(), route.qos, route.retain))

    def _release_held(self, now: float) -> None:
        for slot in list(self.held):
            route = self.routes[slot]
            assert route is not None
            if route.pending is None:
                self.held.discard(slot)
            elif now - route.last_t >= route.min_interval:
                v, q, ts, sub = route.pending
                self.held.discard(slot)
                self._emit(route, v, q, ts, now, sub)

    def _flush_batch(self) -> None:
        payload = ("[" + ",".join(self.batch_buf) + "]").encode()
        self.batch_buf = []
        self.batch_deadline = math.inf
        self._enqueue((self.batch_topic, payload, self.cfg.batch.qos, False))

    def _enqueue(self, msg: Message) -> None:
        q = self.queue
        if len(q) >= self.cfg.offline_queue:
            q.popleft()
            self.tm.inc(SinkCounter.DROPPED)
            self.rlog(logging.WARNING, "queue_full",
                      "event=offline_queue_full capacity=%d dropped_total=%d",
                      self.cfg.offline_queue, self.tm[SinkCounter.DROPPED])
        q.append(msg)

    def _drain(self) -> bool:
        link = self.link
        if link is None:
            return False
        q = self.queue
        cap = self.cfg.max_inflight
        sent = 0
        published = self.tm.counters
        while q and sent < 2048:
            if link.write_blocked:
                break
            msg = q[0]
            if msg[2] and len(self.inflight) >= cap:
                break
            info = link.publish(*msg)
            if info.rc:  # not connected any more: keep it for the next connection
                self.tm.inc(SinkCounter.ERRORS)
                break
            q.popleft()
            if msg[2]:
                self.inflight[info.mid] = (msg, time.perf_counter())
            published[SinkCounter.PUBLISHED] += 1
            sent += 1
        return sent > 0

    def _on_publish(self, mid: int) -> None:
        self.inflight.pop(mid, None)

    # ------------------------------------------------------------------ commands
    def _command_failed(self, exc: BaseException) -> None:
        """A command the handler did not expect: counted and logged, never fatal."""
        self.tm.inc(SinkCounter.REJECTED)
        self.rlog(logging.WARNING, "cmd_failed", "event=command_rejected reason=%r",
                  describe(exc))

    def _on_command(self, client: Any, userdata: Any, msg: Any) -> None:
        if self.cmd_topic is None or self.policy is None:
            return
        topic = str(msg.topic)
        if topic == self.cmd_topic:
            sender = None
        elif topic.startswith(self.cmd_topic + "/") and not topic_within(
                topic, self.policy.replies_under):
            sender = topic[len(self.cmd_topic) + 1:]  # the broker user (ACL: %u)
        else:
            return  # our own replies, or nothing of ours
        if msg.retain:
            # The broker replays a retained command on every subscribe: acting on it
            # would repeat an old "set" after each reconnect. Counted, logged, unanswered.
            self.tm.inc(SinkCounter.REJECTED)
            self.rlog(logging.WARNING, "cmd_retained",
                      "event=command_ignored reason=retained topic=%s", topic)
            return
        reply = handle_command(self.seg, bytes(msg.payload), self.policy, audit=self.audit,
                               sender=sender)
        if not reply.ok:
            self.tm.inc(SinkCounter.REJECTED)
            self.rlog(logging.WARNING, "cmd_rejected", "event=command_rejected reason=%r",
                      reply.reason)
        if self.link is not None:
            self.link.publish(reply.topic, reply.payload, 1, False)
