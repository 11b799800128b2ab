"""The alarm manager process: journal and slots -> conditions -> state machine ->
event log -> operators, MQTT, history, Twilio.

One asyncio loop; every task belongs to the :class:`~petra.io.ConnectedProcess` task
group::

    evaluation   every period_s: read the journal (peaks, write times) and the slots,
                 evaluate every condition, run the state machine, take operator
                 requests from the spool, advance escalations; append the events and
                 fsync them; only then answer requests, hand jobs to the sender,
                 publish, write state signals
    sender       runs notification jobs on worker threads (at most ``concurrency`` at
                 once); results come back to the next evaluation pass
    mqtt         its own connect / publish / back off loop (when the plant has mqtt:)
    status       once a second: heartbeat counters, status.json, periodic snapshot

The "connection" of the connected process is the event log: opening it replays the
state; a write that fails (disk full) drops the connection, and the reconnect replays
the log again, so memory never runs ahead of what is on disk.

Every operator request, allowed or refused, is also appended to the plant's
hash-chained audit log (``petra.security.AuditLog``), after the event log is durable.

Nothing outside waits on anything slow: Twilio calls run on threads, the MQTT link has
its own queue, the spool is files. The evaluation pass is numpy over all alarms plus
Python for what changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections.abc import Callable, Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from petra.alarms._commands import CommandPolicy, Prepared, Refused, ReplyTo, prepare
from petra.alarms._conditions import Conditions
from petra.alarms._engine import AlarmEngine
from petra.alarms._log import Chunk, EventLog
from petra.alarms._metrics import AlarmMetrics
from petra.alarms._model import OP_PERMISSION, Action, ActionError, Event, parse_action
from petra.alarms._notify import Job, Notifier
from petra.alarms._outputs import MqttPublisher, write_json
from petra.alarms._states import ACTIVE, UNACKED, AlarmState
from petra.config._alarms import (
    AlarmsConfig,
    effective_definitions,
    list_file,
    spool_dir,
    state_signal_names,
    status_file,
)
from petra.config._drivers import topic_within
from petra.io import ConnectedProcess, IoLimits, RequestSpool, describe, wait_or_stop
from petra.io._spool import new_id
from petra.security import AuditError, AuditLog
from petra.shm import JournalConsumer, Segment, read_heartbeats
from petra.types import (
    SINK_ALARMS,
    SINK_PREFIX,
    AccessRole,
    AlarmCounter,
    ConnState,
    DriverCounter,
    ProcessState,
    Quality,
    driver_role,
)

log = logging.getLogger("petra.alarms")

NS = 1_000_000_000
STATUS_PERIOD_S = 1.0
SNAPSHOT_PERIOD_S = 60.0
SNAPSHOT_LINES = 50_000
LIST_PERIOD_S = 0.5
KEEP_REQUESTS = 1000
SPOOL_BATCH = 64
JOURNAL_BATCHES = 64
DRIVER_STALE_S = 3.0
MQTT_WAITING_MAX = 256  # MQTT commands received and not yet in the spool


def _loggable(value: Any, depth: int = 0) -> Any:
    """A request field as the event log may hold it: finite numbers, strings cut to a
    sane length, short lists; anything else as its (cut) text."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if abs(value) < 1 << 63 else str(value)[:40]
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return value[:512]
    if isinstance(value, list) and depth < 2:
        return [_loggable(v, depth + 1) for v in value[:10_000]]
    return repr(value)[:512]


def _submitted_ns(request_id: str) -> int:
    """The submission time in a spool request id (``<20-digit ns>-<pid>-<hex>``)."""
    try:
        return int(request_id.split("-", 1)[0])
    except ValueError:
        return 0


@dataclass(slots=True)
class _Pass:
    """One pass's results that wait for its lines to be durable."""

    now_ns: int
    mono: float
    events: list[Event]
    changed: set[int]
    answers: list[tuple[str, dict[str, Any]]]
    ready: list[Job]
    audit: list[dict[str, Any]]
    replies: list[tuple[str, bytes, bytes | None]]
    first: bool


class Sender(Protocol):
    """What sends one notification (``TwilioSender``; tests may pass their own)."""

    def send(self, channel: str, to: str, text: str) -> str: ...


class AlarmProcess(ConnectedProcess):
    """The alarm manager: see the module doc."""

    role_kind = SINK_PREFIX

    def __init__(self, config: Any, segment: Segment, base_dir: Path, *,
                 sender: Sender | None = None, audit: AuditLog | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall_ns: Callable[[], int] = time.time_ns) -> None:
        super().__init__(SINK_ALARMS, segment, IoLimits(), clock=clock, logger="petra.alarms")
        cfg: AlarmsConfig = config.alarms
        self.cfg = cfg
        self.plant = config
        self.dir = base_dir
        self.wall_ns = wall_ns
        self.defs = effective_definitions(config)
        self.spool = RequestSpool(spool_dir(base_dir))
        self.elog = EventLog(base_dir, fsync=cfg.fsync, rotate_bytes=cfg.log_rotate_bytes,
                             keep=cfg.log_keep)
        self._sender = sender
        self._sender_error = ""
        self.audit = audit
        self.audit_errors = 0
        self._to_audit: list[dict[str, Any]] = []
        self.mqtt: MqttPublisher | None = None
        self.commands: CommandPolicy | None = None
        self._submit_q: asyncio.Queue[tuple[str, Prepared]] = asyncio.Queue()
        self._refusals: list[Refused] = []
        self._replies: list[tuple[str, bytes, bytes | None]] = []
        self.mqtt_commands = 0
        self.mqtt_refused = 0
        self.mqtt_retained = 0
        self._setup_mqtt(getattr(config, "mqtt", None), segment.instance)
        self._build()
        self._connected_once = False
        self.opened = asyncio.Event()
        self._send_q: asyncio.Queue[Job] = asyncio.Queue()
        self._completions: list[tuple[str, int, bool, str, bool, str]] = []
        self._inflight: set[str] = set()
        self.consumer: JournalConsumer | None = None
        self.journal_lost = 0
        self.requests_handled = 0
        self.pass_ms_last = 0.0
        self.pass_ms_max = 0.0
        self.flush_ms_last = 0.0
        self.flush_ms_max = 0.0
        self._waiting: list[_Pass] = []
        self._flush_task: asyncio.Future[float] | None = None
        self._flush_error: BaseException | None = None
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alarm-log")
        self.passes = 0
        self._lines_since_snapshot = 0
        self._last_snapshot = 0.0
        self._list_dirty = True
        self._last_list = 0.0

    # ------------------------------------------------------------------ set-up
    def _setup_mqtt(self, mq: Any, instance: str) -> None:
        """The MQTT publisher, and the command topics when the plant has commands."""
        cfg = self.cfg
        if mq is not None and cfg.mqtt.enabled:
            commands = None
            if cfg.mqtt.commands and mq.commands is not None:
                fmt = {"prefix": mq.topic_prefix.format(instance=instance),
                       "instance": instance}
                self.commands = CommandPolicy(
                    cfg.mqtt.command_topic.format(**fmt), cfg.mqtt.reply_topic.format(**fmt),
                    {user: AccessRole.parse(role) for user, role in mq.commands.roles.items()})
                topic = self.commands.topic
                commands = ([topic, f"{topic}/+"], self._on_command)
            self.mqtt = MqttPublisher(mq, cfg.mqtt, instance, self._all_states,
                                      commands=commands)

    def _build(self) -> None:
        """Engine, conditions and notifier from the config (again on every reconnect:
        the state comes back from the log, never from memory)."""
        seg = self.seg
        units: dict[str, str] = {}
        groups: dict[str, str | None] = {}
        device_of = {d.driver: d.name for d in self.defs if d.type == "device"}
        for d in self.defs:
            if d.signal is not None and d.signal in seg:
                info = seg.info_of(d.signal)
                units[d.name] = info.unit
                owner = info.owner
                drv = owner.split(":", 1)[1] if owner.startswith("driver:") else None
                groups[d.name] = d.group or (device_of.get(drv) if drv else None)
            elif d.type == "device":
                groups[d.name] = d.group or d.name
            else:
                groups[d.name] = d.group
        self.metrics = AlarmMetrics(chatter_count=self.cfg.chattering.count,
                                    chatter_window_s=self.cfg.chattering.window_s,
                                    flood_per_10min=self.cfg.flood_per_10min)
        self.engine = AlarmEngine(self.defs, units=units, groups=groups,
                                  shelve_max_s=self.cfg.shelve_max_s, metrics=self.metrics)
        infos = seg.signals
        self.conditions = Conditions(self.defs, seg.index, lambda s: infos[s].owner,
                                     period_s=self.cfg.period_s)
        self._supp_signals = [d.suppress_when for d in self.defs]
        n = self.cfg.notifications
        self.notifier = Notifier(n, instance=seg.instance) if n is not None else None
        self.requests: dict[str, dict[str, Any]] = {}
        self._signals: list[tuple[int, int]] | None = None
        if self.cfg.state_signals:
            self._signals = []
            for d in self.defs:
                active, unacked = state_signal_names(d.name)
                self._signals.append((seg.index(active), seg.index(unacked)))
        self._written: list[tuple[bool, bool] | None] = [None] * len(self.defs)
        if self._signals:  # what the segment holds already need not be written again
            flat = [k for pair in self._signals for k in pair]
            vals, qual, _ = seg.read_batch_f64(flat)
            good = qual == int(Quality.GOOD)
            for i in range(len(self._signals)):
                if good[2 * i] and good[2 * i + 1]:
                    self._written[i] = (bool(vals[2 * i]), bool(vals[2 * i + 1]))
        self._first_pass = True

    def _endpoint(self) -> str:
        return str(self.dir)

    def _background(self, stop: asyncio.Event) -> list[Coroutine[Any, Any, None]]:
        tasks = [self._status_loop(stop), self._send_loop(stop)]
        if self.mqtt is not None:
            tasks.append(self.mqtt.run(stop))
        if self.commands is not None:
            tasks.append(self._submit_loop(stop))
        return tasks

    async def _connect(self) -> None:
        self.elog.close()
        if self._connected_once:  # a reconnect: the state comes back from the log only
            self._build()
        self._connected_once = True
        rep = self.elog.open()
        self.engine.restore(rep.state.get("alarm", {}))
        if self.notifier is not None:
            self.notifier.load(rep.state)
        self.requests = dict(rep.state.get("req", {}))
        metrics = rep.extra.get("metrics")
        if isinstance(metrics, dict):
            self.metrics.load(metrics)
        for doc in rep.tail:  # what happened after the snapshot counts too
            self._replay_metrics(doc)
        self.conditions.seed([r.cond for r in self.engine.records])
        self._seed_write_times()
        self.consumer = JournalConsumer(self.seg, batch=8192)
        self.spool.ensure()
        if self.notifier is not None and self._sender is None and not self._sender_error:
            self._make_sender()
        self._first_pass = True
        self._list_dirty = True
        self._inflight.clear()
        self.opened.set()
        log.info("event=alarms_open alarms=%d restored=%d snapshot_seq=%d replayed=%d "
                 "torn_bytes=%d bad_lines=%d dir=%s", len(self.defs),
                 len(rep.state.get("alarm", {})), rep.snapshot_seq, rep.lines,
                 rep.torn_bytes, rep.bad_lines, self.dir)

    def _make_sender(self) -> None:
        from petra.alarms._twilio import TwilioSender, read_token

        assert self.cfg.notifications is not None
        tw = self.cfg.notifications.twilio
        try:
            self._sender = TwilioSender(tw, read_token(tw))
        except Exception as exc:  # evaluation goes on; every job fails, counted
            self._sender_error = describe(exc)
            log.error("event=alarm_notifications_unavailable error=%s", self._sender_error)

    def _seed_write_times(self) -> None:
        slots = self.conditions.slots[self.conditions.stale_positions].tolist()
        self.conditions.seed_writes({s: self.seg.read_index(s).write_ts_ns for s in slots})

    def _replay_metrics(self, doc: dict[str, Any]) -> None:
        if doc.get("event") != "transition":
            return
        t = doc.get("time_ns")
        if not isinstance(t, int):
            return
        if doc.get("to_state") == "unack" and doc.get("from_state") in (
                "normal", "rtn_unack", "latched"):
            self.metrics.raised(str(doc.get("alarm")), t)
        elif doc.get("trigger") == "ack":
            rec = (doc.get("put") or {}).get("alarm", {}).get(doc.get("alarm"), {})
            if isinstance(rec, dict) and isinstance(rec.get("raised_ns"), int):
                self.metrics.acked(rec["raised_ns"], t)

    async def _close(self) -> None:
        await self._drain_writes()
        if self.elog.is_open and self._quiet():
            try:
                self._snapshot()
            except OSError as exc:
                log.warning("event=alarm_snapshot_failed error=%s", exc.strerror)
        self.elog.close()
        self.opened.clear()

    # ------------------------------------------------------------------ evaluation
    async def _session(self, stop: asyncio.Event) -> None:
        period = self.cfg.period_s
        due = self.clock()
        while not stop.is_set():
            if self._flush_error is not None:  # the disk failed: reconnect and replay
                err, self._flush_error = self._flush_error, None
                raise err
            self._waiting.append(self._front())
            self._kick()
            due += period
            now = self.clock()
            if due < now:  # missed periods are skipped, never bursted
                due = now + period - ((now - due) % period)
            await wait_or_stop(stop, due - now)

    def run_pass(self) -> None:
        """One evaluation pass with its write, in line (tests and the bench; the
        process pipelines the write, see :meth:`_kick`)."""
        p = self._front()
        self.elog.flush()  # durable before anyone outside hears of it
        self._write_audit(p.audit)
        self._back(p)

    def _front(self) -> _Pass:
        """Evaluate, run the state machine, take requests and notifications; the lines
        are queued in the event log, and what must wait for them is returned."""
        t0 = time.perf_counter()
        now_ns = self.wall_ns()
        mono = self.clock()
        self._read_journal()
        self.evaluate(now_ns, mono)
        events, changed = self.engine.drain()
        self._log_events(events, now_ns)
        answers, more, touched = self._take_requests(now_ns)
        events += more
        changed |= touched
        self._take_refusals(now_ns)
        ready = self._notifications(now_ns)
        self._lines_since_snapshot += self.elog.pending
        audit, self._to_audit = self._to_audit, []
        replies, self._replies = self._replies, []
        first, self._first_pass = self._first_pass, False
        self.passes += 1
        ms = (time.perf_counter() - t0) * 1e3
        self.pass_ms_last = ms
        self.pass_ms_max = max(self.pass_ms_max, ms)
        return _Pass(now_ns, mono, events, changed, answers, ready, audit, replies, first)

    def _back(self, p: _Pass) -> None:
        """What a pass does outside once its lines are durable: answer, notify,
        publish, write state signals and the list."""
        for rid, result in p.answers:
            self.spool.answer(rid, result)
        if self.mqtt is not None:
            for topic, payload, corr in p.replies:
                self.mqtt.reply(topic, payload, corr)
        for job in p.ready:
            self._inflight.add(job.id)
            self._send_q.put_nowait(job)
        self._publish(p.events, p.changed)
        self._write_signals(range(len(self.defs)) if p.first else p.changed)
        if p.changed or p.answers:
            self._list_dirty = True
        mono = self.clock()
        if self._list_dirty and mono - self._last_list >= LIST_PERIOD_S:
            self._write_list(p.now_ns)
            self._last_list = mono
        if self._lines_since_snapshot >= SNAPSHOT_LINES and self._quiet():
            self._snapshot()

    # ------------------------------------------------------------------ the write pipeline
    # The event log's write and fsync (and the audit records after it) run on a worker
    # thread, so a slow disk never holds up evaluation: passes keep coming every
    # period, their lines queue, and each pass's outside effects (_back) run when its
    # lines are durable, in order. One write is in flight at a time; whatever queued
    # meanwhile goes in the next one.
    def _kick(self) -> None:
        if self._flush_task is not None or not self._waiting:
            return
        passes, self._waiting = self._waiting, []
        chunk = self.elog.take()
        audit = [rec for p in passes for rec in p.audit]
        if chunk is None and not audit:
            for p in passes:
                self._back(p)
            return
        # its own thread, not the default executor: Twilio sends hanging there must not
        # hold up the log
        task = asyncio.get_running_loop().run_in_executor(self._writer, self._durable, chunk,
                                                          audit)
        self._flush_task = task
        task.add_done_callback(lambda t: self._flushed(t, passes, chunk))

    def _durable(self, chunk: Chunk | None, audit: list[dict[str, Any]]) -> float:
        """On the worker thread: write and fsync the chunk, then the audit records."""
        t0 = time.perf_counter()
        if chunk is not None:
            self.elog.write_chunk(chunk)
        self._write_audit(audit)
        return (time.perf_counter() - t0) * 1e3

    def _flushed(self, task: asyncio.Future[float], passes: list[_Pass],
                 chunk: Chunk | None) -> None:
        self._flush_task = None
        if task.cancelled():
            self._flush_error = OSError("the event log write was cancelled")
            return
        exc = task.exception()
        if exc is not None:
            self.rlog(logging.ERROR, "elog", "event=alarm_log_write_failed error=%s",
                      describe(exc))
            self._flush_error = exc if isinstance(exc, Exception) else OSError(str(exc))
            return
        ms = task.result()
        self.flush_ms_last = ms
        self.flush_ms_max = max(self.flush_ms_max, ms)
        if chunk is not None:
            self.elog.written(chunk)
        try:
            for p in passes:
                self._back(p)
        except Exception as exc:  # on the loop's callback: the session raises it
            self._flush_error = exc
            return
        self._kick()

    def _quiet(self) -> bool:
        """Nothing queued or being written (a snapshot may be taken)."""
        return self._flush_task is None and not self._waiting and not self.elog.pending

    async def _drain_writes(self) -> None:
        """Let the write in flight finish, then write and act on what is queued."""
        task = self._flush_task
        if task is not None:
            with contextlib.suppress(Exception):
                await task
        if self._waiting and self.elog.is_open and self._flush_error is None:
            passes, self._waiting = self._waiting, []
            try:
                self.elog.flush()
                self._write_audit([rec for p in passes for rec in p.audit])
                for p in passes:
                    self._back(p)
            except OSError as exc:
                log.warning("event=alarm_log_write_failed error=%s", exc.strerror)
        self._waiting.clear()

    def evaluate(self, now_ns: int, mono: float) -> None:
        """Conditions of every alarm, and the state machine for what changed."""
        c = self.conditions
        if len(c.slots):
            values, quality, _ = self.seg.read_batch_f64(c.slots)
        else:
            values, quality = np.zeros(0), np.zeros(0, np.uint8)
        changes = c.evaluate(values, quality, mono, now_ns, self._drivers_up())
        eng = self.engine
        # A condition and its suppression that change in the same pass must not raise
        # the alarm for one pass: suppression that starts goes first (pump stops, flow
        # drops), suppression that ends goes last (the device is back and its values
        # are good again, the pump runs and the flow is back).
        supp = range(c.n) if self._first_pass else changes.suppression
        ending: list[int] = []
        for i in supp:
            reason = c.suppression_reason(i, self._supp_signals)
            if reason:
                eng.set_suppression(i, reason, now_ns)
            else:
                ending.append(i)
        for i in changes.cond:
            eng.set_condition(i, bool(c.cond[i]), now_ns, float(c.value[i]))
        for i in ending:
            eng.set_suppression(i, "", now_ns)
        eng.tick(now_ns)

    def _read_journal(self) -> None:
        consumer = self.consumer
        assert consumer is not None, "the event log is not open"
        for _ in range(JOURNAL_BATCHES):
            batch = consumer.read()
            if consumer.lost > self.journal_lost:
                missed = consumer.lost - self.journal_lost
                self.journal_lost = consumer.lost
                self.rlog(logging.WARNING, "journal_lost",
                          "event=journal_lost missed=%d total=%d", missed, self.journal_lost)
                consumer.resync()  # the slots are read anyway; peaks in between are lost
                self._seed_write_times()
                break
            if not len(batch):
                break
            self.conditions.take_journal(batch.slot, batch.values_f64(), batch.quality,
                                         batch.write_ts_ns)
        self.tm.set(AlarmCounter.JOURNAL_POSITION, consumer.position)

    def _drivers_up(self) -> dict[str, bool]:
        drivers = self.conditions.drivers
        if not drivers:
            return {}
        roles = {driver_role(d): d for d in drivers}
        up = dict.fromkeys(drivers, False)
        for hb in read_heartbeats(self.seg):
            name = roles.get(hb.role)
            if name is None:
                continue
            fresh = hb.age_ns() < DRIVER_STALE_S * NS
            if (fresh and hb.state in (ProcessState.RUNNING, ProcessState.DEGRADED)
                    and hb.counters[DriverCounter.STATE] == int(ConnState.UP)):
                up[name] = True
        return up

    # ------------------------------------------------------------------ operator requests
    def _take_requests(self, now_ns: int) -> tuple[list[tuple[str, dict[str, Any]]],
                                                    list[Event], set[int]]:
        """Operator requests from the spool, in order: each is logged (who, what,
        the answer), followed by the transitions it caused."""
        answers: list[tuple[str, dict[str, Any]]] = []
        events: list[Event] = []
        changed: set[int] = set()
        for req in self.spool.pending(SPOOL_BATCH):
            if req.id in self.requests:  # acted on before a restart: answer again
                answers.append((req.id, self.requests[req.id]))
                self._reply_mqtt(req.id, req.body, self.requests[req.id])
                continue
            body = {**(req.body or {}), "id": req.id}
            info = {k: body[k] for k in ("op", "user", "role", "via", "source")
                    if isinstance(body.get(k), str)}
            action: Action | None = None
            if req.body is None:
                result: dict[str, Any] = {"ok": False, "error": req.error}
            elif now_ns - _submitted_ns(req.id) > self.cfg.request_max_age_s * NS:
                result = {"ok": False, "error": "the request expired before it was handled "
                                                f"(older than {self.cfg.request_max_age_s:g} s)"}
            else:
                try:
                    action = parse_action(body)
                    result = self.engine.act(action, now_ns).to_json()
                except ActionError as exc:
                    result = {"ok": False, "error": str(exc)}
            self._request_line(req.id, now_ns, info, result, body)
            self._queue_audit(req.id, action, info, result)
            evs, chs = self.engine.drain()
            self._log_events(evs, now_ns)
            events += evs
            changed |= chs
            self.requests_handled += 1
            answers.append((req.id, result))
            self._remember(req.id, result)
            self._reply_mqtt(req.id, req.body, result)
        return answers, events, changed

    # ------------------------------------------------------------------ MQTT commands
    def _on_command(self, msg: Any) -> None:
        """One message on the command topics (on the loop thread, between passes): to
        the spool through the submitter, or refused at once. Never raises for what the
        message holds (``prepare`` does not), never blocks (the spool's fsync runs on a
        worker thread)."""
        policy = self.commands
        if policy is None:
            return
        ours, sender = policy.sender(str(msg.topic))
        if not ours:
            return
        if getattr(msg, "retain", False):
            # a retained command comes again from the broker on every subscribe: acting
            # on it would repeat an old ack or shelve after each reconnect
            self.mqtt_retained += 1
            self.rlog(logging.WARNING, "mqtt_command_retained",
                      "event=alarm_command_ignored reason=retained topic=%s", msg.topic)
            return
        self.mqtt_commands += 1
        props = getattr(msg, "properties", None)
        got = prepare(bytes(msg.payload), sender, policy,
                      response_topic=getattr(props, "ResponseTopic", None),
                      correlation=getattr(props, "CorrelationData", None))
        if isinstance(got, Prepared) and self._submit_q.qsize() >= MQTT_WAITING_MAX:
            got = Refused(got.reply, f"busy: {MQTT_WAITING_MAX} commands are waiting",
                          {k: str(got.body[k]) for k in ("user", "role", "via", "source")},
                          {})
        if isinstance(got, Refused):
            self._refuse(got)
        else:
            self._submit_q.put_nowait((new_id(), got))

    def _refuse(self, r: Refused) -> None:
        self.mqtt_refused += 1
        self._refusals.append(r)
        self.rlog(logging.WARNING, "mqtt_command_refused",
                  "event=alarm_command_refused user=%s error=%r", r.info.get("user", "?"),
                  r.error)

    async def _submit_loop(self, stop: asyncio.Event) -> None:
        """Hand prepared MQTT commands to the spool, one at a time and in the order
        they came (their ids sort that way), off the loop thread (a submit fsyncs)."""
        while not stop.is_set():
            getter = asyncio.ensure_future(self._submit_q.get())
            stopping = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({getter, stopping}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopping.cancel()
                if not getter.done():
                    getter.cancel()
            if not getter.done() or getter.cancelled():
                break
            rid, prep = getter.result()
            try:
                await asyncio.to_thread(self.spool.submit, prep.body, request_id=rid)
            except (OSError, ValueError) as exc:
                self._refuse(Refused(prep.reply, f"cannot queue the request: {describe(exc)}",
                                     {k: str(prep.body[k]) for k in ("user", "role", "via",
                                                                     "source")}, {}))

    def _take_refusals(self, now_ns: int) -> None:
        """MQTT commands refused before the spool: logged and audited like spool
        requests (under a fresh id), answered once the log is durable."""
        refusals, self._refusals = self._refusals, []
        for r in refusals:
            rid = new_id(now_ns)
            result = {"ok": False, "error": r.error}
            self._request_line(rid, now_ns, r.info, result, r.fields)
            self._queue_audit(rid, None, r.info, result)
            self._replies.append((r.reply.topic, r.reply.payload(result, rid),
                                  r.reply.correlation))

    def _reply_mqtt(self, rid: str, body: dict[str, Any] | None,
                    result: dict[str, Any]) -> None:
        """Queue the MQTT answer to a spool request that came by MQTT."""
        if self.mqtt is None or body is None or body.get("via") != "mqtt":
            return
        reply = ReplyTo.from_json(body.get("mqtt_reply"))
        if reply is not None and self.commands is not None and topic_within(
                reply.topic, self.commands.reply_topic):  # a file touched by hand: not elsewhere
            self._replies.append((reply.topic, reply.payload(result, rid), reply.correlation))


    def _queue_audit(self, rid: str, action: Action | None, info: dict[str, Any],
                     result: dict[str, Any]) -> None:
        """An audit record for the request, appended once the event log is durable."""
        if self.audit is None:
            return
        op = action.op if action is not None else str(info.get("op", ""))
        perm = OP_PERMISSION.get(op)
        rec: dict[str, Any] = {
            "action": perm.value if perm is not None else "alarm.request",
            "outcome": "ok" if result.get("ok") else "refused",
            "reason": result.get("error") or (action.reason or action.text if action else ""),
            "extra": {"request": rid, "op": op, "done": result.get("done"),
                      "skipped": result.get("skipped")}}
        if action is not None:
            rec["principal"] = action.principal
            rec["target"] = (",".join(action.alarms) if action.alarms
                             else f"area:{action.area}" if action.area is not None else "all")
        else:
            rec.update(principal=None, target="", user=str(info.get("user", "")),
                       via=str(info.get("via", "")), source=str(info.get("source", "")))
        self._to_audit.append(rec)

    def _write_audit(self, pending: list[dict[str, Any]]) -> None:
        """Append audit records (after the event log's fsync: the event log is the
        state, the audit chain its witness); a failure is logged and counted, never a
        reason to stop evaluating."""
        if self.audit is None:
            return
        for rec in pending:
            try:
                self.audit.append(rec.pop("principal"), rec.pop("action"), **rec)
            except AuditError as exc:
                self.audit_errors += 1
                self.rlog(logging.ERROR, "audit", "event=alarm_audit_failed error=%s", exc)

    def _request_line(self, rid: str, now_ns: int, info: dict[str, Any],
                      result: dict[str, Any], body: dict[str, Any]) -> None:
        doc: dict[str, Any] = {"time_ns": now_ns, "event": "request", "request": rid,
                               **{k: _loggable(v) for k, v in info.items()}}
        for key in ("alarms", "area", "all", "reason", "duration_s", "oneshot", "text"):
            if body.get(key) not in (None, "", [], False):
                doc[key] = _loggable(body[key])  # a refused request may hold anything
        doc.update({"ok": result.get("ok", False), "put": {"req": {rid: result}}})
        if result.get("error"):
            doc["error"] = result["error"]
            log.info("event=alarm_request_refused request=%s op=%s user=%s error=%r", rid,
                     info.get("op", "?"), info.get("user", "?"), result["error"])
        self.elog.append(doc)

    def _remember(self, rid: str, result: dict[str, Any]) -> None:
        self.requests[rid] = result
        while len(self.requests) > KEEP_REQUESTS:
            old = next(iter(self.requests))
            del self.requests[old]
            self.elog.append({"time_ns": self.wall_ns(), "event": "request_forgotten",
                              "request": old, "put": {"req": {old: None}}})

    # ------------------------------------------------------------------ events
    def _log_events(self, events: list[Event], now_ns: int) -> None:
        for ev in events:
            doc = ev.to_json()
            if ev.record is not None:
                doc["put"] = {"alarm": {ev.alarm: ev.record.to_json()}}
            self.elog.append(doc)
            if ev.event == "transition":
                log.info("event=alarm_%s alarm=%s from=%s to=%s occurrence=%d user=%s",
                         ev.trigger, ev.alarm, ev.from_state, ev.to_state, ev.occurrence,
                         ev.user or "-")
            if self.notifier is not None:
                info = self.engine.infos[self.engine.by_name[ev.alarm]]
                self.notifier.on_event(ev, info.defn.notify, now_ns, info.defn.equipment)

    def _notifications(self, now_ns: int) -> list[Job]:
        n = self.notifier
        if n is None:
            return []
        done, self._completions = self._completions, []
        for job_id, t, ok, error, retryable, sid in done:
            self._inflight.discard(job_id)
            n.done(job_id, t, ok=ok, error=error, retryable=retryable, sid=sid)
        n.tick(now_ns)
        room = 2 * self.cfg.notifications.concurrency if self.cfg.notifications else 0
        ready = n.take_ready(now_ns, max(0, room - len(self._inflight)))
        for line in n.drain():
            self.elog.append(line)
            st = line.get("status")
            if st in ("sent", "failed", "retry"):
                lvl = logging.WARNING if st != "sent" else logging.INFO
                log.log(lvl, "event=notification_%s alarm=%s contact=%s channel=%s "
                        "attempt=%s error=%r", st, line.get("alarm"), line.get("contact"),
                        line.get("channel"), line.get("attempt"), line.get("error", ""))
        return ready

    async def _send_loop(self, stop: asyncio.Event) -> None:
        """Run jobs on worker threads, ``concurrency`` at a time; results go back to
        the evaluation pass. Owns its tasks (a TaskGroup); ends on ``stop``."""
        conc = self.cfg.notifications.concurrency if self.cfg.notifications else 1
        slots = asyncio.Semaphore(conc)
        getter: asyncio.Task[Job] | None = None
        stopping = asyncio.ensure_future(stop.wait())
        try:
            async with asyncio.TaskGroup() as tg:
                while not stop.is_set():
                    getter = asyncio.ensure_future(self._send_q.get())
                    await asyncio.wait({getter, stopping}, return_when=asyncio.FIRST_COMPLETED)
                    if not getter.done():
                        getter.cancel()
                        break
                    job = getter.result()
                    await slots.acquire()
                    tg.create_task(self._send_one(job, slots), name=f"send:{job.id}")
        finally:
            stopping.cancel()
            if getter is not None:
                getter.cancel()

    async def _send_one(self, job: Job, slots: asyncio.Semaphore) -> None:
        from petra.alarms._twilio import SendError

        try:
            if self._sender is None:
                raise SendError(False, f"notifications unavailable: {self._sender_error}")
            sid = await asyncio.to_thread(self._sender.send, job.channel, job.to, job.text)
            self._completions.append((job.id, self.wall_ns(), True, "", False, sid))
        except SendError as exc:
            self._completions.append((job.id, self.wall_ns(), False, exc.text, exc.retryable,
                                      ""))
        except Exception as exc:  # a sender bug must not kill the process: counted, retried
            self._completions.append((job.id, self.wall_ns(), False, describe(exc), True, ""))
        finally:
            slots.release()

    # ------------------------------------------------------------------ outputs
    def _state_doc(self, i: int) -> dict[str, Any]:
        rec = self.engine.records[i]
        info = self.engine.infos[i]
        return {"state": rec.state.value, "priority": info.defn.priority,
                "area": info.defn.area, "since_ns": rec.since_ns,
                "occurrence": rec.occurrence, "message": rec.message,
                "cond": rec.cond}

    def _all_states(self) -> Iterable[tuple[str, dict[str, Any]]]:
        return [(info.name, self._state_doc(info.index)) for info in self.engine.infos]

    def _publish(self, events: list[Event], changed: Iterable[int]) -> None:
        if self.mqtt is None:
            return
        for ev in events:
            self.mqtt.event(ev.to_json())
        for i in sorted(changed):
            self.mqtt.state(self.engine.infos[i].name, self._state_doc(i))

    def _write_signals(self, which: Iterable[int]) -> None:
        if self._signals is None:
            return
        for i in which:
            s = self.engine.records[i].state
            want = (s in ACTIVE, s in UNACKED)
            if self._written[i] == want:
                continue
            a, u = self._signals[i]
            try:
                self.seg.write_index(a, want[0], Quality.GOOD)
                self.seg.write_index(u, want[1], Quality.GOOD)
                self._written[i] = want
            except Exception as exc:
                self.rlog(logging.WARNING, "state_signal",
                          "event=alarm_state_signal_failed alarm=%s error=%s",
                          self.engine.infos[i].name, describe(exc))

    def _write_list(self, now_ns: int) -> None:
        """The published list: every alarm that is not quietly normal (state other than
        normal, or its condition holds); the rest are normal and listed by the config."""
        recs = self.engine.records
        rows = [self.engine.row(i) for i in range(len(recs))
                if recs[i].state is not AlarmState.NORMAL or recs[i].cond]
        doc = {"time_ns": now_ns, "instance": self.seg.instance, "seq": self.elog.flushed_seq,
               "total": len(recs), "alarms": rows}
        try:
            write_json(list_file(self.dir), doc)
            self._list_dirty = False
        except OSError as exc:
            self.rlog(logging.WARNING, "list", "event=alarm_list_write_failed error=%s",
                      exc.strerror)

    def _snapshot(self) -> None:
        state: dict[str, dict[str, Any]] = {
            "alarm": {info.name: rec.to_json() for info in self.engine.infos
                      if not (rec := self.engine.records[info.index]).is_fresh()},
            "req": dict(self.requests)}
        if self.notifier is not None:
            state.update(self.notifier.state())
        self.elog.snapshot(state, {"metrics": self.metrics.to_json()})
        self._lines_since_snapshot = 0
        self._last_snapshot = self.clock()

    # ------------------------------------------------------------------ status
    def status(self) -> dict[str, Any]:
        now_ns = self.wall_ns()
        m = self.metrics
        m.expire(now_ns)
        counts = self.engine.counts(now_ns, self.cfg.standing_after_s)
        n = self.notifier
        return {
            "time": time.time(), "pid": os.getpid(), "instance": self.seg.instance,
            "alarms": len(self.defs), **counts,
            "per_10min": m.per_10min(now_ns), "flood": m.flood(now_ns),
            "flood_threshold": self.cfg.flood_per_10min,
            "chattering": m.chattering(), "mtta_s": m.mtta_s(),
            "raised_24h": m.raised_24h(), "bad_actors": m.bad_actors(),
            "notifications": dict(n.counters) if n is not None else {},
            "pending_jobs": len(n.jobs) if n is not None else 0,
            "escalations": len(n.escalations) if n is not None else 0,
            "notifications_available": n is not None and self._sender is not None,
            "journal_lost": self.journal_lost, "requests": self.requests_handled,
            "audit_errors": self.audit_errors,
            "pass_ms_last": self.pass_ms_last, "pass_ms_max": self.pass_ms_max,
            "write_ms_last": self.flush_ms_last, "write_ms_max": self.flush_ms_max,
            "passes": self.passes, "log_seq": self.elog.flushed_seq,
            "mqtt": None if self.mqtt is None else {
                "connected": self.mqtt.connected, "published": self.mqtt.published,
                "queued": len(self.mqtt.queue), "dropped": self.mqtt.dropped,
                "errors": self.mqtt.errors, "commands": self.mqtt_commands,
                "commands_refused": self.mqtt_refused,
                "commands_retained_ignored": self.mqtt_retained,
                "command_errors": self.mqtt.command_errors},
        }

    async def _status_loop(self, stop: asyncio.Event) -> None:
        while True:
            if self.opened.is_set():
                try:
                    self._publish_status()
                    if (self.clock() - self._last_snapshot >= SNAPSHOT_PERIOD_S
                            and self._quiet()):
                        self._snapshot()
                    self.spool.prune()
                except OSError as exc:  # a full disk must not stop the status loop
                    self.rlog(logging.WARNING, "status", "event=alarm_status_failed error=%s",
                              exc.strerror)
            if await wait_or_stop(stop, STATUS_PERIOD_S):
                break

    def _publish_status(self) -> None:
        doc = self.status()
        tm = self.tm
        tm.set(AlarmCounter.ACTIVE, doc["active"])
        tm.set(AlarmCounter.UNACKED, doc["unacked"])
        tm.set(AlarmCounter.HIDDEN, doc["hidden"])
        tm.set(AlarmCounter.PER_10MIN, doc["per_10min"])
        tm.set(AlarmCounter.STANDING, doc["standing"])
        tm.set(AlarmCounter.CHATTERING, len(doc["chattering"]))
        write_json(status_file(self.dir), doc)

    def _on_down(self) -> None:
        self.opened.clear()
