"""MQTT in: broker messages on subscribed topics become signal values.

Each subscription is a topic filter (``+`` and ``#`` allowed) and a signal, literal or
a template whose ``{1}``, ``{2}``... are the topic levels the wildcards matched. A
template writes only the signals listed in its ``signals:`` (the allow-list ``petra
check`` verifies); a topic that resolves to any other name is refused. The payload is
either plain text (``23.5``, ``true``, ``42``) or JSON, optionally with a dotted path to
the value (``data.value``, ``readings.0``); JSON without a path takes the whole
document, or its ``value`` key when it is an object.

Hostile input
-------------
Anyone who can publish to the broker reaches this code, so every step is bounded and
every failure is a counted refusal, never an exception into paho:

- payloads over :data:`MAX_PAYLOAD_BYTES` are refused before decoding;
- numbers are parsed by :mod:`petra.io._input`: at most 40 characters before any
  conversion (``1`` and 400 zeros, a 5000-digit JSON integer), JSON at most 32 levels
  deep (``[`` x 100,000), ASCII notation only;
- a payload that is not a value of the signal's type (a string for a number, a fraction
  for an int, 2 for a bool, a missing JSON path, a name outside the allow-list) is
  refused: counted (REJECTED), logged, never written;
- a number that is one but does not suit the signal (NaN or infinity unless allowed,
  outside min/max, beyond int64) follows the device-value rule of
  :mod:`petra.drivers._common`: written BAD/OUT_OF_RANGE, counted;
- anything else a handler raises is caught by :class:`petra.io.MqttLink`'s guard,
  counted and logged: the next message is handled as if nothing happened.

Log lines about refusals are rate-limited per subscription (a bounded set of keys,
whatever topics arrive), one line per kind per interval with the suppressed count.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Callable
from typing import Any

from petra.config._drivers import BrokerConfig, MqttInConfig, MqttSubscription
from petra.drivers._common import DriverBase
from petra.errors import ConfigError
from petra.io import InputError, IoLimits, MqttLink, describe, parse_json, parse_number
from petra.io._input import show
from petra.shm import Segment
from petra.types import DriverCounter, SignalType

MAX_PAYLOAD_BYTES = 64 * 1024
_TRUE = {"true", "on", "1", "yes"}
_FALSE = {"false", "off", "0", "no"}

Raw = bool | int | float


class PayloadError(InputError):
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
        elif (isinstance(cur, list) and part.lstrip("-").isdecimal() and len(part) < 10
              and -len(cur) <= int(part) < len(cur)):
            cur = cur[int(part)]
        else:
            raise PayloadError(f"JSON path {path!r} not found (at {part!r})")
    return cur


def parse_payload(payload: bytes, sub: MqttSubscription, sig_type: SignalType) -> Raw:
    """Decode one payload into a value of ``sig_type``'s kind, or raise PayloadError.

    The result is type-correct (a bool for a bool signal, an int for an int signal, a
    number for a float signal) but not yet judged against the signal's limits: a NaN,
    an infinity or an int beyond int64 come back as they are, for the device-value rule
    to mark BAD."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadError(f"payload of {len(payload)} bytes (at most {MAX_PAYLOAD_BYTES})")
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise PayloadError("payload is not UTF-8") from None
    raw: Any
    if sub.format == "json":
        try:
            doc = parse_json(text)
        except InputError as exc:
            raise PayloadError(str(exc)) from None
        if sub.json_path:
            raw = _walk(doc, sub.json_path)
        elif isinstance(doc, dict) and "value" in doc:
            raw = doc["value"]
        else:
            raw = doc
    else:
        if not text:
            raise PayloadError("empty payload")
        raw = _plain(text, sig_type)
    return _of_type(raw, sig_type)


def _plain(text: str, sig_type: SignalType) -> Raw:
    if sig_type == SignalType.BOOL:
        low = text.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise PayloadError(f"{show(text)} is not a bool (true/false, on/off, 1/0)")
    try:
        return parse_number(text)
    except InputError as exc:
        raise PayloadError(str(exc)) from None


def _of_type(raw: object, sig_type: SignalType) -> Raw:
    """``raw`` as a value of the signal type's kind; PayloadError when it is not one."""
    kind = sig_type.name.lower()
    if sig_type == SignalType.BOOL:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, int) and raw in (0, 1):
            return bool(raw)
    elif isinstance(raw, float):
        if sig_type == SignalType.FLOAT or not math.isfinite(raw):
            return raw  # a non-finite int reading is BAD by the device rule, not refused
        if raw.is_integer():
            return int(raw)
    elif isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    shown = (show(raw) if isinstance(raw, str)
             else repr(raw) if isinstance(raw, int | float) else type(raw).__name__)
    raise PayloadError(f"{shown} is not of type {kind}")


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
        # per subscription: the signal names it may write -> slot (checked at start)
        self.allowed: list[dict[str, int]] = []
        for i, sub in enumerate(cfg.subscriptions):
            names = sub.signals if sub.is_template else [sub.signal]
            if sub.is_template and not names:
                raise ConfigError(f"template {sub.signal!r} lists no signals: it may write",
                                  key_path=f"drivers.{cfg.name}.subscriptions.{i}.signals")
            self.allowed.append({n: self._own_signal(n, i) for n in names or ()})
        self._seen: set[int] = {slot for i, sub in enumerate(cfg.subscriptions)
                                if not sub.is_template for slot in self.allowed[i].values()}
        self.link: MqttLink | None = None

    def _own_signal(self, name: str, i: int) -> int:
        """The slot of a signal this driver may write; a signal the segment says
        another process owns is refused at start, whatever the config says."""
        where = f"drivers.{self.cfg.name}.subscriptions.{i}"
        if name not in self.seg:
            raise ConfigError(f"no signal named {name!r} in the segment", key_path=where)
        info = self.seg.info_of(name)
        if info.owner and info.owner != self.role:
            raise ConfigError(f"signal {name!r} belongs to {info.owner!r}, not {self.role!r}",
                              key_path=where)
        return info.index

    def _endpoint(self) -> str:
        return f"{self.broker.host}:{self.broker.port}"

    def _read_indices(self) -> list[int]:
        return sorted(self._seen)

    async def _connect(self) -> None:
        cid = self.broker.client_id or f"petra-{self.seg.instance}-{self.name}"
        self.link = MqttLink(self.broker, cid, max_inflight=100, on_error=self._handler_failed,
                             clean_start=self.cfg.clean_start,
                             session_expiry_s=self.cfg.session_expiry_s)
        for i, sub in enumerate(self.cfg.subscriptions):
            self.link.on_topic(sub.topic, self._handler(i))
        await self.link.connect()
        self.link.subscribe([(s.topic, s.qos) for s in self.cfg.subscriptions])

    async def _close(self) -> None:
        link, self.link = self.link, None
        if link is not None:
            await link.close()

    async def _session(self, stop: asyncio.Event) -> None:
        assert self.link is not None
        await self.link.hold(stop)

    def _handler(self, i: int) -> Callable[[Any, Any, Any], None]:
        def on_message(client: Any, userdata: Any, msg: Any) -> None:
            self.on_payload(i, msg.topic, bytes(msg.payload))
        return on_message

    def on_payload(self, i: int, topic: str, payload: bytes) -> bool:
        """Handle one message of subscription ``i``; True when it was written GOOD."""
        sub = self.cfg.subscriptions[i]
        name = sub.signal
        if sub.is_template:
            levels = match_levels(sub.topic, topic)
            if levels is None:
                return self._rejected(i, topic, payload, name, "topic does not match")
            name = sub.signal.format("", *levels)
        idx = self.allowed[i].get(name)
        if idx is None:
            return self._rejected(i, topic, payload, name,
                                  "not among the signals this subscription may write")
        try:
            value = parse_payload(payload, sub, self.port.types[idx])
        except PayloadError as exc:
            return self._rejected(i, topic, payload, name, str(exc))
        self._seen.add(idx)
        self.tm.inc(DriverCounter.READS)
        return self.store(idx, value)

    def _handler_failed(self, exc: BaseException) -> None:
        """A message the handler did not expect: counted and logged, never fatal."""
        self.tm.inc(DriverCounter.REJECTED)
        self.rlog(logging.WARNING, "handler_failed",
                  "event=payload_rejected driver=%s reason=%r", self.name, describe(exc))

    def _rejected(self, i: int, topic: str, payload: bytes, signal: str, reason: str) -> bool:
        self.tm.inc(DriverCounter.REJECTED)
        self.rlog(logging.WARNING, f"reject:{i}",
                  "event=payload_rejected driver=%s topic=%s signal=%s reason=%r payload=%s",
                  self.name, show(topic), show(signal), reason, show(payload))
        return False
