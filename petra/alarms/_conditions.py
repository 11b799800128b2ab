"""Alarm conditions, evaluated for every alarm at once with numpy.

One pass (every ``alarms.period_s``, 100 ms by default) turns the current values of
the signals alarms watch into one boolean per alarm, the *condition*, and reports the
alarms whose condition changed; only those go through the (Python) state machine.

Only what can have changed is evaluated
---------------------------------------
A condition is a function of its inputs (value, quality, the peaks the journal carried,
its own last result for the hysteresis) and, for some kinds, of time. A pass therefore
evaluates only (1) the alarms on a watched position whose value or quality differs from
the last pass or that the journal wrote since (or wrote the pass before, so a peak's
value is replaced by the current one), found through a position -> alarms index;
(2) the timed kinds: rate, stale and device; (3) alarms with an on/off delay running;
(4) alarms whose undelayed condition changed in the last pass (evaluated again on the
same inputs they settle: a spike raises a high alarm for one pass, then the current
value clears it, exactly as when every alarm is evaluated every pass). Suppression is
recomputed only when a ``suppress_when`` value or a driver's state changed. Everything
else keeps its result, which evaluating it again would reproduce. The cost of a pass is
a few array operations over the watched positions plus work proportional to what
changed and to the timed alarms.

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
DEVICE_GRACE_S = 10.0  # longest a member stays grouped after its device returned

F64 = npt.NDArray[np.float64]
BOOL = npt.NDArray[np.bool_]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class _Inputs:
    """What one pass evaluates on."""

    values: F64
    quality: npt.NDArray[np.uint8]
    now_mono: float
    now_wall_ns: int
    down: BOOL


@dataclass(frozen=True, slots=True)
class Changes:
    """What one pass found: alarms whose condition or suppression changed."""

    cond: list[int]
    suppression: list[int]


class Conditions:
    """The condition of every alarm, and the inputs it is computed from.

    ``slot_of(name)`` maps a signal name to its slot; ``owner_of(slot)`` gives the
    slot's owner (``driver:<name>``) for device grouping. ``selective=False``
    evaluates every alarm in every pass: the same results, slower (tests compare the
    two)."""

    def __init__(self, defs: Sequence[AlarmDef], slot_of: Callable[[str], int],
                 owner_of: Callable[[int], str], *, period_s: float,
                 selective: bool = True, device_grace_s: float = DEVICE_GRACE_S) -> None:
        n = len(defs)
        self.device_grace_s = device_grace_s
        self.selective = selective  # False: every alarm every pass (the test oracle)
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
        # where a raised limit condition clears (the hysteresis), precomputed
        self.clear_at = np.where(np.isin(kind, (K_LOW,)), self.limit + self.deadband,
                                 self.limit - self.deadband)
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
        self.ring = np.full((self.ring_len, len(rate)), math.nan)  # a row per pass
        self.rate_window = int(self.rate_k[0]) if len(rate) and (
            self.rate_k == self.rate_k[0]).all() else 0  # one window for all: scalar path
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
        self._selective_state(m)

    def _selective_state(self, m: int) -> None:
        """What a pass evaluates (see "Only what can have changed" above)."""
        kind = self.kind
        self._index_dependents(m)
        self.timed = np.flatnonzero((kind == K_RATE) | (kind == K_STALE) | (kind == K_DEVICE))
        self.supp_positions = np.unique(self.p_supp[self.p_supp >= 0])
        self._prev_v = np.full(m, math.nan)
        self._prev_q = np.zeros(m, np.uint8)
        self._touched = np.zeros(m, np.bool_)  # the journal carried a write this pass
        self._peaked = np.zeros(m, np.bool_)  # ... last pass
        self._prev_down: BOOL | None = None
        self._pending_idx = np.zeros(0, np.intp)  # alarms with a delay running
        self._recheck = np.zeros(0, np.intp)  # alarms whose raw condition just changed
        self._everything = True  # evaluate all alarms in the next pass
        self.evaluated_last = 0

    def _index_dependents(self, m: int) -> None:
        """Position -> alarms whose condition reads it (signal or setpoint), as CSR
        arrays: ``dep_idx[dep_ptr[p]:dep_ptr[p + 1]]``."""
        pos = np.concatenate([self.p, self.p_sp])
        alarm = np.concatenate([np.arange(self.n), np.arange(self.n)])
        keep = pos >= 0
        pos, alarm = pos[keep], alarm[keep]
        order = np.argsort(pos, kind="stable")
        self.dep_idx = alarm[order].astype(np.intp)
        self.dep_ptr = np.zeros(m + 1, np.intp)
        np.cumsum(np.bincount(pos, minlength=m), out=self.dep_ptr[1:])

    def _dependents(self, positions: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
        """The alarms reading any of ``positions`` (unsorted, maybe repeated)."""
        starts = self.dep_ptr[positions]
        counts = self.dep_ptr[positions + 1] - starts
        total = int(counts.sum())
        if not total:
            return np.zeros(0, np.intp)
        # the CSR gather without a Python loop: each run starts at its start
        offsets = np.repeat(starts - (np.cumsum(counts) - counts), counts)
        return self.dep_idx[offsets + np.arange(total)]

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
        # The other way round, a driver's heartbeat says UP a moment before its first
        # poll writes GOOD values: a member stays grouped after its device returns until
        # its signal has been written (not BAD) since the outage began, or for at most
        # device_grace_s (a point that stays bad is then annunciated on its own).
        nd = len(self.drivers)
        self.down_since_ns = np.zeros(nd, np.int64)  # wall time the outage was seen
        self.up_since = np.full(nd, math.nan)  # monotonic time it was seen back
        self._grace_ended = False

    # ------------------------------------------------------------------ inputs
    def seed(self, cond: Sequence[bool]) -> None:
        """Start from the conditions a previous run recorded (no spurious clear and
        raise again after a restart while the condition still holds)."""
        self.cond[:] = np.asarray(cond, np.bool_)
        self.raw[:] = self.cond
        self.pending.fill(math.nan)
        self._pending_idx = np.zeros(0, np.intp)
        self._everything = True

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
        self._touched[p] = True
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
        values = np.ascontiguousarray(values, np.float64)
        down = np.array([not drivers_up.get(d, False) for d in self.drivers], np.bool_)
        mask, moved = self._selection(values, quality)
        sel = np.arange(self.n, dtype=np.intp) if mask is None else np.flatnonzero(mask)
        self.evaluated_last = len(sel)
        raw_new, valid, val = self._raw(mask, _Inputs(values, quality, now_mono, now_wall_ns,
                                                      down))
        if mask is not None:
            raw_new, valid, val = raw_new[sel], valid[sel], val[sel]
        old = self.raw[sel]
        raw = np.where(valid, raw_new, old)
        self._recheck = sel[raw != old]
        self.raw[sel] = raw
        self.value[sel] = np.where(np.isnan(val), self.value[sel], val) if self.passes else val
        changed = self._delays(sel, now_mono)
        returning = self._device_times(down, now_mono, now_wall_ns)
        supp_changed = self._suppression(values, down, moved, returning)
        self._peaked, self._touched = self._touched, self._peaked
        self._touched.fill(False)
        self.peak_max.fill(math.nan)  # the journal-fed peaks start again
        self.peak_min.fill(math.nan)
        self._prev_v = np.array(values, np.float64, copy=True)
        self._prev_q = np.array(quality, np.uint8, copy=True)
        self._prev_down = down
        self._everything = False
        self.passes += 1
        return Changes(changed.tolist(), supp_changed.tolist())

    def _selection(self, values: F64, quality: npt.NDArray[np.uint8]
                   ) -> tuple[BOOL | None, BOOL | None]:
        """The alarms this pass evaluates (a mask), and the watched positions whose
        input moved (None, None: evaluate everything)."""
        if self._everything or not self.selective or len(values) != len(self._prev_v):
            return None, None
        # bit patterns: one compare, NaN equal to the same NaN (a 0.0 / -0.0 flip
        # counts as moved, which only costs an evaluation)
        moved = values.view(np.int64) != self._prev_v.view(np.int64)
        moved |= quality != self._prev_q
        moved |= self._touched  # written since the last pass (peaks, write times)
        moved |= self._peaked  # written before it: the peak gives way to the value
        mask = np.zeros(self.n, np.bool_)  # a mask, not np.unique: no sort, no hash
        mask[self.timed] = True
        mask[self._pending_idx] = True
        mask[self._recheck] = True
        if moved.any():
            mask[self._dependents(np.flatnonzero(moved))] = True
        return mask, moved

    def _raw(self, mask: BOOL | None, inp: _Inputs) -> tuple[BOOL, BOOL, F64]:
        """The undelayed condition of the alarms in ``mask`` (None: all), whether their
        inputs allowed computing it, and the value it was computed on (arrays over all
        alarms; only the masked entries are meaningful)."""
        n = self.n
        raw_new = self.raw.copy()
        valid = np.ones(n, np.bool_)
        val = np.full(n, math.nan)
        if mask is None:
            groups = self.idx
        else:  # the selection grouped by kind: one stable sort, slices per kind
            sel = np.flatnonzero(mask)
            ks = self.kind[sel]
            order = np.argsort(ks, kind="stable")
            by_kind = sel[order]
            ends = np.cumsum(np.bincount(ks, minlength=8)).tolist()
            groups = {k: by_kind[(ends[k - 1] if k else 0):ends[k]] for k in range(8)}
        for k, i in groups.items():
            if len(i):
                self._kind(k, i, (raw_new, valid, val), inp)
        return raw_new, valid, val

    def _kind(self, k: int, i: npt.NDArray[np.intp], out: tuple[BOOL, BOOL, F64],
              inp: _Inputs) -> None:
        """Fill ``raw_new``/``valid``/``val`` at the alarms ``i``, all of kind ``k``."""
        raw_new, valid, val = out
        values, quality, down = inp.values, inp.quality, inp.down
        if k == K_DEVICE:
            raw_new[i] = down[self.device_of[i]]
            return
        if k == K_STALE:
            age = inp.now_wall_ns - self.last_write_ns[self.p[i]]
            raw_new[i] = age > self.timeout_ns[i]
            val[i] = age / NS
            return
        pp = self.p[i]
        v = values[pp]
        q = quality[pp]
        good = q == GOOD
        was = self.raw[i]
        if k == K_HIGH:
            top = np.fmax(v, self.peak_max[pp])
            lim = self.limit[i]
            raw_new[i] = np.where(was, v > self.clear_at[i], top > lim)
            valid[i] = good
            val[i] = np.where(was, v, top)
        elif k == K_LOW:
            bottom = np.fmin(v, self.peak_min[pp])
            lim = self.limit[i]
            raw_new[i] = np.where(was, v < self.clear_at[i], bottom < lim)
            valid[i] = good
            val[i] = np.where(was, v, bottom)
        elif k == K_DEV:
            sp = self.p_sp[i]
            dev = np.abs(v - values[sp])
            lim = self.limit[i]
            raw_new[i] = np.where(was, dev > self.clear_at[i], dev > lim)
            valid[i] = good & (quality[sp] == GOOD)
            val[i] = v
        elif k == K_RATE:
            rate, ok = self._rate(v, good, inp.now_mono)
            lim, d = self.limit[i], self.direction[i]
            raw_new[i] = np.where(d > 0, rate > lim,
                                  np.where(d < 0, rate < -lim, np.abs(rate) > lim))
            valid[i] = ok
            val[i] = rate
        elif k == K_DISC:
            raw_new[i] = v == self.state_val[i]
            valid[i] = good
            val[i] = v
        elif k == K_BADQ:
            raw_new[i] = np.where(self.uncertain[i], q != GOOD, q == BAD)
            val[i] = v

    def _delays(self, sel: npt.NDArray[np.intp], now_mono: float) -> npt.NDArray[np.intp]:
        """Apply on/off delays to the alarms ``sel`` (every alarm with a delay running
        is among them; every other has its delayed condition equal to its raw one);
        the alarms whose delayed condition changed."""
        raw, cond, pend = self.raw[sel], self.cond[sel], self.pending[sel]
        diff = raw != cond
        if not len(self._pending_idx) and not diff.any():
            return np.zeros(0, np.intp)  # nothing started, nothing running
        pend = np.where(diff, np.where(np.isnan(pend), now_mono, pend), math.nan)
        delay = np.where(raw, self.on_delay[sel], self.off_delay[sel])
        hit = diff & (now_mono - pend >= delay)
        if hit.any():
            cond[hit] = raw[hit]
            pend[hit] = math.nan
            self.cond[sel] = cond
        self.pending[sel] = pend
        self._pending_idx = sel[~np.isnan(pend)]
        changed: npt.NDArray[np.intp] = sel[hit]
        return changed

    def _device_times(self, down: BOOL, now_mono: float, now_wall_ns: int) -> BOOL:
        """Track when each device went down and came back; the devices within their
        grace after returning."""
        self._grace_ended = False
        if not len(down):
            return down
        prev = self._prev_down
        was: BOOL = np.ones(len(down), np.bool_) if prev is None else prev
        went = down if prev is None else down & ~was
        self.down_since_ns[went] = now_wall_ns
        self.up_since[down] = math.nan
        self.up_since[~down & was & (self.down_since_ns > 0)] = now_mono
        had = ~np.isnan(self.up_since)
        with np.errstate(invalid="ignore"):
            returning: BOOL = had & (now_mono - self.up_since < self.device_grace_s)
        self.up_since[~returning] = math.nan
        self._grace_ended = bool((had & ~returning).any())
        return returning

    def _suppression(self, values: F64, down: BOOL, moved: BOOL | None,
                     returning: BOOL) -> npt.NDArray[np.intp]:
        """Design suppression now; the alarms where it changed. Recomputed only when a
        ``suppress_when`` value or a driver's state moved, or a device is returning."""
        if (moved is not None and not moved[self.supp_positions].any()
                and not returning.any() and not self._grace_ended
                and self._prev_down is not None
                and np.array_equal(down, self._prev_down)):
            return np.zeros(0, np.intp)
        supp = np.zeros(self.n, np.int8)
        hs = self.p_supp >= 0
        if hs.any():
            on = values[self.p_supp[hs]] != 0
            supp[np.flatnonzero(hs)[on]] = 1
        mem = self.member_of >= 0
        if mem.any() and len(down):
            idx = np.flatnonzero(mem)
            dev = self.member_of[idx]
            held = down[dev] | (returning[dev] & (
                self.last_write_ns[self.p[idx]] < self.down_since_ns[dev]))
            supp[idx[held]] = 2
        changed = np.flatnonzero(supp != self.supp)
        self.supp = supp
        return changed

    def _rate(self, v: F64, good: BOOL, now: float) -> tuple[F64, BOOL]:
        """d(value)/dt over each rate alarm's window (NaN while the ring fills). Rate
        alarms are timed, so every pass evaluates all of them, in order."""
        k = self.ring_pos
        row = self.ring[k]
        row[:] = v
        row[~good] = math.nan
        self.ring_t[k] = now
        if self.rate_window:  # the usual case: every rate alarm has the same window
            old_row = (k - self.rate_window) % self.ring_len
            v_old = self.ring[old_row]
            dt: F64 | float = now - float(self.ring_t[old_row])
        else:
            old = (k - self.rate_k) % self.ring_len
            v_old = self.ring[old, np.arange(len(v))]
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
