"""What the alarm manager holds per alarm, what it records, and what it is asked to do.

:class:`AlarmRecord` is one alarm's persistent state (written with every event, so a
replay of the event log rebuilds it exactly). :class:`Event` is one line of the event
journal. :class:`Action` is an operator's or engineer's request, parsed and checked
from the JSON a front end wrote into the action spool (see ``docs/alarms.md``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from petra.alarms._states import AlarmState
from petra.errors import PetraError
from petra.security import Permission, Principal
from petra.types import AccessRole

MAX_TEXT = 512
MAX_USER = 128
MAX_TARGETS = 10_000


@dataclass(slots=True)
class AlarmRecord:
    """One alarm's state; every field is written to the event log with each event."""

    state: AlarmState = AlarmState.NORMAL
    since_ns: int = 0
    """When it entered ``state`` (wall clock, ns since the epoch)."""
    cond: bool = False
    """The condition after its on/off delays, as of the last evaluation."""
    occurrence: int = 0
    """How many times it has been raised (entered UNACK anew)."""
    raised_ns: int = 0
    """When the current occurrence was raised."""
    value: float | None = None
    """The value at the last transition (the measured value, or the rate)."""
    message: str = ""
    """The message of the current occurrence, with its value filled in."""
    first_out: bool = False
    """The current occurrence was the first of its group."""
    acked_ns: int = 0
    acked_by: str = ""
    shelved_until_ns: int = 0
    shelve_oneshot: bool = False
    shelved_by: str = ""
    shelve_reason: str = ""
    oos_by: str = ""
    oos_reason: str = ""
    suppressed_by: str = ""
    """Why it is suppressed by design (the signal, or the device that is down)."""

    def to_json(self) -> dict[str, Any]:
        d = {name: getattr(self, name) for name in _RECORD_FIELDS}  # asdict is 10x slower
        d["state"] = self.state.value
        if self.value is not None and not math.isfinite(self.value):
            d["value"] = None
        return d

    def is_fresh(self) -> bool:
        """Never raised, nothing set: what a new alarm starts as (not worth storing)."""
        return self == _FRESH

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> AlarmRecord:
        """Rebuild from :meth:`to_json`; unknown keys are ignored (a newer writer), a bad
        state reads as NORMAL (re-evaluation then puts it right)."""
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in doc.items() if k in known}
        try:
            kw["state"] = AlarmState(kw.get("state", "normal"))
        except ValueError:
            kw["state"] = AlarmState.NORMAL
        rec = cls(**kw)
        return rec


_RECORD_FIELDS = tuple(f.name for f in fields(AlarmRecord))
_FRESH = AlarmRecord()


@dataclass(slots=True)
class Event:
    """One entry of the event journal: a transition, a comment, a refused action."""

    time_ns: int
    alarm: str
    event: str  # "transition", "comment", "refused"
    trigger: str = ""
    from_state: str = ""
    to_state: str = ""
    user: str = ""
    role: str = ""
    via: str = ""
    reason: str = ""
    priority: str = ""
    area: str = ""
    occurrence: int = 0
    value: float | None = None
    message: str = ""
    first_out: bool = False
    request: str = ""
    record: AlarmRecord | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The event as the journal, MQTT and history carry it (no empty fields)."""
        out: dict[str, Any] = {"time_ns": self.time_ns, "alarm": self.alarm,
                               "event": self.event}
        for key in ("trigger", "from_state", "to_state", "user", "role", "via", "reason",
                    "priority", "area", "message", "request"):
            v = getattr(self, key)
            if v:
                out[key] = v
        if self.occurrence:
            out["occurrence"] = self.occurrence
        if self.value is not None and math.isfinite(self.value):
            out["value"] = self.value
        if self.first_out:
            out["first_out"] = True
        out.update(self.extra)
        return out


# ----------------------------------------------------------------------------- actions
OPS = ("ack", "reset", "shelve", "unshelve", "remove", "return", "comment")
OP_PERMISSION: dict[str, Permission] = {
    "ack": Permission.ALARM_ACK,
    "reset": Permission.ALARM_ACK,
    "comment": Permission.ALARM_ACK,
    "shelve": Permission.ALARM_SHELVE,
    "unshelve": Permission.ALARM_SHELVE,
    "remove": Permission.ALARM_SERVICE,
    "return": Permission.ALARM_SERVICE,
}
"""The permission each operation needs; which roles hold it is the security package's
one table (``petra.security.ROLE_PERMISSIONS``: operator acknowledges and shelves,
engineer takes out of service)."""
OP_ALIASES = {"oos": "remove", "out_of_service": "remove", "in_service": "return",
              "rts": "return", "acknowledge": "ack"}


class ActionError(PetraError, ValueError):
    """A request that cannot be parsed or is not allowed; the text is the answer."""


@dataclass(frozen=True, slots=True)
class Action:
    """A checked request from the spool (or a test)."""

    op: str
    user: str
    role: AccessRole
    alarms: tuple[str, ...] = ()
    area: str | None = None
    all: bool = False
    reason: str = ""
    duration_s: float | None = None
    oneshot: bool = False
    text: str = ""
    via: str = ""
    source: str = ""
    request: str = ""
    expires_ns: int | None = None

    @property
    def principal(self) -> Principal:
        """Who acts, as the security package and the audit log know it."""
        return Principal(self.user, self.role, self.via or "local", self.source)


def _text(body: dict[str, Any], key: str, limit: int = MAX_TEXT) -> str:
    v = body.get(key, "")
    if v is None:
        return ""
    if not isinstance(v, str):
        raise ActionError(f"{key} must be a string")
    if len(v) > limit:
        raise ActionError(f"{key} is longer than {limit} characters")
    if any(ord(c) < 32 and c not in "\t" for c in v):
        raise ActionError(f"{key} holds control characters")
    return v


def parse_action(body: dict[str, Any]) -> Action:  # noqa: PLR0912, PLR0915 - one check per field
    """Check a request body and make an :class:`Action`; :class:`ActionError` says why
    not (the text goes back to whoever asked)."""
    op = body.get("op")
    if not isinstance(op, str):
        raise ActionError(f"op must be one of {', '.join(OPS)}")
    op = OP_ALIASES.get(op, op)
    if op not in OPS:
        raise ActionError(f"unknown op {body.get('op')!r}; expected one of {', '.join(OPS)}")
    user = _text(body, "user", MAX_USER)
    if not user.strip():
        raise ActionError("user is required (who acts is recorded with every action)")
    try:
        role = AccessRole.parse(body.get("role"))
    except ValueError as exc:
        raise ActionError(str(exc)) from None
    raw = body.get("alarms", [])
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(a, str) and a for a in raw):
        raise ActionError("alarms must be a list of alarm names")
    if len(raw) > MAX_TARGETS:
        raise ActionError(f"at most {MAX_TARGETS} alarms per request")
    area = body.get("area")
    if area is not None and not isinstance(area, str):
        raise ActionError("area must be a string")
    every = body.get("all", False)
    if not isinstance(every, bool):
        raise ActionError("all must be true or false")
    if op == "ack":
        if sum((bool(raw), area is not None, every)) != 1:
            raise ActionError("ack needs exactly one of alarms, area or all")
    elif area is not None or every:
        raise ActionError(f"{op} takes alarms by name (area and all are for ack)")
    elif not raw:
        raise ActionError(f"{op} needs alarms")
    if op == "comment" and len(raw) != 1:
        raise ActionError("comment takes exactly one alarm")
    duration = body.get("duration_s")
    if duration is not None and (isinstance(duration, bool)
                                 or not isinstance(duration, int | float)
                                 or not math.isfinite(duration) or duration <= 0):
        raise ActionError("duration_s must be a number > 0")
    oneshot = body.get("oneshot", False)
    if not isinstance(oneshot, bool):
        raise ActionError("oneshot must be true or false")
    reason = _text(body, "reason")
    text = _text(body, "text")
    if op == "shelve":
        if not reason.strip():
            raise ActionError("shelve needs a reason")
        if duration is None and not oneshot:
            raise ActionError("shelve needs duration_s, or oneshot: true")
    elif duration is not None or oneshot:
        raise ActionError("duration_s and oneshot apply to shelve only")
    if op == "remove" and not reason.strip():
        raise ActionError("taking an alarm out of service needs a reason")
    if op == "comment" and not text.strip():
        raise ActionError("comment needs text")
    expires = body.get("expires_ns")
    if expires is not None and (isinstance(expires, bool) or not isinstance(expires, int)):
        raise ActionError("expires_ns must be an integer (ns since the epoch)")
    request = body.get("id", "")
    return Action(op=op, user=user, role=role, alarms=tuple(raw), area=area, all=every,
                  reason=reason, duration_s=None if duration is None else float(duration),
                  oneshot=oneshot, text=text, via=_text(body, "via", 32),
                  source=_text(body, "source", 128),
                  request=request if isinstance(request, str) else "", expires_ns=expires)
