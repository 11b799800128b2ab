"""What a connected process tells the world: counters and state in its heartbeat
record, and log lines that cannot flood.

The meaning of each counter index is the role's schema in :mod:`petra.types`
(``DriverCounter``, ``SinkCounter``); counter 0 is always the connection state.
"""

from __future__ import annotations

import logging

from petra.io._timing import Clock
from petra.shm import HeartbeatHandle
from petra.types import HB_COUNTERS, ConnState, ProcessState

# The log limiter's table is bounded: a flood of distinct keys (one per hostile topic,
# say) costs at most this many entries, then keys share one budget.
RATE_LOG_MAX_KEYS = 256


class RateLimitedLog:
    """One log line per key per interval; the next line says how many were suppressed.

    The key table is bounded (:data:`RATE_LOG_MAX_KEYS`): past it, every new key is
    limited under one shared key, so distinct keys cannot grow memory or the log."""

    def __init__(self, logger: logging.Logger, interval_s: float, clock: Clock) -> None:
        self._log = logger
        self._interval = interval_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def __call__(self, level: int, key: str, msg: str, *args: object) -> None:
        if key not in self._last and len(self._last) >= RATE_LOG_MAX_KEYS:
            key = "*"
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
    """Counters and connection state of one process, mirrored into its heartbeat."""

    def __init__(self, n: int = HB_COUNTERS) -> None:
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
