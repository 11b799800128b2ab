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

Values from the device
----------------------
A device is outside the plant's control, so what it sends is judged against the
signal's directory entry before it is written (:func:`fit_device_value`). A value that
is a number but not one the signal accepts (NaN or infinity unless the signal allows
them, a value outside its min/max, an integer beyond int64) is written BAD with
substatus OUT_OF_RANGE, keeping the raw value where the slot can hold it: the operator
sees the signal is bad and what the device said, the scan sees BAD. It is counted in
REJECTED and logged (rate-limited per signal). It is never clamped: a clamped value
looks plausible and hides the fault. A reply that cannot be decoded at all is counted
the same way and marks only the points it carried, never the connection.

Writes from the plant
---------------------
The scan or an operator writes a signal mapped for writing; the driver sees it in the
change journal (:class:`WriteFollower`). Entries written by the driver itself (same
writer id), BAD-quality entries and SCAN_DOWN marks are ignored; repeated writes of one
signal coalesce to the latest value before they reach the device. A value that is not
finite (unless the signal allows it) or lies outside the signal's min/max is refused
there (:func:`refuse_device_write`, counted in WRITE_FAILURES): it never reaches a
register.

Outputs re-asserted on every connect
------------------------------------
A device that reboots comes back with its outputs at their power-on values; a driver
that was killed missed every journal entry written while it was down. Both are healed
the same way: the slot is the truth. At the start of every session (each connect, and
so the first one of a restarted driver) the follower is drained first, so a queued
write can only be replaced by something newer, then, with ``on_connect: write_all``
(the default), the current slot value of every ``direction: write`` point is queued
(BAD slots and slots never written are left alone) and sent before the first poll.
``changed_only`` sends only what was queued while disconnected, coalesced to the
newest value per signal, except on a process's first connect, which always re-asserts:
a restarted driver cannot know what it missed. A slot marked SCAN_DOWN (the scan that
writes it is down; the supervisor marked it keeping the value) is not a command: it is
neither re-asserted nor sent from the journal, so the device keeps the last value it
was given, and the restarted scan's first cycle, which writes every output, sends the
next one. ``readwrite`` points are not
re-asserted: their slot may hold what the device itself reported, and writing that
back would fight the device.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from petra.io import ConnectedProcess, IoLimits, next_due, wait_or_stop
from petra.shm import JournalConsumer, Quality, Segment, SignalInfo
from petra.types import INT64_MAX, INT64_MIN, DriverCounter, SignalType, Substatus, Value

log = logging.getLogger("petra.drivers")
_SCAN_DOWN = int(Substatus.SCAN_DOWN)


def _int_text(v: int) -> str:
    """An int for a log line, without converting a huge one to decimal."""
    return str(v) if v.bit_length() <= 128 else f"a {v.bit_length()}-bit integer"


def _limits_text(info: SignalInfo) -> str:
    lo = "-inf" if info.minimum is None else f"{info.minimum:g}"
    hi = "inf" if info.maximum is None else f"{info.maximum:g}"
    return f"[{lo}, {hi}]"


def fit_device_value(  # noqa: PLR0911  # one verdict per kind of bad value
        info: SignalInfo, value: float | int | bool
) -> tuple[Value | None, str | None]:
    """Judge a value read from a device for its signal (the device-value rule).

    Returns ``(stored, None)`` for a value to write GOOD, or ``(stored, reason)`` for
    one to write BAD with substatus OUT_OF_RANGE: ``stored`` is the raw value when the
    slot can hold it (a NaN, or a number outside min/max, is kept for the engineer to
    see) and None when it cannot (an integer beyond int64, a non-finite value for an
    int signal): then the slot keeps its last value."""
    t = info.type
    v: Value
    if t is SignalType.BOOL:
        if isinstance(value, float) and not math.isfinite(value):
            return None, f"{value!r} is not a bool"
        return bool(value), None
    if t is SignalType.FLOAT:
        try:
            v = float(value)
        except OverflowError:  # an int beyond float64: keep it as the infinity it is
            return (math.inf if value > 0 else -math.inf), "an integer beyond float64"
        if not math.isfinite(v) and not info.allow_nonfinite:
            return v, f"{v!r} is not a finite number"
    else:
        if isinstance(value, float):
            if not math.isfinite(value):
                return None, f"{value!r} is not a finite number"
            value = round(value)
        v = int(value)
        if not INT64_MIN <= v <= INT64_MAX:
            return None, f"{_int_text(v)} does not fit int64"
    if v == v and ((info.minimum is not None and v < info.minimum)  # noqa: PLR0124  # NaN
                   or (info.maximum is not None and v > info.maximum)):
        return v, f"{v!r} is outside the limits {_limits_text(info)}"
    return v, None


def refuse_device_write(info: SignalInfo, value: Value) -> str | None:
    """Why ``value`` must not be sent to a device for this signal, or None.

    The scan and operators write the segment; a driver carries the value to the
    device. Whatever wrote it, a NaN or infinity (unless the signal allows them) or a
    value outside the signal's min/max never reaches a device register."""
    if info.type is SignalType.BOOL:
        return None
    if isinstance(value, float) and not math.isfinite(value) and not info.allow_nonfinite:
        return f"{value!r} is not a finite number"
    if value == value and ((info.minimum is not None and value < info.minimum)  # noqa: PLR0124
                           or (info.maximum is not None and value > info.maximum)):
        return f"{value!r} is outside the limits {_limits_text(info)}"
    return None


class SignalPort:
    """The driver's side of the segment: write device values, mark signals BAD."""

    def __init__(self, segment: Segment) -> None:
        self.seg = segment
        self.infos = segment.signals
        self.types = [info.type for info in self.infos]
        self._bad: set[int] = set()

    def index(self, name: str) -> int:
        return self.seg.index(name)

    def put(self, index: int, value: float | int | bool, source_ts_ns: int = 0) -> str | None:
        """Write a device value: GOOD when it fits the signal, else BAD with substatus
        OUT_OF_RANGE (see :func:`fit_device_value`). Returns None, or why it was BAD."""
        stored, why = fit_device_value(self.infos[index], value)
        self._bad.discard(index)
        if why is None:
            assert stored is not None
            self.seg.write_index(index, stored, Quality.GOOD, source_ts_ns)
            return None
        if stored is None:
            stored = self.seg.get_index(index)
        write_status(self.seg, index, stored, Quality.BAD, Substatus.OUT_OF_RANGE,
                     source_ts_ns=source_ts_ns)
        return why

    def put_bad(self, indices: Iterable[int], substatus: Substatus,
                force: bool = False) -> int:
        """Rewrite each signal's last value with BAD quality and ``substatus``; signals
        already marked bad by this port are skipped unless ``force``. Returns how many.

        The value keeps its source timestamp, so its age still says how old the value
        is; the slot's write timestamp records when it went BAD."""
        n = 0
        for i in indices:
            if i in self._bad and not force:
                continue
            last = self.seg.read_index(i)
            write_status(self.seg, i, last.value, Quality.BAD, substatus,
                         source_ts_ns=last.source_ts_ns)
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
    entries this process wrote (writer id == own pid), BAD-quality entries and
    SCAN_DOWN marks. Each entry carries the substatus written with its value, so a
    mark is known from the entry alone, however the slot was rewritten since (the
    restarted scan's GOOD value, by another writer). A mark the restarted scan already
    replaced is followed by that newer entry."""

    def __init__(self, segment: Segment, slots: Iterable[int],
                 own_writer: int | None = None) -> None:
        self._seg = segment
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
            subs = batch.substatus.tolist()
            values: list[Value] | None = None
            for k in range(n):
                s = slots[k]
                q = quals[k]
                if s in self._slots and writers[k] != self._own and q != Quality.BAD:
                    if subs[k] == _SCAN_DOWN:
                        continue
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

    def store(self, index: int, value: float | int | bool, source_ts_ns: int = 0) -> bool:
        """Write a value read from the device (the device-value rule of
        :func:`fit_device_value`); a value written BAD is counted (REJECTED) and
        logged, rate-limited per signal. True when it was written GOOD."""
        why = self.port.put(index, value, source_ts_ns)
        if why is None:
            return True
        self.tm.inc(DriverCounter.REJECTED)
        self.rlog(logging.WARNING, f"value:{index}",
                  "event=value_rejected driver=%s signal=%s reason=%r quality=BAD "
                  "substatus=OUT_OF_RANGE", self.name, self.port.infos[index].name, why)
        return False

    def write_refused(self, index: int, value: Value) -> bool:
        """True (counted in WRITE_FAILURES, logged) when ``value`` must not go to the
        device (:func:`refuse_device_write`)."""
        why = refuse_device_write(self.port.infos[index], value)
        if why is None:
            return False
        self.tm.inc(DriverCounter.WRITE_FAILURES)
        self.rlog(logging.ERROR, f"wvalue:{index}",
                  "event=write_refused driver=%s signal=%s error=%r", self.name,
                  self.port.infos[index].name, why)
        return True


class PolledDriver(DriverBase):
    """A driver that polls groups of points, each on its own period, and carries
    journal writes to the device between polls (Modbus, S7). Subclasses fill
    ``plans``, ``periods``, ``follower`` and ``pending`` and say how to poll a group,
    how to queue a write and how to send the queued ones."""

    plans: Mapping[str, Any]
    periods: Mapping[str, float]
    follower: WriteFollower
    pending: dict[int, Any]
    on_connect: str = "write_all"
    reassert_slots: list[int]
    _sessions: int = 0

    def _queue_write(self, slot: int, value: Value) -> None:
        raise NotImplementedError

    async def _do_writes(self) -> None:
        raise NotImplementedError

    async def _poll_group(self, group: str) -> None:
        raise NotImplementedError

    def _take_journal_writes(self) -> None:
        for slot, value in self.follower.poll().items():
            if not self.write_refused(slot, value):
                self._queue_write(slot, value)

    def reassert(self) -> int:
        """Queue the current slot value of every re-asserted write point (the slot is
        the truth; see the module notes). Returns how many were queued."""
        n = 0
        for slot in self.reassert_slots:
            sample = self.seg.read_index(slot)
            if sample.quality == Quality.BAD or sample.write_ts_ns == 0 \
                    or sample.substatus in (Substatus.INITIAL, Substatus.SCAN_DOWN):
                continue
            if not self.write_refused(slot, sample.value):
                self._queue_write(slot, sample.value)
                n += 1
        return n

    async def _session(self, stop: asyncio.Event) -> None:
        first = self._sessions == 0
        self._sessions += 1
        if self.follower.active:
            self._take_journal_writes()
        if self.reassert_slots and (first or self.on_connect == "write_all"):
            n = self.reassert()
            self.log.info("event=outputs_reasserted driver=%s points=%d queued=%d",
                          self.name, n, len(self.pending))
        if self.pending:
            await self._do_writes()
        due = dict.fromkeys(self.plans, self.clock())
        while not stop.is_set():
            if self.follower.active:
                self._take_journal_writes()
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
