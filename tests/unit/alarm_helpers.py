"""Shared helpers of the alarm unit tests: definitions, a fake clock, actions."""

from __future__ import annotations

from typing import Any

from petra.alarms import Action, AlarmEngine
from petra.config._alarms import LIMIT_TYPES, AlarmDef
from petra.types import AccessRole

NS = 1_000_000_000
T0 = 1_700_000_000 * NS  # a Tuesday, 2023-11-14 22:13:20 UTC


def adef(name: str = "a", **kw: Any) -> AlarmDef:
    """A definition; a high alarm on signal ``x`` unless told otherwise."""
    doc: dict[str, Any] = {"name": name, "type": "high", "signal": "x", "limit": 10.0}
    doc.update(kw)
    if doc["type"] not in LIMIT_TYPES and "limit" not in kw:
        del doc["limit"]
    if doc["type"] == "device" and "signal" not in kw:
        del doc["signal"]
    return AlarmDef.model_validate({k: v for k, v in doc.items() if v is not None})


class FakeClock:
    """Wall clock (ns) and monotonic clock (s) moved by hand."""

    def __init__(self, wall_ns: int = T0, mono: float = 1000.0) -> None:
        self.wall = wall_ns
        self.mono = mono

    def advance(self, seconds: float) -> None:
        self.wall += int(seconds * NS)
        self.mono += seconds

    def wall_ns(self) -> int:
        return self.wall

    def monotonic(self) -> float:
        return self.mono


def act(op: str, *alarms: str, role: AccessRole = AccessRole.ENGINEER, user: str = "alice",
        **kw: Any) -> Action:
    return Action(op=op, user=user, role=role, alarms=tuple(alarms), **kw)


def engine(*defs: AlarmDef, shelve_max_s: float = 3600.0) -> AlarmEngine:
    return AlarmEngine(list(defs) or [adef()], shelve_max_s=shelve_max_s)
