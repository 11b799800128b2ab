"""Alarm conditions, evaluated for every alarm at once with numpy.

One pass (every ``alarms.period_s``, 100 ms by default) turns the current values of
the signals alarms watch into one boolean per alarm, the *condition*, and reports the
alarms whose condition changed; only those go through the (Python) state machine. So
the cost of a pass is a handful of array operations over all alarms plus Python work
for what changed, and 10k alarms take well under a millisecond.

Per kind (``limit``, ``deadband`` and the others are the definition's)::

    high, high_high   v > limit            stays until v <= limit - deadband
    low, low_low      v < limit            stays until v >= limit + deadband
    deviation         |v - sp| > limit     stays until |v - sp| <= limit - deadband
    rate              |dv/dt| > limit      dv/dt over rate_window_s (or one direction)
    discrete          v == state
    bad_quality       quality BAD (or not GOOD with ``uncertain: true``)
    stale             no write for timeout_s (writes with BAD quality do not count)
    device            the driver is not connected (no UP heartbeat)

A value condition is evaluated only while its inputs are GOOD; otherwise it keeps its
last result (a BAD input is the business of ``bad_quality`` and device alarms, not a
reason to clear or raise a limit alarm).

Short spikes
------------
Values are sampled once per pass, but the change journal carries every write in
between: high and low alarms see the largest (smallest) GOOD value written since the
last pass, so a spike shorter than the period still raises them (when they have no
on-delay; an on-delay asks for the condition to *hold*, which a spike does not).

Delays
------
A condition must hold ``on_delay_s`` before it counts as active and be gone
``off_delay_s`` before it counts as clear; a flicker inside the delay restarts it.
Delays run on the monotonic clock, so a wall-clock step cannot shorten them.

Suppression by design
---------------------
``suppress_when`` names a bool signal; while it is true the alarm is suppressed. An
alarm on a signal of a driver that has a device alarm is suppressed while that driver
is down (no delay: grouping must act before the members' own conditions), so an outage
raises the one device alarm and not one alarm per signal. A driver marks its signals
BAD a moment before its heartbeat says it is down, so members of a device group wait
at least 1.5 passes before their condition counts (no race between the two).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from petra.config._alarms import AlarmDef
from petra.types import Quality

K_HIGH, K_LOW, K_DEV, K_RATE, K_DISC, K_BADQ, K_STALE, K_DEVICE = range(8)
KIND_CODE = {"high": K_HIGH, "high_high": K_HIGH, "low": K_LOW, "low_low": K_LOW,
             "deviation": K_DEV, "rate": K_RATE, "discrete": K_DISC, "bad_quality": K_BADQ,
             "stale": K_STALE, "device": K_DEVICE}
GOOD = int(Quality.GOOD)
BAD = int(Quality.BAD)
NS = 1_000_000_000

F64 = npt.NDArray[np.float64]
BOOL = npt.NDArray[np.bool_]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Changes:
    """What one pass found: alarms whose condition or suppression changed."""

    cond: list[int]
    suppression: list[int]


class Conditions:
    """The condition of every alarm, and the inputs it is computed from.

    ``slot_of(name)`` maps a signal name to its slot; ``owner_of(slot)`` gives the
    slot's owner (``driver:<name>``) for device grouping."""

    def __init__(self, defs: Sequence[AlarmDef], slot_of: Callable[[str], int],
                 owner_of: Callable[[int], str], *, period_s: float) -> None:
        n = len(defs)
        self.n = n
        self.names = [d.name for d in defs]
        kind = np.array([KIND_CODE[d.type] for d in defs], np.int8)
        self.kind = kind
        watched: dict[int, int] = {}

        def pos(name: str | None) -> int:
            if name is None:
                return -1
            slot = slot_of(name)
            return watched.setdefault(slot, len(watched))

        self.p = np.array([pos(d.signal) for d in defs], np.int64)
        self.p_sp = np.array([pos(d.setpoint) for d in defs], np.int64)
        self.p_supp = np.array([pos(d.suppress_when) for d in defs], np.int64)
        self.slots = np.array(list(watched), np.uint32)  # position -> slot
        self.n_slots_max = int(self.slots.max()) + 1 if len(self.slots) else 0
        self.pos_of_slot = np.full(self.n_slots_max, -1, np.int64)
        self.pos_of_slot[self.slots.astype(np.int64)] = np.arange(len(self.slots))
        self.limit = np.array([d.limit if d.limit is not None else math.nan for d in defs])
        self.deadband = np.array([d.deadband for d in defs])
        self.state_val = np.array([float(d.state) if d.state is not None else math.nan
                                   for d in defs])
        self.timeout_ns = np.array([int((d.timeout_s or 0) * NS) for d in defs], np.int64)
        self.uncertain = np.array([d.uncertain for d in defs], np.bool_)
        self.on_delay = np.array([d.on_delay_s for d in defs])
        self.off_delay = np.array([d.off_delay_s for d in defs])
        self.direction = np.array([{"both": 0, "rising": 1, "falling": -1}[d.direction]
                                   for d in defs], np.int8)
        self._devices(defs, owner_of, period_s)
        # index sets per kind
        self.idx = {k: np.flatnonzero(kind == k) for k in range(8)}
        # rate alarms: a ring of the values of the last passes
        rate = self.idx[K_RATE]
        self.rate_k = np.array([max(1, round(defs[i].rate_window_s / period_s))
                                for i in rate.tolist()], np.int64)
        self.ring_len = int(self.rate_k.max()) + 1 if len(rate) else 1
        self.ring = np.full((len(rate), self.ring_len), math.nan)
        self.ring_t = np.full(self.ring_len, math.nan)
        self.ring_pos = 0
        # state of the evaluation
        self.raw = np.zeros(n, np.bool_)  # undelayed condition (for hysteresis)
        self.cond = np.zeros(n, np.bool_)  # delayed condition (what the engine sees)
        self.pending = np.full(n, math.nan)  # monotonic time a change started
        self.value = np.full(n, math.nan)  # the value each condition was computed on
        self.supp = np.zeros(n, np.int8)  # 0 none, 1 by signal, 2 by device
        # journal-fed inputs, per watched position
        m = len(self.slots)
        self.peak_max = np.full(m, math.nan)
        self.peak_min = np.full(m, math.nan)
        self.last_write_ns = np.zeros(m, np.int64)
        self.stale_positions = np.unique(self.p[self.idx[K_STALE]])
        self.passes = 0

    def _devices(self, defs: Sequence[AlarmDef], owner_of: Callable[[int], str],
                 period_s: float) -> None:
        """Device alarms, and the device each other alarm belongs to (by the owner of
        its signal)."""
        self.drivers = sorted({d.driver for d in defs if d.driver is not None})
        dev_index = {name: i for i, name in enumerate(self.drivers)}
        self.device_of = np.array([dev_index[d.driver] if d.driver is not None else -1
                                   for d in defs], np.int64)
        member = []
        for d, p in zip(defs, self.p.tolist(), strict=True):
            owner = owner_of(int(self.slots[p])) if p >= 0 else ""
            drv = owner.split(":", 1)[1] if owner.startswith("driver:") else None
            member.append(dev_index.get(drv, -1) if drv is not None and d.type != "device"
                          else -1)
        self.member_of = np.array(member, np.int64)
        # A driver marks its signals BAD a moment before its heartbeat says it is down:
        # members of a device group wait at least 1.5 passes, so the device is seen
        # down (and groups them) before their own condition counts.
        self.on_delay = np.where(self.member_of >= 0,
                                 np.maximum(self.on_delay, 1.5 * period_s), self.on_delay)

    # ------------------------------------------------------------------ inputs
    def seed(self, cond: Sequence[bool]) -> None:
        """Start from the conditions a previous run recorded (no spurious clear and
        raise again after a restart while the condition still holds)."""
        self.cond[:] = np.asarray(cond, np.bool_)
        self.raw[:] = self.cond

    def seed_writes(self, write_ts_ns: Mapping[int, int]) -> None:
        """Last write time of watched slots (slot -> ns), e.g. read once at start."""
        for slot, ts in write_ts_ns.items():
            if 0 <= slot < self.n_slots_max and self.pos_of_slot[slot] >= 0:
                self.last_write_ns[self.pos_of_slot[slot]] = ts

    def take_journal(self, slot: npt.NDArray[np.uint32], values: F64,
                     quality: npt.NDArray[np.uint8], write_ts_ns: I64) -> None:
        """Fold one journal batch into the peaks and last write times."""
        s = slot.astype(np.int64)
        inside = s < self.n_slots_max
        if not inside.all():
            s, values, quality, write_ts_ns = (s[inside], values[inside], quality[inside],
                                               write_ts_ns[inside])
        p = self.pos_of_slot[s]
        m = p >= 0
        if not m.any():
            return
        p, v, q, ts = p[m], values[m], quality[m], write_ts_ns[m]
        good = q == GOOD
        if good.any():
            np.fmax.at(self.peak_max, p[good], v[good])
            np.fmin.at(self.peak_min, p[good], v[good])
        fresh = q != BAD
        if fresh.any():
            np.maximum.at(self.last_write_ns, p[fresh], ts[fresh])

    # ------------------------------------------------------------------ one pass
    def evaluate(self, values: F64, quality: npt.NDArray[np.uint8], now_mono: float,
                 now_wall_ns: int, drivers_up: Mapping[str, bool]) -> Changes:
        """One pass over ``values``/``quality`` (indexed by watched position, the order
        of :attr:`slots`); returns what changed."""
        down = np.array([not drivers_up.get(d, False) for d in self.drivers], np.bool_)
        raw_new, valid, val = self._raw(values, quality, now_mono, now_wall_ns, down)
        self.raw = np.where(valid, raw_new, self.raw)
        self.value = np.where(np.isnan(val), self.value, val) if self.passes else val
        changed = self._delays(now_mono)
        supp_changed = self._suppression(values, down)
        self.peak_max.fill(math.nan)  # the journal-fed peaks start again
        self.peak_min.fill(math.nan)
        self.passes += 1
        return Changes(changed.tolist(), supp_changed.tolist())

    def _raw(self, values: F64, quality: npt.NDArray[np.uint8], now_mono: float,  # noqa: PLR0915
             now_wall_ns: int, down: BOOL) -> tuple[BOOL, BOOL, F64]:
        """Each alarm's undelayed condition, whether its inputs allowed computing it,
        and the value it was computed on."""
        n = self.n
        raw_new = self.raw.copy()
        valid = np.ones(n, np.bool_)
        val = np.full(n, math.nan)
        pp = np.where(self.p >= 0, self.p, 0)
        v = values[pp] if len(values) else np.zeros(n)
        q = quality[pp] if len(quality) else np.zeros(n, np.uint8)
        good = q == GOOD
        i = self.idx[K_HIGH]
        if len(i):
            top = np.fmax(v[i], self.peak_max[pp[i]])
            raw_new[i] = np.where(self.raw[i], v[i] > self.limit[i] - self.deadband[i],
                                  top > self.limit[i])
            valid[i] = good[i]
            val[i] = np.where(self.raw[i], v[i], top)
        i = self.idx[K_LOW]
        if len(i):
            bottom = np.fmin(v[i], self.peak_min[pp[i]])
            raw_new[i] = np.where(self.raw[i], v[i] < self.limit[i] + self.deadband[i],
                                  bottom < self.limit[i])
            valid[i] = good[i]
            val[i] = np.where(self.raw[i], v[i], bottom)
        i = self.idx[K_DEV]
        if len(i):
            dev = np.abs(v[i] - values[self.p_sp[i]])
            raw_new[i] = np.where(self.raw[i], dev > self.limit[i] - self.deadband[i],
                                  dev > self.limit[i])
            valid[i] = good[i] & (quality[self.p_sp[i]] == GOOD)
            val[i] = v[i]
        i = self.idx[K_RATE]
        if len(i):
            rate, ok = self._rate(v[i], good[i], now_mono)
            lim, d = self.limit[i], self.direction[i]
            raw_new[i] = np.where(d > 0, rate > lim,
                                  np.where(d < 0, rate < -lim, np.abs(rate) > lim))
            valid[i] = ok
            val[i] = rate
        i = self.idx[K_DISC]
        if len(i):
            raw_new[i] = v[i] == self.state_val[i]
            valid[i] = good[i]
            val[i] = v[i]
        i = self.idx[K_BADQ]
        if len(i):
            raw_new[i] = np.where(self.uncertain[i], q[i] != GOOD, q[i] == BAD)
            val[i] = v[i]
        i = self.idx[K_STALE]
        if len(i):
            age = now_wall_ns - self.last_write_ns[self.p[i]]
            raw_new[i] = age > self.timeout_ns[i]
            val[i] = age / NS
        i = self.idx[K_DEVICE]
        if len(i):
            raw_new[i] = down[self.device_of[i]]
        return raw_new, valid, val

    def _delays(self, now_mono: float) -> npt.NDArray[np.intp]:
        """Apply on/off delays; the alarms whose delayed condition changed."""
        diff = self.raw != self.cond
        started = np.where(np.isnan(self.pending), now_mono, self.pending)
        self.pending = np.where(diff, started, math.nan)
        delay = np.where(self.raw, self.on_delay, self.off_delay)
        changed = np.flatnonzero(diff & (now_mono - self.pending >= delay))
        if len(changed):
            self.cond[changed] = self.raw[changed]
            self.pending[changed] = math.nan
        return changed

    def _suppression(self, values: F64, down: BOOL) -> npt.NDArray[np.intp]:
        """Design suppression now; the alarms where it changed."""
        supp = np.zeros(self.n, np.int8)
        hs = self.p_supp >= 0
        if hs.any():
            on = values[self.p_supp[hs]] != 0
            supp[np.flatnonzero(hs)[on]] = 1
        mem = self.member_of >= 0
        if mem.any() and len(down):
            idx = np.flatnonzero(mem)
            supp[idx[down[self.member_of[idx]]]] = 2
        changed = np.flatnonzero(supp != self.supp)
        self.supp = supp
        return changed

    def _rate(self, v: F64, good: BOOL, now: float) -> tuple[F64, BOOL]:
        """d(value)/dt over each rate alarm's window (NaN while the ring fills)."""
        k = self.ring_pos
        self.ring[:, k] = np.where(good, v, math.nan)
        self.ring_t[k] = now
        old = (k - self.rate_k) % self.ring_len
        v_old = self.ring[np.arange(len(v)), old]
        dt = now - self.ring_t[old]
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = (v - v_old) / dt
        ok = good & np.isfinite(rate) & (dt > 0)
        self.ring_pos = (k + 1) % self.ring_len
        return np.where(ok, rate, 0.0), ok

    def suppression_reason(self, i: int, suppress_signals: Sequence[str | None]) -> str:
        """Why alarm ``i`` is suppressed by design now ("" when it is not)."""
        code = int(self.supp[i])
        if code == 1:
            return f"{suppress_signals[i]} is true"
        if code == 2:
            return f"device {self.drivers[int(self.member_of[i])]} is down"
        return ""
