"""What every field driver shares beyond :mod:`petra.io`: the signal port, the write
follower and the polling loop.

Process model
-------------
A driver is a :class:`petra.io.ConnectedProcess`: one asyncio loop and one connection
(a Modbus gateway, an S7 CPU, an MQTT broker), with the io layer's state machine.
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
import os
import random
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from petra.io import ConnectedProcess, IoLimits, next_due, wait_or_stop
from petra.shm import JournalConsumer, Quality, Segment
from petra.types import SignalType, Substatus, Value

log = logging.getLogger("petra.drivers")


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


class DriverBase(ConnectedProcess):
    """A field driver: a connected process that feeds signals from a device.

    Subclasses implement the :class:`petra.io.ConnectedProcess` hooks and
    :meth:`_read_indices` (the signals it reads, marked BAD/NOT_CONNECTED while the
    device is away, keeping their last value)."""

    def __init__(self, name: str, segment: Segment, limits: IoLimits, *,
                 clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        super().__init__(name, segment, limits, clock=clock, rng=rng, logger="petra.drivers")
        self.port = SignalPort(segment)

    def _read_indices(self) -> list[int]:
        raise NotImplementedError

    def _on_down(self) -> None:
        self.port.put_bad(self._read_indices(), Substatus.NOT_CONNECTED)


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
