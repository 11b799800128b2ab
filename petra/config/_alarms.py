"""Config models of the ``alarms:`` section: alarm definitions (ISA-18.2), the alarm
manager's settings and its notifications (contacts, on-call schedules, escalation).

Structure only, per key (types, ranges, one definition's own consistency: a ``high``
alarm needs a ``limit``, a message template names only known fields). What needs the
rest of the file (the signal exists and is numeric, the driver of a device alarm
exists, a policy names known contacts, generated state signals do not clash with
declared ones) is :func:`check_alarms`, which the loader runs with the file's positions.

Durations are seconds (a number) or text with a unit (``250ms``, ``10s``, ``5min``,
``2h``, ``30d``), as in ``history:``. Times of day are ``"HH:MM"`` in the contact's time
zone (an IANA name such as ``Europe/Berlin``).

Paths: :func:`resolve_dir` is where the alarm manager keeps its event log and state,
and where its action spool and published list live (:func:`spool_dir`,
:func:`list_file`); every front end (CLI, API) finds them through the plant file.
"""

from __future__ import annotations

import base64
import hashlib
import re
import string
import zoneinfo
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from petra.config._drivers import topic_within
from petra.config._history import Bytes, Seconds
from petra.config._topics import check_topic_template
from petra.errors import InvalidNameError
from petra.types import (
    NAME_MAX_BYTES,
    SINK_ALARMS,
    SignalDef,
    SignalType,
    sink_role,
    validate_signal_name,
)

ALARMS_OWNER = sink_role(SINK_ALARMS)
MIB = 2**20

Priority = Literal["critical", "high", "medium", "low"]
PRIORITIES: tuple[str, ...] = ("critical", "high", "medium", "low")
AlarmType = Literal["high", "high_high", "low", "low_low", "deviation", "rate", "discrete",
                    "bad_quality", "stale", "device"]
LIMIT_TYPES = frozenset({"high", "high_high", "low", "low_low", "deviation", "rate"})
NUMERIC_TYPES = LIMIT_TYPES
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")



def _low() -> list[Priority]:
    return ["low"]


def _all_days() -> list[Day]:
    return list(DAYS)


STATE_SIGNAL_PREFIX = "alarm."
STATE_SIGNAL_SUFFIXES = (".active", ".unacked")
DEVICE_PREFIX = "device."

MESSAGE_FIELDS = frozenset({"name", "description", "value", "unit", "limit", "signal",
                            "setpoint", "priority", "area", "equipment", "type"})
BODY_FIELDS = frozenset({"priority", "message", "alarm", "occurrence", "area", "equipment",
                         "level", "state", "instance", "code"})
ACK_CODE_LEN = 6
DEFAULT_BODY = "[{priority}] {message} ({alarm} #{occurrence})"
_HHMM_RE = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
_PHONE_RE = re.compile(r"^\+[1-9][0-9]{6,14}$")
_SID_RE = re.compile(r"^AC[0-9a-fA-F]{32}$")
_CONTACT_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
_SAMPLE = {"name": "x", "description": "x", "value": 1.5, "unit": "m", "limit": 2.0,
           "signal": "x", "setpoint": 1.0, "priority": "high", "area": "a",
           "equipment": "e", "type": "high", "message": "m", "alarm": "x",
           "occurrence": 1, "level": 1, "state": "unack", "instance": "i", "code": "K7Q2MX"}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def check_template(text: str, allowed: frozenset[str], what: str) -> str:
    """Refuse a template naming unknown fields, indexing or calling attributes, or with a
    format spec a number cannot take (``{value:.1f}`` is fine, ``{value:%}`` too)."""
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None
    for _, field, spec, _ in parts:
        if field is None:
            continue
        if field not in allowed:
            raise ValueError(f"{what}: unknown field {{{field}}}; use "
                             f"{', '.join('{' + f + '}' for f in sorted(allowed))}")
        if spec and ("{" in spec):
            raise ValueError(f"{what}: nested fields in a format spec are not allowed")
    try:
        text.format(**_SAMPLE)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{what}: {exc}") from None
    return text


def hhmm_minutes(text: str) -> int:
    """``"07:30"`` -> 450 (minutes after midnight)."""
    m = _HHMM_RE.match(text)
    if m is None:
        raise ValueError(f"expected a time of day HH:MM (00:00..23:59), got {text!r}")
    return int(m.group(1)) * 60 + int(m.group(2))


def _zone(name: str) -> str:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (an IANA name such as "
                         "'Europe/Berlin' or 'UTC')") from None
    return name


# ----------------------------------------------------------------------------- definitions
class AlarmDef(_Model):
    """One alarm: what condition raises it, how it is shown, and who hears of it."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True,
                              serialize_by_alias=True, validate_by_name=False)

    name: str = Field(description="Alarm name: dotted identifier, unique")
    type: AlarmType = Field(description="Condition kind")
    signal: str | None = Field(default=None, description="The signal the condition is on")
    driver: str | None = Field(default=None, description="type device: the driver watched")
    limit: float | None = Field(
        default=None, description="Limit (high/low kinds), deviation band, rate per second")
    deadband: float = Field(default=0.0, ge=0, description="Absolute hysteresis to clear")
    setpoint: str | None = Field(default=None, description="type deviation: setpoint signal")
    state: bool | int | None = Field(default=None, description="type discrete: alarm value")
    direction: Literal["rising", "falling", "both"] = Field(
        default="both", description="type rate: which direction of change counts")
    rate_window_s: Seconds = Field(default=1.0, description="type rate: measured over")
    timeout_s: Seconds | None = Field(
        default=None, description="type stale: no update for this long raises it")
    uncertain: bool = Field(
        default=False, description="type bad_quality: UNCERTAIN counts as bad too")
    on_delay_s: Seconds = Field(default=0.0, description="Condition must hold this long")
    off_delay_s: Seconds = Field(default=0.0, description="Condition must be gone this long")
    priority: Priority = Field(default="medium", description="critical, high, medium, low")
    alarm_class: str = Field(default="", alias="class", description="Class (free text)")
    message: str = Field(default="", description="Template: {value} {unit} {limit} ...")
    description: str = Field(default="", description="What the alarm means")
    area: str = Field(default="", description="Plant area (acknowledge by area)")
    equipment: str = Field(default="", description="Equipment tag")
    consequence: str = Field(default="", description="What happens if nobody acts")
    action: str = Field(default="", description="Corrective action for the operator")
    suppress_when: str | None = Field(
        default=None, description="bool signal: while true the alarm is suppressed by design")
    latch: bool = Field(default=False, description="Stays until reset after it clears")
    group: str | None = Field(default=None, description="First-out group")
    notify: bool = Field(default=True, description="Send notifications for it")
    shelve_max_s: Seconds | None = Field(
        default=None, description="Longest shelving (default: alarms.shelve_max_s)")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        try:
            validate_signal_name(v)
        except InvalidNameError as exc:
            raise ValueError(str(exc).replace("signal name", "alarm name", 1)) from None
        return v

    @field_validator("limit", "deadband")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        if v is not None and not (-1e308 < v < 1e308):
            raise ValueError(f"expected a finite number, got {v!r}")
        return v

    @field_validator("message")
    @classmethod
    def _message(cls, v: str) -> str:
        return check_template(v, MESSAGE_FIELDS, "message")

    @model_validator(mode="after")
    def _kind(self) -> AlarmDef:  # noqa: PLR0912 - one rule per condition kind
        t = self.type
        if t == "device":
            if self.driver is None:
                raise ValueError("type device needs driver")
            if self.signal is not None:
                raise ValueError("type device watches a driver, not a signal")
        else:
            if self.signal is None:
                raise ValueError(f"type {t} needs signal")
            if self.driver is not None:
                raise ValueError("driver applies to type device only")
        if t in LIMIT_TYPES:
            if self.limit is None:
                raise ValueError(f"type {t} needs limit")
            if t in ("deviation", "rate") and self.limit <= 0:
                raise ValueError(f"type {t}: limit must be > 0")
        elif self.limit is not None:
            raise ValueError(f"limit does not apply to type {t}")
        if self.deadband and t not in ("high", "high_high", "low", "low_low", "deviation"):
            raise ValueError(f"deadband does not apply to type {t}")
        if (t == "deviation") != (self.setpoint is not None):
            raise ValueError("type deviation needs setpoint" if t == "deviation"
                             else "setpoint applies to type deviation only")
        if (t == "discrete") != (self.state is not None):
            raise ValueError("type discrete needs state (the value that raises it)"
                             if t == "discrete" else "state applies to type discrete only")
        if t == "stale":
            if self.timeout_s is None or self.timeout_s <= 0:
                raise ValueError("type stale needs timeout_s > 0")
        elif self.timeout_s is not None:
            raise ValueError("timeout_s applies to type stale only")
        if t == "rate" and self.rate_window_s <= 0:
            raise ValueError("rate_window_s must be > 0")
        if self.shelve_max_s is not None and self.shelve_max_s <= 0:
            raise ValueError("shelve_max_s must be > 0")
        return self


class DeviceAlarms(_Model):
    """One alarm per driver (``device.<driver>``): raised while the driver is not
    connected. Quality and stale alarms of that driver's signals are grouped under it
    (suppressed while it is raised), so an outage is one alarm, not one per signal."""

    enabled: bool = Field(default=True, description="Make one alarm per configured driver")
    priority: Priority = Field(default="high", description="Their priority")
    on_delay_s: Seconds = Field(default=5.0, description="Down this long before it is raised")
    off_delay_s: Seconds = Field(default=0.0, description="Up this long before it clears")
    area: str = Field(default="", description="Their area")


class Chattering(_Model):
    """ISA-18.2's chattering alarm: ``count`` activations within ``window_s``."""

    count: int = Field(default=3, ge=2, description="Activations ...")
    window_s: Seconds = Field(default=60.0, description="... within this window")


class AlarmMqtt(_Model):
    """Publishing alarm events and states (when the plant has ``mqtt:``)."""

    enabled: bool = Field(default=True, description="Publish when the plant has mqtt:")
    events_topic: str = Field(default="{prefix}/alarms/events",
                              description="Every event, QoS 1, not retained")
    state_topic: str = Field(default="{prefix}/alarms/state/{alarm}",
                             description="Each alarm's state, retained")
    qos: int = Field(default=1, ge=0, le=2, description="QoS of both")
    queue: int = Field(default=10_000, ge=10, description="Messages kept while offline")
    commands: bool = Field(default=True, description="Take alarm commands (ack, shelve ...) "
                           "on command_topic when the plant has mqtt.commands (whose roles "
                           "map broker users to roles)")
    command_topic: str = Field(default="{prefix}/alarms/cmd", description="Alarm commands: "
                               "<topic>/<broker user> acts with that user's role "
                               "(mqtt.commands.roles); the plain <topic> with the '*' role")
    reply_topic: str = Field(default="{prefix}/alarms/cmd/reply", description="Answers go "
                             "here, or to a reply_to / MQTT 5 response topic at or below it")

    @field_validator("events_topic", "command_topic", "reply_topic")
    @classmethod
    def _topic(cls, v: str) -> str:
        return check_topic_template(v, ("prefix", "instance"))

    @field_validator("state_topic")
    @classmethod
    def _state_topic(cls, v: str) -> str:
        return check_topic_template(v, ("prefix", "instance", "alarm"))

    @model_validator(mode="after")
    def _apart(self) -> AlarmMqtt:
        if topic_within(self.command_topic, self.reply_topic):
            raise ValueError(f"command_topic {self.command_topic!r} lies within reply_topic "
                             f"{self.reply_topic!r}: a reply would be a command")
        return self


# ----------------------------------------------------------------------------- notifications
class TwilioConfig(_Model):
    """The Twilio account notifications are sent through."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True,
                              serialize_by_alias=True, validate_by_name=False)

    account_sid: str = Field(description="Account SID (AC + 32 hex digits)")
    auth_token_file: str | None = Field(default=None, description="File holding the token")
    auth_token_env: str | None = Field(default=None, description="Variable holding it")
    from_number: str = Field(alias="from", description="Sending number, E.164")
    base_url: str = Field(default="https://api.twilio.com",
                          description="REST API base URL (a stand-in for tests)")
    timeout_s: Seconds = Field(default=10.0, description="Request timeout")
    voice: str | None = Field(default=None, description="TwiML Say voice")
    language: str = Field(default="en-US", description="TwiML Say language")
    repeat_say: int = Field(default=2, ge=1, le=5, description="Times a call says it")
    sms_reply_url: str | None = Field(
        default=None, description="Public https URL of the API's SMS-reply webhook "
        "({prefix}/alarms/twilio/sms) as set on the Twilio number; enables ACK by SMS reply")

    @model_validator(mode="after")
    def _check(self) -> TwilioConfig:
        if not _SID_RE.match(self.account_sid):
            raise ValueError("account_sid must be AC followed by 32 hex digits")
        if (self.auth_token_file is None) == (self.auth_token_env is None):
            raise ValueError("give auth_token_file or auth_token_env (exactly one)")
        if not _PHONE_RE.match(self.from_number):
            raise ValueError(f"from must be an E.164 number (+491701234567), "
                             f"got {self.from_number!r}")
        if not re.match(r"^https?://[^/\s]+/?$", self.base_url):
            raise ValueError(f"base_url must be http(s)://host[:port], got {self.base_url!r}")
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be > 0")
        if self.sms_reply_url is not None and not re.match(
                r"^https?://[^/\s?#]+/[^\s#]*$", self.sms_reply_url):
            raise ValueError("sms_reply_url must be the full http(s)://host/path Twilio "
                             f"posts to, got {self.sms_reply_url!r}")
        return self


class OnCallWindow(_Model):
    """When a contact is on call: days of the week and a time span (local time)."""

    days: list[Day] = Field(default_factory=_all_days, description="Days")
    start: str = Field(default="00:00", description="HH:MM, local time")
    end: str = Field(default="00:00",
                     description="HH:MM; before start = past midnight; = start: all day")

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        hhmm_minutes(v)
        return v


class ContactConfig(_Model):
    """A person who can be notified."""

    name: str = Field(description="Contact name (referenced by policies)")
    phone: str = Field(description="E.164 number")
    channel: Literal["sms", "voice"] = Field(default="sms", description="Preferred channel")
    timezone: str = Field(default="UTC", description="IANA time zone of the schedule")
    on_call: list[OnCallWindow] = Field(
        default_factory=list, description="When on call; none = always")
    user: str | None = Field(
        default=None, description="Who an SMS reply from this phone acts as (recorded "
        "in the audit log, role operator); default: the contact's name")

    @field_validator("name")
    @classmethod
    def _cname(cls, v: str) -> str:
        if not _CONTACT_RE.match(v):
            raise ValueError(f"contact name {v!r}: letters, digits, _ . - (starting with a "
                             "letter), <= 64 characters")
        return v

    @field_validator("user")
    @classmethod
    def _user(cls, v: str | None) -> str | None:
        if v is not None and not _CONTACT_RE.match(v):
            raise ValueError(f"user {v!r}: letters, digits, _ . - (starting with a letter), "
                             "<= 64 characters")
        return v

    @field_validator("phone")
    @classmethod
    def _phone(cls, v: str) -> str:
        if not _PHONE_RE.match(v):
            raise ValueError(f"phone must be an E.164 number (+491701234567), got {v!r}")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return _zone(v)


class EscalationLevel(_Model):
    """Who is notified, and how long after the alarm was raised."""

    contacts: list[str] = Field(min_length=1, description="Contact names")
    after_s: Seconds = Field(default=0.0, description="Delay from the alarm being raised")


class PolicyConfig(_Model):
    """Escalation for alarms of some priorities and areas (first matching policy wins)."""

    name: str = Field(description="Policy name")
    priorities: list[Priority] = Field(default_factory=list, description="none = all")
    areas: list[str] = Field(default_factory=list, description="none = all")
    levels: list[EscalationLevel] = Field(min_length=1, description="In order")
    repeat_s: Seconds | None = Field(
        default=None, description="Notify the first level again this long after the last")
    max_rounds: int | None = Field(default=None, ge=1, description="Rounds at most")
    stop_on_return: bool = Field(
        default=False, description="Stop escalating once the condition has cleared")

    @model_validator(mode="after")
    def _order(self) -> PolicyConfig:
        afters = [lv.after_s for lv in self.levels]
        if afters != sorted(afters):
            raise ValueError("levels: after_s must not decrease from one level to the next")
        if self.repeat_s is not None and self.repeat_s <= 0:
            raise ValueError("repeat_s must be > 0 (leave it out for no repeat)")
        if self.max_rounds is not None and self.repeat_s is None:
            raise ValueError("max_rounds needs repeat_s")
        return self


class RateLimit(_Model):
    """At most this many notifications per window, per contact and in all."""

    per_contact: int = Field(default=10, ge=1, description="Per contact per window")
    total: int = Field(default=60, ge=1, description="All contacts per window")
    window_s: Seconds = Field(default=3600.0, description="Window")

    @model_validator(mode="after")
    def _check(self) -> RateLimit:
        if self.window_s <= 0:
            raise ValueError("window_s must be > 0")
        return self


class QuietHours(_Model):
    """Hours (in each contact's time zone) in which low priorities wait."""

    start: str = Field(default="22:00", description="HH:MM")
    end: str = Field(default="07:00", description="HH:MM")
    priorities: list[Priority] = Field(default_factory=_low, description="Priorities held back")

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        hhmm_minutes(v)
        return v

    @model_validator(mode="after")
    def _span(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("start and end must differ (quiet all day would hold those "
                             "priorities forever)")
        return self


class RetryConfig(_Model):
    """Retries of a failed send (network error, HTTP 429 or 5xx) with backoff."""

    attempts: int = Field(default=4, ge=1, le=20, description="Tries in all")
    initial_s: Seconds = Field(default=2.0, description="First delay")
    max_s: Seconds = Field(default=60.0, description="Longest delay")

    @model_validator(mode="after")
    def _check(self) -> RetryConfig:
        if self.initial_s <= 0 or self.max_s < self.initial_s:
            raise ValueError("need 0 < initial_s <= max_s")
        return self


class NotificationsConfig(_Model):
    """SMS and voice notifications through Twilio."""

    twilio: TwilioConfig = Field(description="The account")
    contacts: list[ContactConfig] = Field(min_length=1, description="People")
    policies: list[PolicyConfig] = Field(min_length=1, description="Escalation policies")
    rate_limit: RateLimit = Field(default=RateLimit(), description="Rate limits")
    dedup_window_s: Seconds = Field(
        default=600.0, description="A new occurrence of an alarm notified this recently "
                                   "to the same contact is not sent again")
    quiet_hours: QuietHours | None = Field(default=None, description="Quiet hours")
    retry: RetryConfig = Field(default=RetryConfig(), description="Retries")
    body: str = Field(default=DEFAULT_BODY, description="SMS text / spoken text template")
    concurrency: int = Field(default=4, ge=1, le=32, description="Requests in flight")

    @field_validator("body")
    @classmethod
    def _body(cls, v: str) -> str:
        return check_template(v, BODY_FIELDS, "body")


# ----------------------------------------------------------------------------- section
class AlarmsConfig(_Model):
    """The ``alarms:`` section: definitions and the alarm manager's settings."""

    dir: str = Field(default="/var/lib/petra/alarms/{instance}",
                     description="Event log, state and action spool; relative to the plant")
    period_s: Seconds = Field(default=0.1, description="Evaluation period")
    definitions: list[AlarmDef] = Field(default_factory=list, description="The alarms")
    devices: DeviceAlarms = Field(default=DeviceAlarms(), description="Device alarms")
    state_signals: bool = Field(
        default=False, description="Make bool signals alarm.<name>.active / .unacked")
    shelve_max_s: Seconds = Field(default=8 * 3600.0, description="Longest shelving")
    standing_after_s: Seconds = Field(default=24 * 3600.0, description="Standing alarm age")
    flood_per_10min: int = Field(default=10, ge=1, description="Flood threshold")
    chattering: Chattering = Field(default=Chattering(), description="Chattering alarms")
    fsync: bool = Field(default=True, description="fsync the event log after each pass")
    log_rotate_bytes: Bytes = Field(default=16 * MIB, description="Rotate the event log")
    log_keep: int = Field(default=5, ge=1, le=100, description="Rotated logs kept")
    request_max_age_s: Seconds = Field(
        default=300.0, description="Operator requests older than this are refused")
    mqtt: AlarmMqtt = Field(default=AlarmMqtt(), description="MQTT publishing")
    notifications: NotificationsConfig | None = Field(
        default=None, description="SMS/voice notifications (Twilio)")

    @model_validator(mode="after")
    def _check(self) -> AlarmsConfig:
        if not self.dir.strip():
            raise ValueError("dir must not be empty")
        if not 0.01 <= self.period_s <= 10:
            raise ValueError("period_s must be 10ms..10s")
        if self.shelve_max_s <= 0 or self.standing_after_s <= 0:
            raise ValueError("shelve_max_s and standing_after_s must be > 0")
        if self.log_rotate_bytes < 64 * 1024:
            raise ValueError("log_rotate_bytes must be >= 64KiB")
        return self


def _section(value: object) -> object:
    """``alarms: []`` (the reserved spelling of early plant files) means no alarms; a
    non-empty list is the old idea of the section and is refused with the new shape."""
    if isinstance(value, list):
        if value:
            raise ValueError("alarms is a mapping: put the alarms under definitions: "
                             "(see docs/alarms.md)")
        return None
    return value


AlarmsSection = Annotated[AlarmsConfig | None, BeforeValidator(_section)]
"""The type of ``PlantConfig.alarms``."""

ALARM_MODELS: tuple[type[BaseModel], ...] = (
    AlarmsConfig, AlarmDef, DeviceAlarms, Chattering, AlarmMqtt, NotificationsConfig,
    TwilioConfig, ContactConfig, OnCallWindow, PolicyConfig, EscalationLevel, RateLimit,
    QuietHours, RetryConfig)


# ----------------------------------------------------------------------------- derived
def effective_definitions(config: Any) -> list[AlarmDef]:
    """The declared alarms plus one ``device.<driver>`` alarm per driver when
    ``devices.enabled`` (unless a device alarm for that driver is declared)."""
    cfg: AlarmsConfig | None = getattr(config, "alarms", None)
    if cfg is None:
        return []
    out = list(cfg.definitions)
    if cfg.devices.enabled:
        watched = {d.driver for d in out if d.type == "device"}
        dev = cfg.devices
        for drv in getattr(config, "drivers", None) or []:
            if drv.name in watched:
                continue
            out.append(AlarmDef.model_validate({
                "name": DEVICE_PREFIX + drv.name, "type": "device", "driver": drv.name,
                "priority": dev.priority, "on_delay_s": dev.on_delay_s,
                "off_delay_s": dev.off_delay_s, "area": dev.area,
                "message": f"device {drv.name} is not connected"}))
    return out


def ack_code(alarm: str, occurrence: int) -> str:
    """The short reference an SMS carries so that a reply ``ACK <code>`` names one
    occurrence of one alarm: 6 characters of base32 over a hash of both. An old
    occurrence's code does not acknowledge a newer one; a code is no secret (the
    webhook's signature and the sender's number are the authentication)."""
    digest = hashlib.sha256(f"{alarm}#{occurrence}".encode()).digest()
    return base64.b32encode(digest[:5]).decode()[:ACK_CODE_LEN]


def state_signal_names(alarm: str) -> tuple[str, str]:
    """The generated ``alarm.<name>.active`` and ``alarm.<name>.unacked`` signals."""
    return (STATE_SIGNAL_PREFIX + alarm + STATE_SIGNAL_SUFFIXES[0],
            STATE_SIGNAL_PREFIX + alarm + STATE_SIGNAL_SUFFIXES[1])


def alarm_signal_defs(config: Any) -> list[SignalDef]:
    """The signals ``state_signals: true`` adds after the declared ones (owner
    ``sink:alarms``, bool, initially false)."""
    cfg: AlarmsConfig | None = getattr(config, "alarms", None)
    if cfg is None or not cfg.state_signals:
        return []
    out: list[SignalDef] = []
    for d in effective_definitions(config):
        for name in state_signal_names(d.name):
            out.append(SignalDef(name, SignalType.BOOL, owner=ALARMS_OWNER, initial=False))
    return out


def resolve_dir(cfg: AlarmsConfig, instance: str, plant_path: str | Path | None) -> Path:
    """``alarms.dir`` with ``{instance}`` filled in; relative to the plant file's
    directory (children do not run in the caller's directory)."""
    path = Path(cfg.dir.format(instance=instance))
    if not path.is_absolute():
        base = Path(plant_path).resolve().parent if plant_path is not None else Path.cwd()
        path = base / path
    return path


def spool_dir(base: Path) -> Path:
    """The action spool operators' requests are written to (see petra.io.RequestSpool)."""
    return base / "actions"


def list_file(base: Path) -> Path:
    """The published list of alarms and their states (JSON, replaced atomically)."""
    return base / "alarms.json"


def status_file(base: Path) -> Path:
    """The alarm manager's metrics (JSON, about once a second)."""
    return base / "status.json"


# ----------------------------------------------------------------------------- cross checks
def check_alarms(config: Any, owners: dict[str, str], diag: Any) -> None:  # noqa: PLR0912
    """Cross-checks of ``alarms:`` against the signal table, drivers and contacts,
    each reported at its key."""
    cfg: AlarmsConfig | None = getattr(config, "alarms", None)
    if cfg is None:
        return
    signals = {s.name: s for s in config.signals}
    drivers = {d.name for d in getattr(config, "drivers", None) or []}
    seen: dict[str, int] = {}
    for i, d in enumerate(cfg.definitions):
        at = ("alarms", "definitions", i)
        if d.name in seen:
            diag.error((*at, "name"), f"alarm {d.name!r} is defined twice (first at "
                                      f"definitions[{seen[d.name]}])")
        seen.setdefault(d.name, i)
        _check_signal_refs(d, at, signals, diag)
        if d.type == "device" and d.driver not in drivers:
            diag.error((*at, "driver"), f"unknown driver {d.driver!r}")
    if cfg.devices.enabled:
        for drv in sorted(drivers):
            name = DEVICE_PREFIX + drv
            if name in seen and cfg.definitions[seen[name]].type != "device":
                diag.error(("alarms", "definitions", seen[name], "name"),
                           f"{name!r} is the name of the device alarm of driver {drv!r}")
            try:
                validate_signal_name(name)
            except InvalidNameError:
                diag.error(("alarms", "devices", "enabled"),
                           f"driver {drv!r} gives no valid alarm name {name!r}")
    if cfg.state_signals:
        limit = NAME_MAX_BYTES - len(STATE_SIGNAL_PREFIX) - max(map(len,
                                                                   STATE_SIGNAL_SUFFIXES))
        for d in effective_definitions(config):
            where = (("alarms", "definitions", seen[d.name], "name") if d.name in seen
                     else ("alarms", "state_signals"))
            if len(d.name.encode()) > limit:
                diag.error(where, f"alarm name {d.name!r} is too long for its state "
                                  f"signals (at most {limit} bytes with state_signals)")
                continue
            for sig in state_signal_names(d.name):
                if sig in signals:
                    diag.error(where, f"state signal {sig!r} is also declared in signals:")
    if cfg.notifications is not None:
        _check_notifications(cfg.notifications, diag)


def _check_signal_refs(d: AlarmDef, at: tuple[Any, ...], signals: dict[str, Any],
                       diag: Any) -> None:
    for key in ("signal", "setpoint", "suppress_when"):
        name = getattr(d, key)
        if name is None:
            continue
        sig = signals.get(name)
        if sig is None:
            diag.error((*at, key), f"unknown signal {name!r}")
            continue
        if key == "suppress_when" and sig.type != "bool":
            diag.error((*at, key), f"signal {name!r} is {sig.type}; suppress_when needs a "
                                   "bool signal")
        elif key in ("signal", "setpoint") and d.type in NUMERIC_TYPES and sig.type == "bool":
            diag.error((*at, key), f"signal {name!r} is bool; type {d.type} needs an int "
                                   "or float signal")
        elif key == "signal" and d.type == "discrete":
            if sig.type == "float":
                diag.error((*at, key), f"signal {name!r} is float; type discrete needs a "
                                       "bool or int signal (compare floats with a limit)")
            elif (sig.type == "bool") != isinstance(d.state, bool):
                diag.error((*at, "state"), f"state {d.state!r} does not fit {sig.type} "
                                           f"signal {name!r}")


def _check_notifications(n: NotificationsConfig, diag: Any) -> None:
    base = ("alarms", "notifications")
    names: set[str] = set()
    for i, c in enumerate(n.contacts):
        if c.name in names:
            diag.error((*base, "contacts", i, "name"), f"contact {c.name!r} is defined twice")
        names.add(c.name)
    for p, pol in enumerate(n.policies):
        for lv, level in enumerate(pol.levels):
            for k, who in enumerate(level.contacts):
                if who not in names:
                    diag.error((*base, "policies", p, "levels", lv, "contacts", k),
                               f"unknown contact {who!r}")
    covered = set()
    for pol in n.policies:
        if not pol.areas:
            covered |= set(pol.priorities or PRIORITIES)
    missing = [p for p in PRIORITIES if p not in covered]
    if missing:
        diag.warning((*base, "policies"),
                     f"priorities {', '.join(missing)} have no policy for every area: "
                     "some alarms will notify nobody")
