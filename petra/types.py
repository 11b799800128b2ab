"""Petra's vocabulary: what every process role, tool and the config agree on.

Signal types, qualities and substatus codes, the name and size rules of the shared
segment, process and connection states, role names and the meaning of each role's
heartbeat counters. Pure Python: importing this module loads no C, numpy or YAML, so
``petra check`` and any tool can use it. The numeric values mirror ``csrc/petra.h``
and ``csrc/layout.h``; ``tests/unit/test_types_mirror.py`` compares them so the two
cannot drift.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass
from typing import NamedTuple

from petra.errors import InvalidNameError, SignalTypeError, ValueOutOfRangeError

NAME_MAX_BYTES = 63
UNIT_MAX_BYTES = 15
OWNER_MAX_BYTES = 23
INSTANCE_MAX = 48

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

# Signal names: dotted identifiers ("tank1.level", "pump_2.run"); UTF-8 letters allowed.
# fullmatch, never `$`: "$" also matches before a trailing newline.
_NAME_RE = re.compile(r"[^\W\d][\w]*(?:[.\-/][\w]+)*", re.UNICODE)
_INSTANCE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


class SignalType(enum.IntEnum):
    """The three value types a slot can hold."""

    BOOL = 1
    INT = 2
    FLOAT = 3

    @classmethod
    def parse(cls, text: str) -> SignalType:
        """Map a config spelling (bool, int, float and aliases) to a type."""
        key = text.strip().lower()
        try:
            return _TYPE_ALIASES[key]
        except KeyError:
            raise ValueError(
                f"unknown signal type {text!r}; expected one of bool, int, float"
            ) from None


_TYPE_ALIASES = {
    "bool": SignalType.BOOL,
    "boolean": SignalType.BOOL,
    "int": SignalType.INT,
    "int64": SignalType.INT,
    "integer": SignalType.INT,
    "float": SignalType.FLOAT,
    "float64": SignalType.FLOAT,
    "real": SignalType.FLOAT,
    "double": SignalType.FLOAT,
}


class Quality(enum.IntEnum):
    """OPC-style quality of a value."""

    BAD = 0
    UNCERTAIN = 1
    GOOD = 2


class Substatus(enum.IntEnum):
    """Why a value has the quality it has."""

    NONE = 0
    WRITER_DIED = 1
    NOT_CONNECTED = 2
    DEVICE_FAILURE = 3
    CONFIG = 4
    LAST_KNOWN = 5
    CALC = 6
    INITIAL = 7
    OUT_OF_RANGE = 8  # a device value outside the signal's limits, or not finite
    SCAN_DOWN = 9  # the scan that writes it is down; value and source time are its last


QUALITIES: tuple[Quality, ...] = (Quality.BAD, Quality.UNCERTAIN, Quality.GOOD)
# Indexed by the raw substatus byte; values the C core never writes read as NONE.
SUBSTATUSES: tuple[Substatus, ...] = tuple(
    Substatus(b) if b in Substatus._value2member_map_ else Substatus.NONE for b in range(256))

FLAG_WRITABLE = 1  # operators and commands may write it (Segment.write_checked)
FLAG_RETAIN = 2
FLAG_NONFINITE = 4  # NaN and +-inf are valid values of this (float) signal

Value = bool | int | float


class Sample(NamedTuple):
    """One consistent read of a slot: the value and everything written with it."""

    value: Value
    quality: Quality
    source_ts_ns: int
    write_ts_ns: int
    writer: int
    substatus: Substatus = Substatus.NONE


@dataclass(frozen=True, slots=True)
class SignalDef:
    """What a segment needs to know about a signal when it is created."""

    name: str
    type: SignalType
    unit: str = ""
    owner: str = ""
    writable: bool = False
    initial: Value | None = None
    initial_quality: Quality = Quality.UNCERTAIN
    minimum: float | None = None  # lowest valid value; None = no lower limit
    maximum: float | None = None  # highest valid value; None = no upper limit
    allow_nonfinite: bool = False  # NaN and +-inf are valid values (float signals)

    def __post_init__(self) -> None:
        validate_signal_name(self.name)
        _check_bytes("unit", self.unit, UNIT_MAX_BYTES)
        _check_bytes("owner", self.owner, OWNER_MAX_BYTES)
        if not isinstance(self.type, SignalType):
            object.__setattr__(self, "type", SignalType(self.type))
        for what in ("minimum", "maximum"):
            limit = getattr(self, what)
            if limit is None:
                continue
            if isinstance(limit, bool) or not isinstance(limit, int | float) or not (
                    -math.inf < limit < math.inf):
                raise ValueOutOfRangeError(
                    f"signal {self.name!r}: {what} must be a finite number, got {limit!r}")
            object.__setattr__(self, what, float(limit))
        if self.minimum is not None and self.maximum is not None and (
                self.minimum > self.maximum):
            raise ValueOutOfRangeError(
                f"signal {self.name!r}: minimum {self.minimum:g} is above maximum "
                f"{self.maximum:g}")

    @property
    def flags(self) -> int:
        return ((FLAG_WRITABLE if self.writable else 0)
                | (FLAG_NONFINITE if self.allow_nonfinite else 0))


def _check_bytes(what: str, text: str, limit: int) -> None:
    if len(text.encode("utf-8")) > limit:
        raise InvalidNameError(f"{what} {text!r} is longer than {limit} bytes in UTF-8")


def validate_signal_name(name: str) -> None:
    """Raise :class:`InvalidNameError` unless ``name`` is a valid signal name."""
    if not isinstance(name, str) or not name:
        raise InvalidNameError("a signal name must be a non-empty string")
    if len(name.encode("utf-8")) > NAME_MAX_BYTES:
        raise InvalidNameError(
            f"signal name {name!r} is longer than {NAME_MAX_BYTES} bytes in UTF-8"
        )
    if not _NAME_RE.fullmatch(name):
        raise InvalidNameError(
            f"signal name {name!r} is invalid: use letters, digits and _ in parts "
            "joined by '.', '-' or '/', starting with a letter"
        )


def validate_instance_name(name: str) -> None:
    """Raise :class:`InvalidNameError` unless ``name`` can name a segment."""
    if not isinstance(name, str) or not _INSTANCE_RE.fullmatch(name) or len(name) > INSTANCE_MAX:
        raise InvalidNameError(
            f"instance name {name!r} is invalid: 1-{INSTANCE_MAX} characters of "
            "A-Z a-z 0-9 _ -, starting with a letter or digit"
        )


def coerce_value(sig_type: SignalType, value: object, *, name: str = "") -> Value:
    """Check ``value`` fits ``sig_type`` and return it in canonical Python form."""
    label = f"signal {name!r}" if name else "signal"
    if sig_type is SignalType.FLOAT:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SignalTypeError(f"{label} is float; got {type(value).__name__} {value!r}")
        try:
            return float(value)
        except OverflowError:  # an int beyond float64: a range error, never a crash
            raise ValueOutOfRangeError(
                f"{label} is float64; an integer of {int(value).bit_length()} bits does not fit"
            ) from None
    if sig_type is SignalType.INT:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise SignalTypeError(f"{label} is int; got {type(value).__name__} {value!r}")
        if not INT64_MIN <= value <= INT64_MAX:
            raise ValueOutOfRangeError(f"{label} is int64; {value} is out of range")
        return int(value)
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, int):
        raise ValueOutOfRangeError(f"{label} is bool; {value} is not 0 or 1")
    raise SignalTypeError(f"{label} is bool; got {type(value).__name__} {value!r}")


# --------------------------------------------------------------------------- processes


class ProcessState(enum.IntEnum):
    """What a process says about itself in its heartbeat record."""

    STARTING = 0
    RUNNING = 1
    DEGRADED = 2
    STOPPING = 3
    STOPPED = 4
    FAILED = 5


class ConnState(enum.IntEnum):
    """Connection state machine of a connected I/O process (a driver or a sink).

    DISCONNECTED -> CONNECTING -> UP; a failure goes to BACKOFF, which waits (never
    zero: exponential with jitter) and goes back to CONNECTING."""

    DISCONNECTED = 0
    CONNECTING = 1
    UP = 2
    BACKOFF = 3


# Role names, as written into heartbeat records and used by the supervisor, petra-top
# and the logs. A driver's or sink's role is its prefix, a colon and its name.
ROLE_SCAN = "scan"
ROLE_SUPERVISOR = "supervisor"
ROLE_API = "api"  # the HTTP(S)/WebSocket API process
DRIVER_PREFIX = "driver"
SINK_PREFIX = "sink"
SINK_MQTT_OUT = "mqtt-out"
SINK_HISTORY = "history"
SINK_ALARMS = "alarms"  # the alarm manager (``petra alarms run``)
ROLE_MAX_BYTES = 47
DRIVER_NAME_MAX = 16


def driver_role(name: str) -> str:
    """``driver:<name>``, the role of the driver process called ``name``."""
    return f"{DRIVER_PREFIX}:{name}"


def sink_role(name: str) -> str:
    """``sink:<name>``, the role of a sink process (``sink:mqtt-out``)."""
    return f"{SINK_PREFIX}:{name}"


def role_kind(role: str) -> str:
    """The part before the colon: ``scan``, ``supervisor``, ``api``, ``driver`` or ``sink``."""
    return role.split(":", 1)[0]


class AccessRole(enum.IntEnum):
    """What a person or machine client may do (API users, MQTT command senders, local
    tools). Ordered: each role may do everything the roles below it may."""

    VIEWER = 1  # read signals, status, alarms
    OPERATOR = 2  # write writable signals, acknowledge and shelve alarms
    ENGINEER = 3  # reload the configuration, take alarms out of service
    ADMIN = 4  # manage users, read the audit log

    @classmethod
    def parse(cls, text: object) -> AccessRole:
        """``"operator"`` -> OPERATOR; ValueError naming the roles otherwise."""
        if isinstance(text, str):
            try:
                return cls[text.strip().upper()]
            except KeyError:
                pass
        raise ValueError(f"unknown role {text!r}; expected one of "
                         f"{', '.join(r.label for r in cls)}")

    @property
    def label(self) -> str:
        """The spelling in files and messages: ``viewer``, ``operator``..."""
        return self.name.lower()


# --------------------------------------------------------------------------- heartbeat counters
# Every heartbeat record has HB_COUNTERS free-use u64 counters; what each index means
# depends on the role. These enums are the one place that says so.

HB_COUNTERS = 8


class ScanCounter(enum.IntEnum):
    """Counter indices of the scan's heartbeat record."""

    RELOADS_OK = 0  # hot reloads applied
    RELOADS_FAILED = 1  # hot reloads refused (the running program continues)
    BUSY_READS = 2  # copy-in reads that found a slot busy and kept the last value
    WRITES = 3  # outputs written by copy-out
    CYCLES = 4  # cycles run by this process
    START_STEPS = 5  # start-up steps done while STATE is STARTING (each one beats)
    JOURNAL_LAPS = 6  # episodes of the change journal lapping copy-in (inputs then read whole)
    JOURNAL_LOST = 7  # journal entries copy-in lost to those laps (their slots were read)


class DriverCounter(enum.IntEnum):
    """Counter indices of a field driver's heartbeat record."""

    STATE = 0  # ConnState
    READS = 1  # successful read requests (Modbus/S7) or accepted messages (MQTT in)
    WRITES = 2  # successful device writes
    ERRORS = 3  # failed requests: timeouts, exception replies, connection losses
    RECONNECTS = 4  # connection attempts after the first
    LAST_RTT_US = 5  # round-trip time of the last request, microseconds
    REJECTED = 6  # malformed/unexpected replies or bad payloads, never written
    WRITE_FAILURES = 7  # device writes given up after the retry policy


class SinkCounter(enum.IntEnum):
    """Counter indices of a sink's heartbeat record.

    Index 7 is the sink's journal cursor for every ``sink:*`` role: petra-top shows a
    sink's lag as journal head minus this position."""

    STATE = 0  # ConnState
    PUBLISHED = 1  # messages handed to the broker connection
    DROPPED = 2  # messages dropped: full offline queue, or journal entries lost
    ERRORS = 3  # publish errors and connection losses
    RECONNECTS = 4  # connection attempts after the first
    QUEUED = 5  # messages waiting (offline queue plus in-flight window)
    REJECTED = 6  # commands refused (unknown signal, not writable, bad request)
    JOURNAL_POSITION = 7  # the sink's journal cursor (next position it will read)


class HistoryCounter(enum.IntEnum):
    """Counter indices of the history sink's heartbeat record (``sink:history``).

    Indices 0, 2, 3, 4 and 7 mean what they mean for every sink (:class:`SinkCounter`);
    1, 5 and 6 are the history's own. Per-destination figures (lag, backlog bytes, last
    success) do not fit eight counters: they are in the sink's status file."""

    STATE = 0  # ConnState of the write-ahead log (UP while it accepts samples)
    RECORDED = 1  # samples appended to the write-ahead log
    DROPPED = 2  # samples lost: journal overruns, WAL quota, full-disk holding buffer
    ERRORS = 3  # WAL and destination errors
    RECONNECTS = 4  # WAL re-opens after the first
    BACKLOG = 5  # samples in the WAL not yet confirmed by every destination
    ALARMS = 6  # bit mask of active alarms (petra.history.Alarm)
    JOURNAL_POSITION = 7  # the sink's journal cursor (next position it will read)


class ApiCounter(enum.IntEnum):
    """Counter indices of the API process's heartbeat record."""

    REQUESTS = 0  # HTTP requests answered
    REFUSED = 1  # requests answered 4xx (bad input, unauthenticated, forbidden)
    LOGINS = 2  # successful logins
    LOGIN_FAILURES = 3  # failed logins and refused credentials (locked out included)
    WRITES = 4  # signal writes done
    WS_CLIENTS = 5  # WebSocket clients connected now
    WS_SENT = 6  # WebSocket messages sent
    WS_DROPPED = 7  # WebSocket messages dropped for a slow client (it gets a resync)


class AlarmCounter(enum.IntEnum):
    """Counter indices of the alarm manager's heartbeat record (``sink:alarms``).

    Indices 0 and 7 mean what they mean for every sink (:class:`SinkCounter`); the rest
    are the alarm figures petra-top shows. Notification counts and the mean time to
    acknowledge are in the alarm manager's status file (``/metrics`` reads it)."""

    STATE = 0  # ConnState of the event log (UP while events are written)
    ACTIVE = 1  # alarms annunciated and active (unacknowledged or acknowledged)
    UNACKED = 2  # alarms waiting for an acknowledgement (active or returned to normal)
    HIDDEN = 3  # alarms shelved, suppressed by design or out of service
    PER_10MIN = 4  # alarms annunciated in the last 10 minutes (ISA-18.2 flood measure)
    STANDING = 5  # alarms active for longer than the standing limit (24 h by default)
    CHATTERING = 6  # alarms that chatter (too many activations in a short window)
    JOURNAL_POSITION = 7  # the process's journal cursor (next position it will read)


def counter_schema(role: str) -> type[enum.IntEnum] | None:
    """The counter enum of a role, or None for roles whose counters are unused."""
    by_role: dict[str, type[enum.IntEnum]] = {
        sink_role(SINK_HISTORY): HistoryCounter, sink_role(SINK_ALARMS): AlarmCounter}
    by_kind: dict[str, type[enum.IntEnum]] = {
        ROLE_SCAN: ScanCounter, DRIVER_PREFIX: DriverCounter, SINK_PREFIX: SinkCounter,
        ROLE_API: ApiCounter}
    return by_role.get(role) or by_kind.get(role_kind(role))


# The change journal's size when the plant does not set one (issue 18): enough for
# JOURNAL_AUTO_CYCLES cycles in which every signal changes (each signal is some
# process's input or output, so this bounds every input and output changing), rounded
# up to a power of two, never below the old fixed default nor above JOURNAL_AUTO_MAX.
JOURNAL_AUTO_CYCLES = 4
JOURNAL_AUTO_MIN = 1 << 16
JOURNAL_AUTO_MAX = 1 << 22


def journal_capacity_for(n_signals: int) -> int:
    """Default journal entries for a plant of ``n_signals``:
    ``pow2ceil(4 * n_signals)`` clamped to 65,536..4,194,304."""
    want = max(JOURNAL_AUTO_MIN, JOURNAL_AUTO_CYCLES * max(0, n_signals))
    cap = 1 << (want - 1).bit_length()
    return min(cap, JOURNAL_AUTO_MAX)
