"""Which journal entries become samples: on change (deadband, minimum and maximum
interval) or on a fixed period.

Rules
-----
- Every signal gets the first ``record:`` rule whose pattern matches it (no rules:
  every signal on change). Resolved once, into per-signal numpy arrays.
- *Change*: a value written again unchanged is no sample; a change of quality or
  substatus always is (it bypasses the deadband and the minimum interval: a
  GOOD -> BAD -> GOOD flip must never be hidden). The deadband compares with the last
  *recorded* value: absolute, or in percent of the signal's ``min..max`` span (of the
  last recorded value's magnitude when the signal has no span); the larger applies.
- *Minimum interval*: a change inside it is held, the latest replacing the earlier,
  and recorded when the interval ends (if it still passes the deadband), so the last
  value before a quiet period is never lost to rate limiting.
- *Maximum interval*: a signal not recorded for that long gets a sample of its current
  value (``ts`` = now, ``wts`` = when the value was written), so a flat line in the
  history is known to be flat and not a dead recorder.
- *Period*: a sample of the current value every ``period_s`` on a fixed grid, whether
  or not it changed, stamped with the grid instant.

Speed
-----
Signals with plain change detection (no deadband, no minimum interval) are filtered
with numpy over the whole batch: an entry is a sample unless it repeats the previous
entry *of the same slot* (in the batch, or the state). That equals "differs from the
last recorded value" because an entry that was not recorded repeated what was. Only
signals with a deadband or a minimum interval take a per-entry Python path.

Time is the recorder's own clock (``now_ns``, CLOCK_REALTIME nanoseconds given by the
caller), so tests drive it without sleeping.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from petra.config._history import RecordRule, rule_for
from petra.history._samples import Samples, SignalTable
from petra.types import Quality, SignalType

MODE_OFF = 0
MODE_CHANGE = 1  # vectorised: plain change detection
MODE_FILTER = 2  # deadband and/or minimum interval: per entry
MODE_PERIOD = 3

_NS = 1_000_000_000


class Recorder:
    """Per-signal recording state and the rules that drive it."""

    def __init__(self, table: SignalTable, rules: Sequence[RecordRule],
                 spans: Sequence[float | None] | None = None) -> None:
        n = len(table.names)
        self.table = table
        self.types = table.type_array()
        self.mode = np.zeros(n, np.uint8)
        self.db_abs = np.zeros(n, np.float64)
        self.db_frac = np.zeros(n, np.float64)
        self.span = np.full(n, math.nan, np.float64)
        self.min_iv = np.zeros(n, np.int64)
        self.max_iv = np.zeros(n, np.int64)
        self.period = np.zeros(n, np.int64)
        for i, name in enumerate(table.names):
            rule = rule_for(list(rules), name)
            if rule is None or rule.mode == "off":
                continue
            if spans is not None and spans[i] is not None:
                self.span[i] = float(spans[i])  # type: ignore[arg-type]
            if rule.mode == "period":
                self.mode[i] = MODE_PERIOD
                self.period[i] = max(1, round((rule.period_s or 0) * _NS))
                continue
            self.db_abs[i] = rule.deadband
            self.db_frac[i] = rule.deadband_percent / 100.0
            self.min_iv[i] = round(rule.min_interval_s * _NS)
            self.max_iv[i] = round((rule.max_interval_s or 0.0) * _NS)
            filtered = rule.deadband > 0 or rule.deadband_percent > 0 or rule.min_interval_s > 0
            self.mode[i] = MODE_FILTER if filtered else MODE_CHANGE
        # booleans carry no deadband: any change of a bool is a change
        is_bool = self.types == int(SignalType.BOOL)
        self.db_abs[is_bool] = 0
        self.db_frac[is_bool] = 0
        self.is_change = self.mode == MODE_CHANGE
        self.filtered = np.flatnonzero(self.mode == MODE_FILTER)
        self.periodic = np.flatnonzero(self.mode == MODE_PERIOD)
        self.beating = np.flatnonzero(self.max_iv > 0)
        self.recorded = self.mode != MODE_OFF
        # current (latest seen) value of each slot
        self.cur_v = np.zeros(n, np.uint64)
        self.cur_q = np.zeros(n, np.uint8)
        self.cur_s = np.zeros(n, np.uint8)
        self.cur_w = np.zeros(n, np.int64)
        self.has_cur = np.zeros(n, np.bool_)
        # last recorded value of each slot
        self.rec_v = np.zeros(n, np.uint64)
        self.rec_q = np.zeros(n, np.uint8)
        self.rec_s = np.zeros(n, np.uint8)
        self.has_rec = np.zeros(n, np.bool_)
        self.last_t = np.zeros(n, np.int64)  # recorder time of the last sample
        self.next_period = np.zeros(n, np.int64)
        # held changes (minimum interval)
        self.pending: dict[int, tuple[int, int, int, int, int]] = {}

    # ------------------------------------------------------------------ seeding
    def seed(self, values: npt.NDArray[np.uint64], quality: npt.NDArray[np.uint8],
             source_ts: npt.NDArray[np.int64], now_ns: int) -> None:
        """Take the slots' current values as the state, emitting nothing (a resumed
        recorder: the samples before were recorded by the previous process)."""
        self.cur_v[:] = values
        self.cur_q[:] = quality
        self.cur_w[:] = source_ts
        self.has_cur[:] = True
        self.last_t[:] = now_ns
        self._start_periods(now_ns)

    def snapshot(self, values: npt.NDArray[np.uint64], quality: npt.NDArray[np.uint8],
                 source_ts: npt.NDArray[np.int64], now_ns: int,
                 only: npt.NDArray[np.bool_] | None = None) -> Samples:
        """Samples of every recorded signal (or of those in the mask ``only``) whose
        value or quality differs from what was last recorded: all of them on a fresh
        start; after lost journal entries, the ones that changed meanwhile. ``ts`` is
        each slot's source timestamp."""
        n = len(self.mode)
        idx = np.arange(n, dtype=np.uint32)
        sub = np.where(quality == int(Quality.GOOD), 0, self.cur_s).astype(np.uint8)
        changed = ~self.has_rec | (self.rec_v != values) | (self.rec_q != quality)
        keep = self.recorded & changed
        if only is not None:
            keep &= only
            values = np.where(only, values, self.cur_v)
            quality = np.where(only, quality, self.cur_q).astype(np.uint8)
            source_ts = np.where(only, source_ts, self.cur_w)
            sub = np.where(only, sub, self.cur_s).astype(np.uint8)
        self.cur_v[:] = values
        self.cur_q[:] = quality
        self.cur_s[:] = sub
        self.cur_w[:] = source_ts
        self.has_cur[:] = True
        if not self.next_period.any():
            self._start_periods(now_ns)
        out = Samples(idx[keep], values[keep].astype(np.uint64), quality[keep].astype(np.uint8),
                      sub[keep], source_ts[keep].astype(np.int64),
                      source_ts[keep].astype(np.int64))
        self._mark_recorded(out.sig, now_ns)
        for k in out.sig.tolist():
            self.pending.pop(k, None)
        return out

    def _start_periods(self, now_ns: int) -> None:
        p = self.periodic
        if len(p):
            per = self.period[p]
            self.next_period[p] = (now_ns // per + 1) * per

    def _mark_recorded(self, slots: npt.NDArray[np.uint32], now_ns: int) -> None:
        self.rec_v[slots] = self.cur_v[slots]
        self.rec_q[slots] = self.cur_q[slots]
        self.rec_s[slots] = self.cur_s[slots]
        self.has_rec[slots] = True
        self.last_t[slots] = now_ns

    # ------------------------------------------------------------------ entries
    def offer(  # noqa: PLR0917  # the columns of one journal batch
        self, slot: npt.NDArray[np.uint32], value: npt.NDArray[np.uint64],
        quality: npt.NDArray[np.uint8], substatus: npt.NDArray[np.uint8],
        source_ts: npt.NDArray[np.int64], write_ts: npt.NDArray[np.int64], now_ns: int,
    ) -> Samples:
        """The samples among a batch of journal entries (in journal order)."""
        n = len(slot)
        if n == 0:
            return Samples.empty()
        mode = self.mode[slot]
        keep = np.zeros(n, np.bool_)
        fast = np.flatnonzero(mode == MODE_CHANGE)
        if len(fast):
            keep[fast] = self._changes(slot[fast], value[fast], quality[fast],
                                       substatus[fast])
        slow = np.flatnonzero(mode == MODE_FILTER)
        held: list[int] = []
        if len(slow):
            self._filter(slow, slot, value, quality, substatus, source_ts, write_ts, now_ns,
                         keep, held)
        # the latest seen value of every slot in the batch (last entry of each slot)
        rev = slot[::-1]
        _, first_rev = np.unique(rev, return_index=True)
        last = n - 1 - first_rev
        s_last = slot[last]
        self.cur_v[s_last] = value[last]
        self.cur_q[s_last] = quality[last]
        self.cur_s[s_last] = substatus[last]
        self.cur_w[s_last] = write_ts[last]
        self.has_cur[s_last] = True
        kept = np.flatnonzero(keep)
        out = Samples(slot[kept].astype(np.uint32), value[kept].astype(np.uint64),
                      quality[kept].astype(np.uint8), substatus[kept].astype(np.uint8),
                      source_ts[kept].astype(np.int64), write_ts[kept].astype(np.int64))
        if len(fast):
            # A change-mode slot's last entry is either kept or equal to the last kept
            # one: its recorded value is now its current value.
            sl = s_last[self.mode[s_last] == MODE_CHANGE]
            self.rec_v[sl] = self.cur_v[sl]
            self.rec_q[sl] = self.cur_q[sl]
            self.rec_s[sl] = self.cur_s[sl]
            self.has_rec[sl] = True
            self.last_t[slot[fast[keep[fast]]]] = now_ns
        return out

    def _changes(self, s: npt.NDArray[np.uint32], v: npt.NDArray[np.uint64],
                 q: npt.NDArray[np.uint8], sub: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
        """Vectorised change detection for entries of change-mode slots."""
        order = np.argsort(s, kind="stable")
        ss = s[order]
        vs = v[order]
        qs = q[order]
        subs = sub[order]
        head = np.empty(len(ss), np.bool_)
        head[0] = True
        np.not_equal(ss[1:], ss[:-1], out=head[1:])
        prev_v = np.empty_like(vs)
        prev_q = np.empty_like(qs)
        prev_s = np.empty_like(subs)
        prev_v[1:] = vs[:-1]
        prev_q[1:] = qs[:-1]
        prev_s[1:] = subs[:-1]
        hs = ss[head]
        prev_v[head] = self.cur_v[hs]
        prev_q[head] = self.cur_q[hs]
        prev_s[head] = self.cur_s[hs]
        known = np.ones(len(ss), np.bool_)
        known[head] = self.has_cur[hs]
        changed = ~known | (vs != prev_v) | (qs != prev_q) | (subs != prev_s)
        out = np.empty(len(ss), np.bool_)
        out[order] = changed
        return out

    def _filter(  # noqa: PLR0917  # the columns of one batch
        self, idx: npt.NDArray[np.intp], slot: npt.NDArray[np.uint32],
        value: npt.NDArray[np.uint64], quality: npt.NDArray[np.uint8],
        substatus: npt.NDArray[np.uint8], source_ts: npt.NDArray[np.int64],
        write_ts: npt.NDArray[np.int64], now_ns: int, keep: npt.NDArray[np.bool_],
        held: list[int],
    ) -> None:
        """Deadband and minimum interval, entry by entry (the state is sequential)."""
        fl = value.view(np.float64)
        it = value.view(np.int64)
        types = self.types
        for k in idx.tolist():
            sl = int(slot[k])
            v = int(value[k])
            q = int(quality[k])
            sb = int(substatus[k])
            if not self.has_rec[sl] or q != self.rec_q[sl] or sb != self.rec_s[sl]:
                keep[k] = True  # first sample, or quality/substatus change: always
            else:
                if v == int(self.rec_v[sl]):
                    self.pending.pop(sl, None)  # back to the recorded value
                    continue
                fv = float(fl[k]) if types[sl] == SignalType.FLOAT else float(it[k])
                rv = self.rec_v[sl:sl + 1]
                last = float(rv.view(np.float64)[0]) if types[sl] == SignalType.FLOAT \
                    else float(rv.view(np.int64)[0])
                span = self.span[sl]
                band = max(self.db_abs[sl],
                           self.db_frac[sl] * (span if math.isfinite(span) else abs(last)))
                if band > 0 and math.isfinite(fv) and math.isfinite(last) and (
                        abs(fv - last) < band):
                    self.pending.pop(sl, None)
                    continue
                if self.min_iv[sl] and now_ns - int(self.last_t[sl]) < int(self.min_iv[sl]):
                    self.pending[sl] = (v, q, sb, int(source_ts[k]), int(write_ts[k]))
                    held.append(k)
                    continue
            keep[k] = True
            self.rec_v[sl] = v
            self.rec_q[sl] = q
            self.rec_s[sl] = sb
            self.has_rec[sl] = True
            self.last_t[sl] = now_ns
            self.pending.pop(sl, None)

    # ------------------------------------------------------------------ time
    def tick(self, now_ns: int) -> Samples:
        """Held changes whose interval ended, heartbeats that are due, periodic samples."""
        parts: list[Samples] = []
        if self.pending:
            rows = []
            for sl, (v, q, sb, ts, wts) in list(self.pending.items()):
                if now_ns - int(self.last_t[sl]) >= int(self.min_iv[sl]):
                    rows.append((sl, v, q, sb, ts, wts))
                    del self.pending[sl]
            if rows:
                a = np.array(rows, dtype=np.int64).T
                sl_arr = a[0].astype(np.uint32)
                vals = np.array([r[1] for r in rows], np.uint64)
                parts.append(Samples(sl_arr, vals, a[2].astype(np.uint8),
                                     a[3].astype(np.uint8), a[4], a[5]))
                self.rec_v[sl_arr] = vals
                self.rec_q[sl_arr] = a[2].astype(np.uint8)
                self.rec_s[sl_arr] = a[3].astype(np.uint8)
                self.has_rec[sl_arr] = True
                self.last_t[sl_arr] = now_ns
        b = self.beating
        if len(b):
            due = b[self.has_cur[b] & (now_ns - self.last_t[b] >= self.max_iv[b])]
            if len(due):
                parts.append(self._current(due, now_ns))
                self._mark_recorded(due.astype(np.uint32), now_ns)
                for sl in due.tolist():
                    self.pending.pop(sl, None)
        p = self.periodic
        if len(p):
            due = p[self.has_cur[p] & (self.next_period[p] <= now_ns)]
            if len(due):
                # stamped on the grid instant, not the (jittered) instant of the tick:
                # regular timestamps cost next to nothing in Parquet and ClickHouse
                per = self.period[due]
                grid = (now_ns // per) * per
                parts.append(self._current(due, grid))
                self._mark_recorded(due.astype(np.uint32), now_ns)
                per = self.period[due]
                self.next_period[due] = (now_ns // per + 1) * per
        return Samples.concat(parts)

    def _current(self, slots: npt.NDArray[np.intp], ts: int | npt.NDArray[np.int64]
                 ) -> Samples:
        n = len(slots)
        return Samples(slots.astype(np.uint32), self.cur_v[slots].copy(),
                       self.cur_q[slots].copy(), self.cur_s[slots].copy(),
                       np.broadcast_to(np.asarray(ts, np.int64), (n,)).copy(),
                       self.cur_w[slots].copy())

    def next_due_ns(self) -> int | None:
        """When :meth:`tick` next has something to do (None: nothing scheduled)."""
        cands: list[int] = []
        if self.pending:
            cands.extend(int(self.last_t[sl] + self.min_iv[sl]) for sl in self.pending)
        b = self.beating
        if len(b) and self.has_cur[b].any():
            hb = b[self.has_cur[b]]
            cands.append(int((self.last_t[hb] + self.max_iv[hb]).min()))
        p = self.periodic
        if len(p) and self.has_cur[p].any():
            cands.append(int(self.next_period[p].min()))
        return min(cands) if cands else None
