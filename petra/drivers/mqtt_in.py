"""MQTT in: broker messages on subscribed topics become signal values.

Each subscription is a topic filter (``+`` and ``#`` allowed) and a signal, literal or
a template whose ``{1}``, ``{2}``... are the topic levels the wildcards matched. The
payload is either plain text (``23.5``, ``true``, ``42``) or JSON, optionally with a
dotted path to the value (``data.value``, ``readings.0``); JSON without a path takes
the whole document, or its ``value`` key when it is an object.

A payload is checked against the signal's type before anything is written: a string
where a number is expected, a fraction for an int signal, 2 for a bool, NaN, a missing
JSON path, an unknown templated signal are all counted (REJECTED) and logged with the
topic and reason (rate-limited per topic), never written.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import time
from collections.abc import Callable
from typing import Any

from petra.config._drivers import BrokerConfig, MqttInConfig, MqttSubscription
from petra.drivers._common import DriverBase
from petra.errors import ConfigError, SignalError
from petra.io import IoLimits, MqttLink, describe
from petra.shm import Segment
from petra.types import DriverCounter, SignalType, Value, coerce_value

_TRUE = {"true", "on", "1", "yes"}
_FALSE = {"false", "off", "0", "no"}


class PayloadError(ValueError):
    """A payload that does not give a value of the signal's type."""


def match_levels(filt: str, topic: str) -> list[str] | None:
    """The levels matched by the wildcards of ``filt`` in ``topic``, or None."""
    f = filt.split("/")
    t = topic.split("/")
    out: list[str] = []
    for i, lvl in enumerate(f):
        if lvl == "#":
            out.append("/".join(t[i:]))
            return out
        if i >= len(t):
            return None
        if lvl == "+":
            out.append(t[i])
        elif lvl != t[i]:
            return None
    return out if len(t) == len(f) else None


def _walk(doc: Any, path: str) -> Any:
    cur = doc
    for part in path.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.lstrip("-").isdigit() and -len(cur) <= int(
                part) < len(cur):
            cur = cur[int(part)]
        else:
            raise PayloadError(f"JSON path {path!r} not found (at {part!r})")
    return cur


def parse_payload(payload: bytes, sub: MqttSubscription, sig_type: SignalType) -> Value:
    """Decode and type-check one payload for a signal of ``sig_type``."""
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise PayloadError("payload is not UTF-8") from None
    raw: Any
    if sub.format == "json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PayloadError(f"invalid JSON: {exc.msg} at char {exc.pos}") from None
        if sub.json_path:
            raw = _walk(doc, sub.json_path)
        elif isinstance(doc, dict) and "value" in doc:
            raw = doc["value"]
        else:
            raw = doc
        if isinstance(raw, str) or raw is None or isinstance(raw, dict | list):
            raise PayloadError(f"JSON value {raw!r} is not a {sig_type.name.lower()}")
    else:
        if not text:
            raise PayloadError("empty payload")
        raw = _plain(text, sig_type)
    if isinstance(raw, float) and not math.isfinite(raw):
        raise PayloadError(f"{raw} is not a finite number")
    try:
        return coerce_value(sig_type, raw)
    except SignalError as exc:
        raise PayloadError(str(exc)) from None


def _plain(text: str, sig_type: SignalType) -> Any:
    low = text.lower()
    if sig_type == SignalType.BOOL:
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise PayloadError(f"{text[:32]!r} is not a bool (true/false, on/off, 1/0)")
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise PayloadError(f"{text[:32]!r} is not a number") from None


class MqttInDriver(DriverBase):
    """Subscribes to the configured topics and writes what arrives."""

    def __init__(self, cfg: MqttInConfig, segment: Segment, *,
                 broker_default: BrokerConfig | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        super().__init__(cfg.name, segment, IoLimits.from_config(cfg.retry, cfg.timeouts),
                         clock=clock, rng=rng)
        self.cfg = cfg
        broker = cfg.broker or broker_default
        if broker is None:
            raise ConfigError(f"driver {cfg.name!r}: no broker: and no mqtt.broker to use",
                              key_path=f"drivers.{cfg.name}.broker")
        self.broker = broker
        for i, sub in enumerate(cfg.subscriptions):
            if not sub.is_template:
                segment.index(sub.signal)  # unknown signal: fail at start, not per message
            elif "{0}" in sub.signal:
                raise ConfigError("templates count wildcard levels from {1}",
                                  key_path=f"subscriptions.{i}.signal")
        self._seen: set[int] = {segment.index(s.signal) for s in cfg.subscriptions
                                if not s.is_template}
        self.link: MqttLink | None = None

    def _endpoint(self) -> str:
        return f"{self.broker.host}:{self.broker.port}"

    def _read_indices(self) -> list[int]:
        return sorted(self._seen)

    async def _connect(self) -> None:
        cid = self.broker.client_id or f"petra-{self.seg.instance}-{self.name}"
        self.link = MqttLink(self.broker, cid, max_inflight=100, on_error=self._handler_failed)
        for sub in self.cfg.subscriptions:
            self.link.on_topic(sub.topic, self._handler(sub))
        await self.link.connect()
        self.link.subscribe([(s.topic, s.qos) for s in self.cfg.subscriptions])

    async def _close(self) -> None:
        link, self.link = self.link, None
        if link is not None:
            await link.close()

    async def _session(self, stop: asyncio.Event) -> None:
        assert self.link is not None
        await self.link.hold(stop)

    def _handler(self, sub: MqttSubscription) -> Callable[[Any, Any, Any], None]:
        def on_message(client: Any, userdata: Any, msg: Any) -> None:
            self._on_message(sub, msg.topic, bytes(msg.payload))
        return on_message

    def _on_message(self, sub: MqttSubscription, topic: str, payload: bytes) -> None:
        name = sub.signal
        if sub.is_template:
            levels = match_levels(sub.topic, topic) or []
            try:
                name = sub.signal.format("", *levels)
            except (IndexError, KeyError, ValueError):
                self._rejected(topic, payload, sub.signal, "template needs more wildcards")
                return
        if name not in self.seg:
            self._rejected(topic, payload, name, "no such signal")
            return
        idx = self.seg.index(name)
        try:
            value = parse_payload(payload, sub, self.port.types[idx])
        except PayloadError as exc:
            self._rejected(topic, payload, name, str(exc))
            return
        self.port.put(idx, value)
        self._seen.add(idx)
        self.tm.inc(DriverCounter.READS)

    def _handler_failed(self, exc: BaseException) -> None:
        """A message the handler did not expect: counted and logged, never fatal."""
        self.tm.inc(DriverCounter.REJECTED)
        self.rlog(logging.WARNING, "handler_failed",
                  "event=payload_rejected driver=%s reason=%r", self.name, describe(exc))

    def _rejected(self, topic: str, payload: bytes, signal: str, reason: str) -> None:
        self.tm.inc(DriverCounter.REJECTED)
        self.rlog(logging.WARNING, f"reject:{topic}",
                  "event=payload_rejected driver=%s topic=%s signal=%s reason=%r payload=%r",
                  self.name, topic, signal, reason, payload[:64])
