"""Time for connected processes: backoff between connection attempts, poll grids, and a
sleep that a stop request cuts short.

Backoff starts fast and resets after a healthy connection: a device that returns is
read again within the first delay (0.5 s by default), and a short outage long after
start is not punished with the delay a long outage earned. The delay is capped (1 s by
default, jitter included), so a device that comes back after a long outage is
reconnected within the cap: a connect attempt a second to a dead device costs nothing.
It is never zero (the config refuses a zero delay), so a dead device cannot turn into
a busy loop.
"""

from __future__ import annotations

import asyncio
import math
import random
from dataclasses import dataclass
from typing import Protocol

from petra.config._drivers import RetryConfig, TimeoutConfig


class Clock(Protocol):
    """Monotonic seconds; tests inject a fake."""

    def __call__(self) -> float: ...


@dataclass(frozen=True, slots=True)
class IoLimits:
    """Timeouts, backoff and cadence of one connection (from its config)."""

    connect_timeout_s: float = 3.0
    request_timeout_s: float = 1.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 1.0
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
    def from_config(cls, retry: RetryConfig, timeouts: TimeoutConfig) -> IoLimits:
        """A connection's limits from its ``retry:`` and ``timeouts:`` config sections."""
        return cls(connect_timeout_s=timeouts.connect_s, request_timeout_s=timeouts.request_s,
                   backoff_initial_s=retry.initial_delay_s, backoff_max_s=retry.max_delay_s,
                   backoff_multiplier=retry.multiplier, backoff_jitter=retry.jitter,
                   write_attempts=retry.write_attempts)


class Backoff:
    """Exponential backoff with jitter: initial * multiplier**n, capped, +- jitter."""

    def __init__(self, limits: IoLimits, rng: random.Random | None = None) -> None:
        self._limits = limits
        self._rng = rng or random.Random()
        self._attempt = 0

    def next_delay(self) -> float:
        lim = self._limits
        base = min(lim.backoff_max_s,
                   lim.backoff_initial_s * lim.backoff_multiplier ** min(self._attempt, 60))
        self._attempt += 1
        spread = base * lim.backoff_jitter
        # the cap is a promise (a returning device is retried within it): jitter
        # spreads below it, never above
        return min(lim.backoff_max_s, max(lim.backoff_initial_s * (1 - lim.backoff_jitter),
                                          base + self._rng.uniform(-spread, spread)))

    def reset(self) -> None:
        self._attempt = 0

    @property
    def attempt(self) -> int:
        return self._attempt


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
