"""The alarm manager (ISA-18.2): conditions, the alarm state machine, operator actions,
an event log that survives kill -9, and notifications by SMS and voice (Twilio).

Pieces (each its own module): :class:`AlarmState` and the transition table
(``_states``), :class:`Conditions` (every alarm's condition with numpy),
:class:`AlarmEngine` (the state machine, operator actions), :class:`EventLog`
(JSONL journal and snapshots), :class:`AlarmMetrics` (flood, standing, chattering,
time to acknowledge), :class:`Notifier` (escalation, on-call schedules, limits),
:class:`TwilioSender`, and :class:`AlarmProcess` tying them together. twilio and the
segment are imported only where used, so importing this package stays cheap.

Front ends (CLI, API, MQTT) do not import this package: they write requests into the
action spool (:class:`petra.io.RequestSpool` in ``<alarms.dir>/actions``) and read the
published list (``<alarms.dir>/alarms.json``); see ``docs/alarms.md``.
"""

from petra.alarms._conditions import Changes, Conditions
from petra.alarms._engine import ActionResult, AlarmEngine, AlarmInfo, render
from petra.alarms._log import EventLog, Replay, read_events
from petra.alarms._metrics import AlarmMetrics
from petra.alarms._model import (
    OP_PERMISSION,
    OPS,
    Action,
    ActionError,
    AlarmRecord,
    Event,
    parse_action,
)
from petra.alarms._notify import Escalation, Job, Notifier
from petra.alarms._runner import main, run_standalone
from petra.alarms._states import (
    ACKABLE,
    ACTIVE,
    HIDDEN,
    LATCHING,
    TRANSITIONS,
    UNACKED,
    VISIBLE,
    AlarmState,
    Trigger,
    next_state,
)

__all__ = [
    "ACKABLE",
    "ACTIVE",
    "HIDDEN",
    "LATCHING",
    "OPS",
    "OP_PERMISSION",
    "TRANSITIONS",
    "UNACKED",
    "VISIBLE",
    "Action",
    "ActionError",
    "ActionResult",
    "AlarmEngine",
    "AlarmInfo",
    "AlarmMetrics",
    "AlarmRecord",
    "AlarmState",
    "Changes",
    "Conditions",
    "Escalation",
    "Event",
    "EventLog",
    "Job",
    "Notifier",
    "Replay",
    "Trigger",
    "main",
    "next_state",
    "parse_action",
    "read_events",
    "render",
    "run_standalone",
]
