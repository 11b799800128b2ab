"""The alarm engine: the state machine of every alarm, driven by conditions, design
suppression, operator actions and time.

Pure logic: no segment, no files, no clock of its own. Callers pass the wall-clock time
(ns since the epoch) into every call, so tests drive it with a fake clock and the event
log replays it exactly. Every change of state is an :class:`~petra.alarms.Event` in
:attr:`AlarmEngine.events` carrying the alarm's whole record after the change; the
process writes those to the event log (durably) before it tells anyone about them.

After every transition the engine *settles* the alarm: it applies whatever the current
inputs (condition, design suppression) now call for, so an alarm that is unshelved,
returned to service or acknowledged while its condition holds (or while suppression is
on) ends in the state the process asks for, each step an event of its own::

    NORMAL,     condition, not suppressed  -> ACTIVATE (raised: UNACK)
    NORMAL,     condition, suppressed      -> SUPPRESS
    ACKED,      condition, suppressed      -> SUPPRESS
    ACKED/UNACK, no condition              -> CLEAR
    RTN_UNACK/LATCHED, condition, not suppressed -> ACTIVATE
    SUPPRESSED, suppression off or condition gone -> UNSUPPRESS (then settle again)

Design suppression therefore only shows where it hides something: SUPPRESSED means "the
condition holds, but by design it means nothing now" (pump stopped, low flow), and a
plant start with every driver still connecting does not write an event per alarm.
"""

from __future__ import annotations

import math
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from petra.alarms._metrics import AlarmMetrics
from petra.alarms._model import OP_PERMISSION, Action, AlarmRecord, Event
from petra.alarms._states import (
    ACKABLE,
    ACTIVE,
    HIDDEN,
    UNACKED,
    VISIBLE,
    AlarmState,
    Trigger,
    next_state,
)
from petra.config._alarms import AlarmDef
from petra.security import PermissionDeniedError

S = AlarmState
T = Trigger
NS = 1_000_000_000
RAISES_FROM = frozenset({S.NORMAL, S.RTN_UNACK, S.LATCHED})

DEFAULT_MESSAGES = {
    "high": "{signal} high: {value} {unit} (limit {limit} {unit})",
    "high_high": "{signal} high-high: {value} {unit} (limit {limit} {unit})",
    "low": "{signal} low: {value} {unit} (limit {limit} {unit})",
    "low_low": "{signal} low-low: {value} {unit} (limit {limit} {unit})",
    "deviation": "{signal} deviates from {setpoint}: {value} {unit} (band {limit} {unit})",
    "rate": "{signal} changes at {value} {unit}/s (limit {limit} {unit}/s)",
    "discrete": "{signal} is {value}",
    "bad_quality": "{signal}: bad quality",
    "stale": "{signal}: no update for {value} s (limit {limit} s)",
    "device": "device is not connected",
}


def _num(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "?"
    return f"{x:.6g}"


@dataclass(frozen=True, slots=True)
class AlarmInfo:
    """What the engine knows of an alarm beyond its record."""

    index: int
    name: str
    defn: AlarmDef
    unit: str = ""
    group: str | None = None
    shelve_max_s: float = 8 * 3600.0

    @property
    def latching(self) -> bool:
        return self.defn.latch

    def message(self, value: float | None) -> str:
        """The definition's message template (or the kind's default) filled in. A field
        whose format spec does not fit its value (``{value:.1f}`` of a missing value) is
        written plainly: a message never fails."""
        d = self.defn
        v: object = value if value is not None and math.isfinite(value) else None
        if d.type == "discrete" and v is not None:
            v = bool(v) if isinstance(d.state, bool) else int(float(str(v)))
        template = d.message or (("{description}: " if d.description else "")
                                 + DEFAULT_MESSAGES[d.type])
        fields: dict[str, object] = {
            "name": self.name, "description": d.description, "unit": self.unit,
            "signal": d.signal or d.driver or self.name, "setpoint": d.setpoint or "",
            "priority": d.priority, "area": d.area, "equipment": d.equipment,
            "type": d.type, "value": v,
            "limit": d.limit if d.limit is not None else d.timeout_s}
        return render(template, fields)


def render(template: str, fields: Mapping[str, object]) -> str:
    """``template`` with its fields filled in; numbers without a spec as ``%.6g``, a
    missing value as ``?``, and a spec that does not fit its value ignored."""
    out: list[str] = []
    for literal, name, spec, conv in string.Formatter().parse(template):
        out.append(literal)
        if name is None:
            continue
        value = fields.get(name)
        if conv == "r":
            value = repr(value)
        elif conv in ("s", "a"):
            value = str(value)
        if value is None:
            out.append("?")
        elif spec:
            try:
                out.append(format(value, spec))
            except (ValueError, TypeError):
                out.append(str(value))
        elif isinstance(value, float):
            out.append(_num(value))
        else:
            out.append(str(value))
    return "".join(out)


class _Who(NamedTuple):
    """Who asked for a transition (empty for the process and for time)."""

    user: str
    role: str
    via: str
    request: str


@dataclass(frozen=True, slots=True)
class ActionResult:
    """The answer to an action: what was done, what was skipped and why."""

    ok: bool
    done: tuple[str, ...] = ()
    skipped: Mapping[str, str] | None = None
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": self.ok}
        if self.done:
            out["done"] = list(self.done)
        if self.skipped:
            out["skipped"] = dict(self.skipped)
        if self.error:
            out["error"] = self.error
        return out


class AlarmEngine:
    """Every alarm's record and the rules that move it."""

    def __init__(self, defs: Sequence[AlarmDef], *, units: Mapping[str, str] | None = None,
                 groups: Mapping[str, str | None] | None = None,
                 shelve_max_s: float = 8 * 3600.0,
                 metrics: AlarmMetrics | None = None) -> None:
        units = units or {}
        groups = groups or {}
        self.infos = [AlarmInfo(i, d.name, d, units.get(d.name, ""),
                                groups.get(d.name, d.group),
                                d.shelve_max_s if d.shelve_max_s is not None else shelve_max_s)
                      for i, d in enumerate(defs)]
        self.by_name = {info.name: info.index for info in self.infos}
        self.records = [AlarmRecord() for _ in defs]
        self.suppress = [""] * len(defs)  # why suppressed by design now ("" = not)
        self.metrics = metrics or AlarmMetrics()
        self.events: list[Event] = []
        self.changed: set[int] = set()
        self._members: dict[str, list[int]] = {}
        for info in self.infos:
            if info.group:
                self._members.setdefault(info.group, []).append(info.index)
        self._shelved: set[int] = set()
        self.listeners: list[Callable[[Event], None]] = []

    # ------------------------------------------------------------------ restore
    def restore(self, records: Mapping[str, dict[str, Any]]) -> int:
        """Take the records a previous run left (by alarm name); unknown names are
        ignored (an alarm removed from the config). Returns how many were taken."""
        n = 0
        for name, doc in records.items():
            i = self.by_name.get(name)
            if i is None or not isinstance(doc, dict):
                continue
            self.records[i] = AlarmRecord.from_json(doc)
            if self.records[i].state is S.SHELVED:
                self._shelved.add(i)
            n += 1
        return n

    def drain(self) -> tuple[list[Event], set[int]]:
        """The events since the last drain and the alarms they touched."""
        events, self.events = self.events, []
        changed, self.changed = self.changed, set()
        return events, changed

    # ------------------------------------------------------------------ process inputs
    def set_condition(self, i: int, cond: bool, now_ns: int, value: float | None = None
                      ) -> None:
        """The condition of alarm ``i`` after its delays (from the evaluator)."""
        rec = self.records[i]
        if rec.cond == cond:
            return
        rec.cond = cond
        if value is not None and math.isfinite(value):
            rec.value = value
        self.changed.add(i)
        if not cond and rec.state is S.SHELVED and rec.shelve_oneshot:
            self._fire(i, T.UNSHELVE, now_ns, reason="returned to normal (one-shot shelve)")
        self._settle(i, now_ns)

    def set_suppression(self, i: int, reason: str, now_ns: int) -> None:
        """Design suppression of alarm ``i`` on (a reason) or off ("")."""
        if self.suppress[i] == reason:
            return
        self.suppress[i] = reason
        self._settle(i, now_ns)

    def tick(self, now_ns: int) -> None:
        """Time-driven transitions: shelvings that expire."""
        for i in sorted(self._shelved):
            rec = self.records[i]
            if rec.state is S.SHELVED and rec.shelved_until_ns <= now_ns:
                self._fire(i, T.UNSHELVE, now_ns, reason="shelving expired")
                self._settle(i, now_ns)

    # ------------------------------------------------------------------ operator actions
    def act(self, action: Action, now_ns: int) -> ActionResult:
        """Apply an operator or engineer action; the result says what happened."""
        try:
            action.principal.require(OP_PERMISSION[action.op])
        except PermissionDeniedError as exc:
            return ActionResult(False, error=str(exc))
        if action.expires_ns is not None and now_ns > action.expires_ns:
            return ActionResult(False, error="the request expired before it was handled")
        if action.op == "ack" and not action.alarms:
            targets = [i.index for i in self.infos
                       if self.records[i.index].state in ACKABLE
                       and (action.area is None or i.defn.area == action.area)]
            for i in targets:
                self._apply(i, action, now_ns)
            return ActionResult(True, tuple(self.infos[i].name for i in targets))
        unknown = [a for a in action.alarms if a not in self.by_name]
        if unknown:
            return ActionResult(False, error=f"unknown alarm {unknown[0]!r}"
                                + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1
                                   else ""))
        done: list[str] = []
        skipped: dict[str, str] = {}
        for name in dict.fromkeys(action.alarms):
            why = self._apply(self.by_name[name], action, now_ns)
            if why:
                skipped[name] = why
            else:
                done.append(name)
        if len(action.alarms) == 1 and skipped:
            return ActionResult(False, error=next(iter(skipped.values())))
        return ActionResult(True, tuple(done), skipped or None)

    def _apply(self, i: int, a: Action, now_ns: int) -> str:  # noqa: PLR0911, PLR0912
        """Apply ``a`` to alarm ``i``; "" when done, else why not."""
        rec = self.records[i]
        info = self.infos[i]
        who = _Who(a.user, a.role.label, a.via, a.request)
        state = rec.state.value
        if a.op == "comment":
            self._event(i, now_ns, "comment", reason=a.text, user=who.user, role=who.role,
                        via=who.via, request=who.request)
            return ""
        if a.op == "ack":
            if rec.state not in ACKABLE:
                return f"{info.name} is {state}; only unack and rtn_unack alarms can be " \
                       "acknowledged"
            self._fire(i, T.ACK, now_ns, reason=a.reason, who=who)
        elif a.op == "reset":
            if rec.state is not S.LATCHED:
                return f"{info.name} is {state}; only latched alarms are reset"
            self._fire(i, T.RESET, now_ns, reason=a.reason, who=who)
        elif a.op == "shelve":
            if rec.state in HIDDEN:
                return f"{info.name} is {state}; it cannot be shelved"
            limit = info.shelve_max_s
            if a.duration_s is not None and a.duration_s > limit:
                return (f"{info.name} may be shelved for at most {limit:g} s "
                        f"(asked {a.duration_s:g} s)")
            until = now_ns + int((a.duration_s if a.duration_s is not None else limit) * NS)
            self._fire(i, T.SHELVE, now_ns, reason=a.reason, shelve=(until, a.oneshot),
                       who=who)
        elif a.op == "unshelve":
            if rec.state is not S.SHELVED:
                return f"{info.name} is {state}, not shelved"
            self._fire(i, T.UNSHELVE, now_ns, reason=a.reason, who=who)
        elif a.op == "remove":
            if rec.state is S.OUT_OF_SERVICE:
                return f"{info.name} is already out of service"
            self._fire(i, T.REMOVE, now_ns, reason=a.reason, who=who)
        elif a.op == "return":
            if rec.state is not S.OUT_OF_SERVICE:
                return f"{info.name} is {state}, not out of service"
            self._fire(i, T.RETURN, now_ns, reason=a.reason, who=who)
        self._settle(i, now_ns)
        return ""

    # ------------------------------------------------------------------ transitions
    def _settle(self, i: int, now_ns: int) -> None:
        """Bring alarm ``i`` in line with its inputs (see the module doc)."""
        rec = self.records[i]
        for _ in range(6):  # each rule leaves a state no rule fires again from
            s, cond, supp = rec.state, rec.cond, bool(self.suppress[i])
            if s is S.SUPPRESSED and not (cond and supp):
                self._fire(i, T.UNSUPPRESS, now_ns,
                           reason="condition cleared" if supp else "suppression ended")
            elif s in (S.NORMAL, S.ACKED) and cond and supp:
                self._fire(i, T.SUPPRESS, now_ns, reason=self.suppress[i])
            elif s in RAISES_FROM and cond and not supp:
                self._fire(i, T.ACTIVATE, now_ns)
            elif s in ACTIVE and not cond:
                self._fire(i, T.CLEAR, now_ns)
            else:
                return

    def _fire(self, i: int, trigger: Trigger, now_ns: int, *, reason: str = "",
              who: _Who | None = None, shelve: tuple[int, bool] | None = None) -> bool:
        user, role, via, request = who if who is not None else ("", "", "", "")
        info = self.infos[i]
        rec = self.records[i]
        old = rec.state
        new = next_state(old, trigger, latching=info.latching)
        if new is None:
            return False
        first_out = False
        if new is S.UNACK and old in RAISES_FROM:
            first_out = self._first_out(i)
            rec.occurrence += 1
            rec.raised_ns = now_ns
            rec.first_out = first_out
            rec.message = info.message(rec.value)
            rec.acked_ns, rec.acked_by = 0, ""
            self.metrics.raised(info.name, now_ns)
        if trigger is T.ACK:
            rec.acked_ns, rec.acked_by = now_ns, user
            self.metrics.acked(rec.raised_ns, now_ns)
        if trigger is T.SHELVE and shelve is not None:
            rec.shelved_until_ns, rec.shelve_oneshot = shelve
            rec.shelved_by, rec.shelve_reason = user, reason
            self._shelved.add(i)
        if old is S.SHELVED and new is not S.SHELVED:
            rec.shelved_until_ns, rec.shelve_oneshot = 0, False
            rec.shelved_by = rec.shelve_reason = ""
            self._shelved.discard(i)
        if trigger is T.REMOVE:
            rec.oos_by, rec.oos_reason = user, reason
        if trigger is T.RETURN:
            rec.oos_by = rec.oos_reason = ""
        rec.suppressed_by = self.suppress[i] if new is S.SUPPRESSED else ""
        rec.state = new
        rec.since_ns = now_ns
        self.changed.add(i)
        self._event(i, now_ns, "transition", trigger=trigger.value, from_state=old.value,
                    to_state=new.value, user=user, role=role, via=via, reason=reason,
                    request=request, first_out=first_out)
        return True

    def _first_out(self, i: int) -> bool:
        """Raised while no other alarm of its group stands (active or unacknowledged)."""
        group = self.infos[i].group
        if not group:
            return False
        return not any(j != i and (self.records[j].state in ACTIVE
                                   or self.records[j].state in UNACKED)
                       for j in self._members.get(group, ()))

    def _event(self, i: int, now_ns: int, kind: str, **kw: Any) -> None:
        info = self.infos[i]
        rec = self.records[i]
        ev = Event(time_ns=now_ns, alarm=info.name, event=kind, priority=info.defn.priority,
                   area=info.defn.area, occurrence=rec.occurrence, value=rec.value,
                   message=rec.message, record=replace(rec), **kw)
        self.events.append(ev)
        for fn in self.listeners:
            fn(ev)

    # ------------------------------------------------------------------ views
    def counts(self, now_ns: int, standing_after_s: float) -> dict[str, int]:
        """Alarms per kind of state, for the heartbeat and the status file."""
        active = unacked = hidden = standing = 0
        limit = int(standing_after_s * NS)
        for rec in self.records:
            s = rec.state
            if s in ACTIVE:
                active += 1
                if rec.raised_ns and now_ns - rec.raised_ns > limit:
                    standing += 1
            if s in UNACKED:
                unacked += 1
            if s in HIDDEN:
                hidden += 1
        return {"active": active, "unacked": unacked, "hidden": hidden,
                "standing": standing}

    def row(self, i: int) -> dict[str, Any]:
        """One alarm as the published list shows it."""
        info = self.infos[i]
        d = info.defn
        out = self.records[i].to_json()
        out.update({"name": info.name, "type": d.type, "priority": d.priority,
                    "class": d.alarm_class, "area": d.area, "equipment": d.equipment,
                    "signal": d.signal or "", "driver": d.driver or "",
                    "description": d.description, "consequence": d.consequence,
                    "action": d.action, "group": info.group or "",
                    "visible": self.records[i].state in VISIBLE,
                    "unit": info.unit})
        return out
