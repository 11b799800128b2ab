"""Where alarm events and states go besides the event log: MQTT, state signals in the
segment, and the two files front ends read (the alarm list and the status).

MQTT (when the plant has ``mqtt:``): every event is published on ``events_topic``
(QoS 1, not retained) and each alarm's current state, retained, on ``state_topic``; on
every (re)connection all states are published again, so a subscriber that joins late
or a broker that restarted without persistence still gets the whole picture. While the
broker is away messages wait in a bounded queue; past ``queue`` the oldest is dropped
and counted (the event log has everything).

State signals (``state_signals: true``): ``alarm.<name>.active`` and
``alarm.<name>.unacked``, written when they change; the history records them like any
other signal, so alarm states land in Parquet and ClickHouse next to the process values.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from petra.config._alarms import AlarmMqtt
from petra.config._drivers import MqttConfig
from petra.io import Backoff, IoLimits, MqttLink, describe, wait_or_stop

log = logging.getLogger("petra.alarms")

Message = tuple[str, bytes, int, bool, bytes | None]  # topic, payload, qos, retain, correlation


def write_json(path: Path, doc: Any) -> None:
    """Replace ``path`` atomically (temporary file, rename; no fsync: rewritten often)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, separators=(",", ":"), default=str), encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    """The document at ``path``, or None when missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


class MqttPublisher:
    """Alarm events and states to a broker, with its own reconnect loop."""

    def __init__(self, mqtt: MqttConfig, cfg: AlarmMqtt, instance: str,
                 states: Callable[[], Iterable[tuple[str, dict[str, Any]]]], *,
                 commands: tuple[list[str], Callable[[Any], None]] | None = None) -> None:
        self.mqtt = mqtt
        prefix = mqtt.topic_prefix.format(instance=instance)
        self.instance = instance
        self.events_topic = cfg.events_topic.format(prefix=prefix, instance=instance)
        self._state_topic = cfg.state_topic
        self._prefix = prefix
        self.qos = cfg.qos
        self.queue: deque[Message] = deque()
        self.capacity = cfg.queue
        self.dropped = 0
        self.published = 0
        self.errors = 0
        self.connected = False
        self._states = states
        self._commands = commands  # topic filters to subscribe, and their handler
        self.command_errors = 0
        self._wake = asyncio.Event()
        limits = IoLimits.from_config(mqtt.retry, mqtt.timeouts)
        self._limits = limits
        self._backoff = Backoff(limits)

    def state_topic(self, alarm: str) -> str:
        return self._state_topic.format(prefix=self._prefix, instance=self.instance,
                                        alarm=alarm)

    def _put(self, msg: Message) -> None:
        if len(self.queue) >= self.capacity:
            self.queue.popleft()
            self.dropped += 1
        self.queue.append(msg)
        self._wake.set()

    def event(self, doc: dict[str, Any]) -> None:
        self._put((self.events_topic, json.dumps(doc, separators=(",", ":"),
                                                 default=str).encode(), self.qos, False, None))

    def state(self, alarm: str, doc: dict[str, Any]) -> None:
        self._put((self.state_topic(alarm), json.dumps(doc, separators=(",", ":"),
                                                       default=str).encode(), self.qos, True,
                   None))

    def reply(self, topic: str, payload: bytes, correlation: bytes | None) -> None:
        """The answer to an alarm command (QoS 1, not retained)."""
        self._put((topic, payload, 1, False, correlation))

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, publish, reconnect with backoff; until ``stop``."""
        b = self.mqtt.broker
        cid = (b.client_id or f"petra-{self.instance}") + "-alarms"
        while not stop.is_set():
            link: MqttLink | None = None
            try:
                link = self._link(b, cid)
                await asyncio.wait_for(link.connect(), self._limits.connect_timeout_s)
                if self._commands is not None:  # on every connect (clean session)
                    link.subscribe([(f, 1) for f in self._commands[0]])
                self._backoff.reset()
                self.connected = True
                log.info("event=alarm_mqtt_connected endpoint=%s:%d", b.host, b.port)
                for alarm, doc in self._states():  # the whole picture on every connect
                    self.state(alarm, doc)
                await self._pump(link, stop)
            except Exception as exc:
                self.errors += 1
                log.warning("event=alarm_mqtt_down endpoint=%s:%d error=%s", b.host, b.port,
                            describe(exc))
            finally:
                self.connected = False
                if link is not None:
                    try:
                        await link.close()
                    except Exception as exc:
                        log.debug("event=alarm_mqtt_close_failed error=%s", describe(exc))
            if not stop.is_set():
                await wait_or_stop(stop, self._backoff.next_delay())

    def _link(self, broker: Any, cid: str) -> MqttLink:
        if self._commands is None:
            return MqttLink(broker, cid)
        filters, handler = self._commands
        link = MqttLink(broker, cid, on_error=self._command_failed)
        for f in filters:
            link.on_topic(f, lambda _c, _u, msg: handler(msg))
        return link

    def _command_failed(self, exc: BaseException) -> None:
        """A command handler bug: counted and logged, the link goes on."""
        self.command_errors += 1
        log.warning("event=alarm_command_failed error=%s", describe(exc))

    async def _pump(self, link: MqttLink, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if link.lost.is_set():
                raise ConnectionError("broker connection lost")
            while self.queue and not link.write_blocked:
                topic, payload, qos, retain, corr = self.queue[0]
                info = link.publish(topic, payload, qos, retain, correlation=corr)
                if info.rc:
                    raise ConnectionError(f"publish refused (rc {info.rc})")
                self.queue.popleft()
                self.published += 1
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.2)
