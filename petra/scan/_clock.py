"""Time for the scan: the real deadline clock and a fake one for tests.

The scan reads time once per cycle, when it wakes, and hands that instant to every
block (timers, PID, generators): a cycle is one instant. Tests drive a
:class:`FakeClock`, so a 10-minute timer is checked in microseconds without sleeping.
"""

from __future__ import annotations

from typing import Protocol

from petra import _core


class Clock(Protocol):
    """What the scan needs from time (CLOCK_MONOTONIC nanoseconds)."""

    def now_ns(self) -> int: ...

    def wait_until(self, deadline_ns: int) -> int:
        """Block until ``deadline_ns``; return the instant of waking."""
        ...


class MonotonicClock:
    """The real clock: absolute ``clock_nanosleep`` in C, optionally sleep-then-spin."""

    def __init__(self, spin_ns: int = 0) -> None:
        self.spin_ns = spin_ns
        self._wait = _core.wait_until_raw
        self._now = _core.now_mono_raw

    def now_ns(self) -> int:
        return int(self._now())

    def wait_until(self, deadline_ns: int) -> int:
        return deadline_ns + int(self._wait(deadline_ns, self.spin_ns))


class FakeClock:
    """A clock that jumps to each deadline at once; ``lateness_ns`` simulates wake-up
    latency and :meth:`advance` simulates time passing inside a cycle."""

    def __init__(self, start_ns: int = 1_000_000_000, lateness_ns: int = 0) -> None:
        self._t = start_ns
        self.lateness_ns = lateness_ns

    def now_ns(self) -> int:
        return self._t

    def wait_until(self, deadline_ns: int) -> int:
        self._t = max(self._t, deadline_ns + self.lateness_ns)
        return self._t

    def advance(self, ns: int) -> None:
        self._t += ns
