"""The connected I/O process: one connection, its state machine and its heartbeat.

Drivers (Modbus, S7, MQTT in) and sinks (MQTT out, later history and alarms) are the
same kind of process: one asyncio loop, one connection to something outside, a
heartbeat record that says how it is doing. :class:`ConnectedProcess` is that shared
part; a subclass supplies the protocol through the hooks.

State machine (counter 0 of the heartbeat record, :class:`petra.types.ConnState`)::

    DISCONNECTED -> CONNECTING --ok--> UP --connection lost--> BACKOFF
                        |                                        |
                        +--------------failed------------------> BACKOFF -> CONNECTING

Structured concurrency
----------------------
Every task of the process belongs to one :class:`asyncio.TaskGroup`: the heartbeat,
the connection loop and the subclass's background tasks (a sink's journal pump). If
any of them raises, the group cancels the others and the exception leaves
:meth:`ConnectedProcess.run`; the runner marks the heartbeat FAILED and the process
exits non-zero, so the supervisor restarts it. A task that died can therefore never
leave a process whose heartbeat still says RUNNING.

Fault injection
---------------
``PETRA_INJECT_FAULT=<role>:background-raise:<seconds>`` in a process's environment
makes the first background task of that role raise after the given time, exactly as
a crashing sink pump would. It exists for the fault tests (the supervisor must restart
such a process) and does nothing unless set.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Callable, Coroutine
from typing import Any

from petra.errors import PetraError
from petra.io._telemetry import RateLimitedLog, Telemetry
from petra.io._timing import Backoff, IoLimits, wait_or_stop
from petra.shm import HeartbeatHandle, Segment
from petra.types import DRIVER_PREFIX, ConnState, DriverCounter

FAULT_ENV = "PETRA_INJECT_FAULT"


class InjectedFaultError(PetraError):
    """Raised by a task on purpose, because :data:`FAULT_ENV` asked for it."""


def injected_fault(role: str, fault: str) -> float | None:
    """Seconds after which ``fault`` should strike in ``role``, if the env asks."""
    spec = os.environ.get(FAULT_ENV, "")
    want_role, _, rest = spec.rpartition(":")[0].rpartition(":")
    if not spec or want_role != role or rest != fault:
        return None
    try:
        return float(spec.rpartition(":")[2])
    except ValueError:
        return None


class ConnectedProcess:
    """The connect / run / back off loop; subclasses supply the protocol.

    Hooks: :meth:`_connect` (raise on failure), :meth:`_session` (run until the
    connection is lost, by raising, or ``stop`` is set), :meth:`_close`,
    :meth:`_on_down` (what to mark while disconnected) and :meth:`_background`
    (coroutines that live as long as the process)."""

    role_kind = DRIVER_PREFIX

    def __init__(self, name: str, segment: Segment, limits: IoLimits, *,
                 clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None, logger: str = "petra.io") -> None:
        self.name = name
        self.seg = segment
        self.limits = limits
        self.clock = clock
        self.tm = Telemetry()
        self.backoff = Backoff(limits, rng)
        self.log = logging.getLogger(f"{logger}.{name}")
        self.rlog = RateLimitedLog(self.log, limits.log_interval_s, clock)
        self._connects = 0

    # -- hooks
    async def _connect(self) -> None:
        raise NotImplementedError

    async def _session(self, stop: asyncio.Event) -> None:
        raise NotImplementedError

    async def _close(self) -> None:
        raise NotImplementedError

    def _on_down(self) -> None:
        """Called on entering BACKOFF: mark what this process feeds as not connected."""

    def _background(self, stop: asyncio.Event) -> list[Coroutine[Any, Any, None]]:
        """Coroutines run beside the connection loop for the life of the process; each
        must return once ``stop`` is set. One that raises stops the process."""
        return []

    def _endpoint(self) -> str:
        return self.name

    @property
    def role(self) -> str:
        """The process's role (``driver:<name>``, ``sink:<name>``)."""
        return f"{self.role_kind}:{self.name}"

    # -- state machine
    def _set_state(self, state: ConnState) -> None:
        if state != self.tm.state:
            self.log.info("event=state process=%s from=%s to=%s", self.name,
                          self.tm.state.name, state.name)
        self.tm.state = state
        self.tm.flush()

    def attach_heartbeat(self, hb: HeartbeatHandle) -> None:
        self.tm.hb = hb

    async def run(self, stop: asyncio.Event) -> None:
        """Run every task of the process until ``stop`` is set or one of them fails."""
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._beat(stop), name=f"{self.name}:heartbeat")
                tg.create_task(self._connection_loop(stop), name=f"{self.name}:connection")
                fault = injected_fault(self.role, "background-raise")
                for i, coro in enumerate(self._background(stop)):
                    tg.create_task(self._until_stop(coro, stop, fault if i == 0 else None),
                                   name=f"{self.name}:bg{i}")
        finally:
            stop.set()

    async def _until_stop(self, coro: Coroutine[Any, Any, None], stop: asyncio.Event,
                          fault_after_s: float | None = None) -> None:
        if fault_after_s is None:
            await coro
        else:
            try:
                async with asyncio.timeout(fault_after_s):
                    await coro
            except TimeoutError:
                raise InjectedFaultError(f"{self.role}: injected background failure") from None
        if not stop.is_set():
            raise RuntimeError(f"{self.name}: a background task returned before stop")

    async def _beat(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.tm.flush()
            await wait_or_stop(stop, self.limits.heartbeat_period_s)
        self.tm.flush()

    async def _connection_loop(self, stop: asyncio.Event) -> None:
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
                              "event=connect_failed process=%s endpoint=%s error=%s",
                              self.name, self._endpoint(), describe(exc))
                    await self._safe_close()
                    await self._back_off(stop)
                    continue
                self.backoff.reset()
                self._set_state(ConnState.UP)
                self.log.info("event=connected process=%s endpoint=%s", self.name,
                              self._endpoint())
                try:
                    await self._session(stop)
                except Exception as exc:
                    self.tm.inc(DriverCounter.ERRORS)
                    self.log.warning("event=connection_lost process=%s endpoint=%s error=%s",
                                     self.name, self._endpoint(), describe(exc))
                    await self._safe_close()
                    await self._back_off(stop)
        finally:
            await self._safe_close()
            self._set_state(ConnState.DISCONNECTED)
            stop.set()

    async def _back_off(self, stop: asyncio.Event) -> None:
        self._on_down()
        self._set_state(ConnState.BACKOFF)
        delay = self.backoff.next_delay()
        self.log.debug("event=backoff process=%s delay_s=%.3f", self.name, delay)
        await wait_or_stop(stop, delay)

    async def _safe_close(self) -> None:
        try:
            await self._close()
        except Exception as exc:
            self.log.debug("event=close_failed process=%s error=%s", self.name, describe(exc))


def describe(exc: BaseException) -> str:
    """``Type: message`` for a log line (just the type when there is no message)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
