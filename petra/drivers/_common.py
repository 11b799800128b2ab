"""What every field driver shares: limits, backoff, telemetry, the signal port, the
write follower, and the connect / run / back off loop.

Process model
-------------
A driver is one process with one asyncio loop and one connection (a Modbus gateway,
an S7 CPU, an MQTT broker). :class:`DriverBase.run` is the state machine::

    DISCONNECTED -> CONNECTING --ok--> UP --connection lost--> BACKOFF
                        |                                        |
                        +--------------failed------------------> BACKOFF -> CONNECTING

BACKOFF waits an exponentially growing, jittered delay (never zero: the config refuses a
zero delay, so a dead device can never turn into a busy loop). Entering BACKOFF marks
every signal the driver reads BAD with substatus NOT_CONNECTED, keeping the last value;
the first good read after reconnecting writes them GOOD again.

Writes from the plant
---------------------
The scan or an operator writes a signal mapped for writing; the driver sees it in the
change journal (:class:`WriteFollower`). Entries written by the driver itself (same
writer id) and BAD-quality entries are ignored; repeated writes of one signal coalesce
to the latest value before they reach the device.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from petra.config._drivers import RetryConfig, TimeoutConfig
from petra.shm import HeartbeatHandle, JournalConsumer, ProcessState, Quality, Segment
from petra.types import ConnState, DriverCounter, SignalType, Substatus, Value

log = logging.getLogger("petra.drivers")


class Clock(Protocol):
    """Monotonic seconds; tests inject a fake."""

    def __call__(self) -> float: ...


@dataclass(frozen=True, slots=True)
class DriverLimits:
    """Timeouts, backoff and cadence of one driver connection (from its config)."""

    connect_timeout_s: float = 3.0
    request_timeout_s: float = 1.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    backoff_multiplier: float = 2.0
    backoff_jitter: float = 0.2
    write_attempts: int = 3
    heartbeat_period_s: float = 0.1
    write_poll_s: float = 0.02
    log_interval_s: float = 10.0

    def __post_init__(self) -> None:
        for name in ("connect_timeout_s", "request_timeout_s", "backoff_initial_s",
                     "backoff_max_s", "heartbeat_period_s", "write_poll_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0 (a zero delay would busy-loop)")
        if self.backoff_multiplier < 1:
            raise ValueError("backoff_multiplier must be >= 1")

    @classmethod
    def from_config(cls, retry: RetryConfig, timeouts: TimeoutConfig) -> DriverLimits:
        return cls(connect_timeout_s=timeouts.connect_s, request_timeout_s=timeouts.request_s,
                   backoff_initial_s=retry.initial_delay_s, backoff_max_s=retry.max_delay_s,
                   backoff_multiplier=retry.multiplier, backoff_jitter=retry.jitter,
                   write_attempts=retry.write_attempts)


class Backoff:
    """Exponential backoff with jitter: initial * multiplier**n, capped, +- jitter."""

    def __init__(self, limits: DriverLimits, rng: random.Random | None = None) -> None:
        self._limits = limits
        self._rng = rng or random.Random()
        self._attempt = 0

    def next_delay(self) -> float:
        lim = self._limits
        base = min(lim.backoff_max_s,
                   lim.backoff_initial_s * lim.backoff_multiplier ** min(self._attempt, 60))
        self._attempt += 1
        spread = base * lim.backoff_jitter
        return max(lim.backoff_initial_s * (1 - lim.backoff_jitter),
                   base + self._rng.uniform(-spread, spread))

    def reset(self) -> None:
        self._attempt = 0

    @property
    def attempt(self) -> int:
        return self._attempt


class RateLimitedLog:
    """One log line per key per interval; the next line says how many were suppressed."""

    def __init__(self, logger: logging.Logger, interval_s: float, clock: Clock) -> None:
        self._log = logger
        self._interval = interval_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def __call__(self, level: int, key: str, msg: str, *args: object) -> None:
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._last[key] = now
        n = self._suppressed.pop(key, 0)
        if n:
            msg += f" ({n} similar suppressed)"
        self._log.log(level, msg, *args)


class Telemetry:
    """Counters and state of one process, mirrored into its heartbeat record."""

    def __init__(self, n: int = 8) -> None:
        self.counters = [0] * n
        self.state = ConnState.DISCONNECTED
        self.hb: HeartbeatHandle | None = None

    def inc(self, counter: int, by: int = 1) -> None:
        self.counters[counter] += by

    def set(self, counter: int, value: int) -> None:
        self.counters[counter] = value

    def __getitem__(self, counter: int) -> int:
        return self.counters[counter]

    def flush(self) -> None:
        """Copy counters to the heartbeat record and beat (RUNNING when UP)."""
        if self.hb is None:
            return
        self.counters[0] = int(self.state)
        for i, v in enumerate(self.counters):
            self.hb.set_counter(i, v & 0xFFFFFFFFFFFFFFFF)
        self.hb.beat(ProcessState.RUNNING if self.state == ConnState.UP
                     else ProcessState.DEGRADED)

    async def beat_forever(self, stop: asyncio.Event, period_s: float) -> None:
        while not stop.is_set():
            self.flush()
            await wait_or_stop(stop, period_s)
        self.flush()


async def wait_or_stop(stop: asyncio.Event, delay_s: float) -> bool:
    """Sleep ``delay_s`` unless ``stop`` is set first; True when stopping."""
    if stop.is_set():
        return True
    try:
        await asyncio.wait_for(stop.wait(), timeout=max(0.0, delay_s))
    except TimeoutError:
        return False
    return True


def next_due(due: float, period: float, now: float) -> float:
    """A poll group's next due time on its own grid, after ``now``: periods missed
    while a slow device answered are skipped, never bursted."""
    nxt = due + period
    if nxt <= now:
        nxt += (math.floor((now - nxt) / period) + 1) * period
    return nxt


def coerce_for(sig_type: SignalType, value: float | int | bool) -> Value:
    """Fit a device value to a signal's type: ints round, bools are value != 0."""
    if sig_type == SignalType.FLOAT:
        return float(value)
    if sig_type == SignalType.INT:
        return round(value) if isinstance(value, float) else int(value)
    return bool(value)


class SignalPort:
    """The driver's side of the segment: write values GOOD, mark signals BAD."""

    def __init__(self, segment: Segment) -> None:
        self.seg = segment
        self.types = [info.type for info in segment.signals]
        self._bad: set[int] = set()

    def index(self, name: str) -> int:
        return self.seg.index(name)

    def put(self, index: int, value: float | int | bool, source_ts_ns: int = 0) -> None:
        """Write a device value with GOOD quality (converted to the signal's type)."""
        self.seg.write_index(index, coerce_for(self.types[index], value), Quality.GOOD,
                             source_ts_ns)
        self._bad.discard(index)

    def put_bad(self, indices: Iterable[int], substatus: Substatus,
                force: bool = False) -> int:
        """Rewrite each signal's last value with BAD quality and ``substatus``; signals
        already marked bad by this port are skipped unless ``force``. Returns how many."""
        n = 0
        for i in indices:
            if i in self._bad and not force:
                continue
            value = self.seg.get_index(i)
            write_status(self.seg, i, value, Quality.BAD, substatus)
            self._bad.add(i)
            n += 1
        return n


def write_status(seg: Segment, index: int, value: Value, quality: Quality,
                 substatus: Substatus, *, source_ts_ns: int = 0) -> None:
    """Write a value with an explicit substatus (why the quality is what it is)."""
    seg.write_index(index, value, quality, source_ts_ns, substatus)


class WriteFollower:
    """Follows the change journal for the signals a driver writes to its device.

    ``poll`` returns the latest value per slot since the last call (coalesced), skipping
    entries this process wrote (writer id == own pid) and BAD-quality entries."""

    def __init__(self, segment: Segment, slots: Iterable[int],
                 own_writer: int | None = None) -> None:
        self._slots = frozenset(slots)
        self._own = os.getpid() if own_writer is None else own_writer
        self._consumer = JournalConsumer(segment) if self._slots else None
        self.lost = 0

    @property
    def active(self) -> bool:
        return self._consumer is not None

    def poll(self) -> dict[int, Value]:
        out: dict[int, Value] = {}
        c = self._consumer
        if c is None:
            return out
        while True:
            batch = c.read()
            n = len(batch)
            if n == 0:
                break
            slots = batch.slot.tolist()
            writers = batch.writer.tolist()
            quals = batch.quality.tolist()
            values: list[Value] | None = None
            for k in range(n):
                s = slots[k]
                if s in self._slots and writers[k] != self._own and quals[k] != Quality.BAD:
                    if values is None:
                        values = batch.decoded()
                    out[s] = values[k]
            if n < 8192:
                break
        self.lost = c.lost
        return out


class DriverBase:
    """The connect / run / back off loop; subclasses supply the protocol.

    Subclasses implement :meth:`_connect` (raise on failure), :meth:`_session` (run
    until the connection is lost, by raising, or ``stop`` is set), :meth:`_close` and
    :meth:`_read_indices` (signals to mark BAD while down)."""

    role_prefix = "driver"

    def __init__(self, name: str, segment: Segment, limits: DriverLimits,
                 clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        self.name = name
        self.seg = segment
        self.limits = limits
        self.clock = clock
        self.port = SignalPort(segment)
        self.tm = Telemetry()
        self.backoff = Backoff(limits, rng)
        self.log = logging.getLogger(f"petra.drivers.{name}")
        self.rlog = RateLimitedLog(self.log, limits.log_interval_s, clock)
        self._connects = 0

    # -- hooks
    async def _connect(self) -> None:
        raise NotImplementedError

    async def _session(self, stop: asyncio.Event) -> None:
        raise NotImplementedError

    async def _close(self) -> None:
        raise NotImplementedError

    def _read_indices(self) -> list[int]:
        raise NotImplementedError

    def _endpoint(self) -> str:
        return self.name

    # -- state machine
    def _set_state(self, state: ConnState) -> None:
        if state != self.tm.state:
            self.log.info("event=state driver=%s from=%s to=%s", self.name,
                          self.tm.state.name, state.name)
        self.tm.state = state
        self.tm.flush()

    def attach_heartbeat(self, hb: HeartbeatHandle) -> None:
        self.tm.hb = hb

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, run, back off, repeat until ``stop`` is set."""
        beat = asyncio.create_task(self.tm.beat_forever(stop, self.limits.heartbeat_period_s))
        try:
            while not stop.is_set():
                self._set_state(ConnState.CONNECTING)
                if self._connects:
                    self.tm.inc(DriverCounter.RECONNECTS)
                self._connects += 1
                try:
                    await asyncio.wait_for(self._connect(), self.limits.connect_timeout_s)
                except (Exception, TimeoutError) as exc:
                    self.tm.inc(DriverCounter.ERRORS)
                    self.rlog(logging.WARNING, "connect",
                              "event=connect_failed driver=%s endpoint=%s error=%s",
                              self.name, self._endpoint(), _describe(exc))
                    await self._safe_close()
                    await self._back_off(stop)
                    continue
                self.backoff.reset()
                self._set_state(ConnState.UP)
                self.log.info("event=connected driver=%s endpoint=%s", self.name,
                              self._endpoint())
                try:
                    await self._session(stop)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.tm.inc(DriverCounter.ERRORS)
                    self.log.warning("event=connection_lost driver=%s endpoint=%s error=%s",
                                     self.name, self._endpoint(), _describe(exc))
                    await self._safe_close()
                    await self._back_off(stop)
        finally:
            await self._safe_close()
            self._set_state(ConnState.DISCONNECTED)
            stop.set()
            await beat

    async def _back_off(self, stop: asyncio.Event) -> None:
        self.port.put_bad(self._read_indices(), Substatus.NOT_CONNECTED)
        self._set_state(ConnState.BACKOFF)
        delay = self.backoff.next_delay()
        self.log.debug("event=backoff driver=%s delay_s=%.3f", self.name, delay)
        await wait_or_stop(stop, delay)

    async def _safe_close(self) -> None:
        try:
            await self._close()
        except Exception as exc:
            self.log.debug("event=close_failed driver=%s error=%s", self.name, _describe(exc))


class PolledDriver(DriverBase):
    """A driver that polls groups of points, each on its own period, and carries
    journal writes to the device between polls (Modbus, S7). Subclasses fill
    ``plans``, ``periods``, ``follower`` and ``pending`` and say how to poll a group,
    how to queue a write and how to send the queued ones."""

    plans: Mapping[str, Any]
    periods: Mapping[str, float]
    follower: WriteFollower
    pending: dict[int, Any]

    def _queue_write(self, slot: int, value: Value) -> None:
        raise NotImplementedError

    async def _do_writes(self) -> None:
        raise NotImplementedError

    async def _poll_group(self, group: str) -> None:
        raise NotImplementedError

    async def _session(self, stop: asyncio.Event) -> None:
        due = dict.fromkeys(self.plans, self.clock())
        while not stop.is_set():
            if self.follower.active:
                for slot, value in self.follower.poll().items():
                    self._queue_write(slot, value)
                if self.pending:
                    await self._do_writes()
            for group in list(due):
                if self.clock() >= due[group]:
                    await self._poll_group(group)
                    due[group] = next_due(due[group], self.periods[group], self.clock())
            wait = (min(due.values()) - self.clock()) if due else 1.0
            if self.follower.active:
                wait = min(wait, self.limits.write_poll_s)
            if await wait_or_stop(stop, max(wait, 0.0005)):
                return


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if str(exc) else text
