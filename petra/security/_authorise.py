"""The one authorised write path: every write on behalf of a person or a client.

``authorised_write(segment, principal, name, value, audit)`` is what the API, MQTT
commands, ``petra write`` and petra-top call; nothing else of theirs writes a signal.
In order:

1. the principal's role must hold :attr:`Permission.SIGNAL_WRITE` (operator and up);
2. the value before is read;
3. :meth:`petra.shm.Segment.write_checked` writes, or refuses (not writable, wrong
   type, not finite, outside min/max) and writes nothing;
4. one audit record says who, from where, what, the value before and the value read
   back after, or why it was refused.

A refusal is recorded too, then raised. When the record cannot be appended after a
write was done, :class:`AuditError` says so (the write is not undone: the slot may
already have been read by the scan); tools check the log is writable before they act
(:meth:`AuditLog.check_writable`) so this stays an emergency (disk full, not
permissions).

The segment is taken as a protocol, not imported: this package stays pure (it runs in
``petra user`` and ``petra audit`` on a box without the C core).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from petra.errors import PetraError
from petra.security._audit import AuditLog
from petra.security._errors import AuditError
from petra.security._roles import Permission, Principal
from petra.types import Sample, Value

ACTION_WRITE = Permission.SIGNAL_WRITE.value


class CheckedSegment(Protocol):
    """What the write path needs of :class:`petra.shm.Segment`."""

    def read(self, key: str | int) -> Sample: ...

    def write_checked(self, key: str | int, value: object, *, quality: int = ...,
                      source_ts_ns: int = ...) -> None: ...


@dataclass(frozen=True, slots=True)
class WriteResult:
    name: str
    before: Value
    after: Value
    audit_seq: int


def authorised_write(segment: CheckedSegment, principal: Principal, name: str, value: object,
                     audit: AuditLog, *, extra: dict[str, Any] | None = None) -> WriteResult:
    """Check the role, write through the checked path, record it; see the module doc.
    Raises PermissionDeniedError, the segment's SignalError subclasses, or AuditError."""
    target = name if isinstance(name, str) else repr(name)
    try:
        principal.require(Permission.SIGNAL_WRITE)
        before = segment.read(name)
        segment.write_checked(name, value)
    except PetraError as exc:
        try:
            audit.append(principal, ACTION_WRITE, target, outcome="refused", reason=str(exc),
                         extra={"requested": value, **(extra or {})})
        except AuditError as audit_exc:
            exc.add_note(str(audit_exc))
        raise
    after = segment.read(name)
    rec = audit.append(principal, ACTION_WRITE, target, before=before.value,
                       after=after.value, extra=extra)
    return WriteResult(name, before.value, after.value, int(rec["seq"]))
