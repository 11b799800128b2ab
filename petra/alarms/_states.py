"""The ISA-18.2 alarm state machine: states, triggers and the one transition table.

States (the letters are ISA-18.2's state diagram)::

    A NORMAL      condition clear, nothing to acknowledge
    B UNACK       condition active, not yet acknowledged (annunciated)
    C ACKED       condition active, acknowledged
    D RTN_UNACK   condition cleared before anyone acknowledged it
    E LATCHED     a latching alarm: cleared and acknowledged, waiting for a reset
    F SHELVED     hidden by an operator, for a bounded time
    G SUPPRESSED  hidden by design (a condition signal says it means nothing now)
    H OUT_OF_SERVICE  removed from service by an engineer (maintenance)

Triggers come from the process (ACTIVATE, CLEAR: the condition after its on/off
delays), from design (SUPPRESS, UNSUPPRESS), from operators (ACK, RESET, SHELVE,
UNSHELVE) and engineers (REMOVE, RETURN), and from time (a shelving that expires is an
UNSHELVE). A pair that is not in the table is not a transition: ``next_state`` returns
None and the engine leaves the alarm as it is (an ACK of a NORMAL alarm, an ACTIVATE of a
SHELVED one: the condition is still tracked, but nothing is annunciated).

Rules that the table encodes (and the property tests check):

- an unacknowledged alarm (UNACK, RTN_UNACK) leaves that set only through an ACK, or
  through an operator or engineer hiding it on purpose (SHELVE, REMOVE). The process
  alone cannot lose it: CLEAR turns UNACK into RTN_UNACK, never into NORMAL; design
  suppression never takes an alarm the operator has not acknowledged (SUPPRESS is only
  defined from NORMAL and ACKED; the engine applies it after the ACK);
- ACK is defined from UNACK and RTN_UNACK only;
- leaving a hidden state (UNSHELVE, UNSUPPRESS, RETURN) goes to NORMAL, and the engine
  then re-evaluates the alarm against the current process (ISA-18.2: "on unshelve the
  alarm is re-evaluated"), which raises it again (ACTIVATE) if the condition is active.

Latching alarms use :data:`LATCHING` on top of :data:`TRANSITIONS`: where a plain alarm
would go back to NORMAL (ACKED + CLEAR, RTN_UNACK + ACK) a latching one goes to LATCHED
and needs a RESET.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping


class AlarmState(enum.StrEnum):
    """Where an alarm is in its life (the value is its spelling in files and APIs)."""

    NORMAL = "normal"
    UNACK = "unack"
    ACKED = "acked"
    RTN_UNACK = "rtn_unack"
    LATCHED = "latched"
    SHELVED = "shelved"
    SUPPRESSED = "suppressed"
    OUT_OF_SERVICE = "out_of_service"


class Trigger(enum.StrEnum):
    """What can move an alarm from one state to another."""

    ACTIVATE = "activate"
    CLEAR = "clear"
    ACK = "ack"
    RESET = "reset"
    SHELVE = "shelve"
    UNSHELVE = "unshelve"
    SUPPRESS = "suppress"
    UNSUPPRESS = "unsuppress"
    REMOVE = "remove"  # out of service
    RETURN = "return"  # back in service


S = AlarmState
T = Trigger

TRANSITIONS: Mapping[tuple[AlarmState, Trigger], AlarmState] = {
    (S.NORMAL, T.ACTIVATE): S.UNACK,
    (S.NORMAL, T.SHELVE): S.SHELVED,
    (S.NORMAL, T.SUPPRESS): S.SUPPRESSED,
    (S.NORMAL, T.REMOVE): S.OUT_OF_SERVICE,

    (S.UNACK, T.ACK): S.ACKED,
    (S.UNACK, T.CLEAR): S.RTN_UNACK,
    (S.UNACK, T.SHELVE): S.SHELVED,
    (S.UNACK, T.REMOVE): S.OUT_OF_SERVICE,

    (S.ACKED, T.CLEAR): S.NORMAL,
    (S.ACKED, T.SHELVE): S.SHELVED,
    (S.ACKED, T.SUPPRESS): S.SUPPRESSED,
    (S.ACKED, T.REMOVE): S.OUT_OF_SERVICE,

    (S.RTN_UNACK, T.ACK): S.NORMAL,
    (S.RTN_UNACK, T.ACTIVATE): S.UNACK,
    (S.RTN_UNACK, T.SHELVE): S.SHELVED,
    (S.RTN_UNACK, T.REMOVE): S.OUT_OF_SERVICE,

    (S.LATCHED, T.RESET): S.NORMAL,
    (S.LATCHED, T.ACTIVATE): S.UNACK,
    (S.LATCHED, T.SHELVE): S.SHELVED,
    (S.LATCHED, T.REMOVE): S.OUT_OF_SERVICE,

    (S.SHELVED, T.UNSHELVE): S.NORMAL,
    (S.SHELVED, T.REMOVE): S.OUT_OF_SERVICE,

    (S.SUPPRESSED, T.UNSUPPRESS): S.NORMAL,
    (S.SUPPRESSED, T.REMOVE): S.OUT_OF_SERVICE,

    (S.OUT_OF_SERVICE, T.RETURN): S.NORMAL,
}
"""(state, trigger) -> next state, for every alarm."""

LATCHING: Mapping[tuple[AlarmState, Trigger], AlarmState] = {
    (S.ACKED, T.CLEAR): S.LATCHED,
    (S.RTN_UNACK, T.ACK): S.LATCHED,
}
"""Where a latching alarm differs from :data:`TRANSITIONS`."""

UNACKED: frozenset[AlarmState] = frozenset({S.UNACK, S.RTN_UNACK})
"""States that wait for an acknowledgement."""
ACTIVE: frozenset[AlarmState] = frozenset({S.UNACK, S.ACKED})
"""Annunciated and active (the condition holds and the alarm is shown)."""
HIDDEN: frozenset[AlarmState] = frozenset({S.SHELVED, S.SUPPRESSED, S.OUT_OF_SERVICE})
"""Evaluated but not annunciated."""
VISIBLE: frozenset[AlarmState] = frozenset(AlarmState) - HIDDEN
ACKABLE: frozenset[AlarmState] = frozenset(s for (s, t) in TRANSITIONS if t is T.ACK)
"""States an acknowledgement is allowed from (UNACK and RTN_UNACK)."""


def next_state(state: AlarmState, trigger: Trigger, *, latching: bool = False
               ) -> AlarmState | None:
    """The state ``trigger`` leads to from ``state``, or None when it is not a
    transition there."""
    if latching:
        hit = LATCHING.get((state, trigger))
        if hit is not None:
            return hit
    return TRANSITIONS.get((state, trigger))
