"""Config models of the ``drivers:`` and ``mqtt:`` sections of a plant.

Contract with the config validator (``petra.config``):

- :data:`DriverConfig`: one entry of ``drivers:``, a discriminated union on ``kind``
  (``modbus_tcp``, ``modbus_rtu``, ``s7``, ``mqtt``).
- :class:`MqttConfig`: the top-level ``mqtt:`` section (broker connection, publishing
  rules, commands) that the ``mqtt-out`` sink runs from.
- :func:`signal_refs`: every signal a driver entry names, with its direction and the key
  path inside the entry, so the validator reports unknown signals, type mismatches and
  two writers of one signal at the right line.

Validation here is structural and local to one entry (ranges, a zero retry delay, an
S7 address that does not parse, a write to a read-only Modbus table). Anything that needs
the signal table (does the signal exist, is it writable) is the validator's job, through
:func:`signal_refs`. Every model forbids unknown keys, so a typo is an error, not a
silently ignored option.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

from petra.config._api import RoleName
from petra.config._seconds import Seconds, WholeSeconds
from petra.config._topics import check_topic_template

Direction = Literal["read", "write", "readwrite"]
MAX_TOPIC_CHARS = 1024


@dataclass(frozen=True, slots=True)
class SignalRef:
    """A signal named by a driver entry: which, in what direction, and where."""

    signal: str
    direction: Direction
    key_path: tuple[str | int, ...]
    type_hint: str | None = None


OnConnect = Literal["write_all", "changed_only"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ----------------------------------------------------------------------------- common
class RetryConfig(_Model):
    """Reconnect backoff (exponential with jitter) and write retries.

    A zero delay would make a dead peer a busy loop, so every delay must be > 0."""

    initial_delay_s: Seconds = Field(default=0.5, gt=0, description="first reconnect delay")
    max_delay_s: Seconds = Field(default=1.0, gt=0, description="cap of the reconnect delay "
                                 "(jitter never exceeds it): a device that returns is "
                                 "reconnected within this long")
    multiplier: float = Field(default=2.0, ge=1.0, description="growth per failed attempt")
    jitter: float = Field(default=0.2, ge=0.0, le=1.0, description="+- fraction of random spread")
    write_attempts: int = Field(default=3, ge=1, le=100, description="tries per device write")

    @model_validator(mode="after")
    def _order(self) -> RetryConfig:
        if self.max_delay_s < self.initial_delay_s:
            raise ValueError("max_delay_s must be >= initial_delay_s")
        return self


class TimeoutConfig(_Model):
    """How long to wait for a connection and for one request's reply."""

    connect_s: Seconds = Field(default=3.0, gt=0, le=600)
    request_s: Seconds = Field(default=1.0, gt=0, le=600)


class PollGroup(_Model):
    """A named poll period; points name their group."""

    period_s: Seconds = Field(gt=0, le=86400)


def _check_groups(groups: dict[str, PollGroup], points: list[Any]) -> None:
    for i, p in enumerate(points):
        if p.group != "default" and p.group not in groups:
            known = ", ".join(sorted(groups)) or "none defined"
            raise ValueError(f"points[{i}] names poll group {p.group!r}; groups: {known}")


# ----------------------------------------------------------------------------- Modbus
ModbusTable = Literal["coil", "discrete_input", "holding", "input"]
ModbusType = Literal["bool", "int16", "uint16", "int32", "uint32", "int64", "uint64",
                     "float32", "float64"]
ByteOrder = Literal["ABCD", "DCBA", "BADC", "CDAB"]

MODBUS_TYPE_WORDS: dict[str, int] = {
    "bool": 1, "int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "int64": 4, "uint64": 4,
    "float32": 2, "float64": 4,
}


class ModbusPoint(_Model):
    """One Modbus value mapped to one signal."""

    signal: str
    table: ModbusTable
    address: int = Field(ge=0, le=65535, description="protocol address, 0-based")
    type: ModbusType | None = Field(default=None, description="default: bool for bit tables, "
                                    "uint16 for registers")
    bit: int | None = Field(default=None, ge=0, le=15, description="bit of a register (type bool)")
    order: ByteOrder = "ABCD"
    scale: float = 1.0
    offset: float = 0.0
    unit_id: int | None = Field(default=None, ge=0, le=255, description="default: the connection's")
    direction: Direction = "read"
    group: str = "default"

    @model_validator(mode="after")
    def _consistent(self) -> ModbusPoint:
        bit_table = self.table in ("coil", "discrete_input")
        typ = self.value_type
        if bit_table and typ != "bool":
            raise ValueError(f"table {self.table} holds bits; type must be bool, not {typ}")
        if bit_table and self.bit is not None:
            raise ValueError("bit: applies to registers only")
        if not bit_table and typ == "bool" and self.bit is None:
            raise ValueError("a bool in a register needs bit: 0..15")
        if self.bit is not None and typ != "bool":
            raise ValueError("bit: needs type bool")
        if self.direction != "read" and self.table in ("discrete_input", "input"):
            raise ValueError(f"table {self.table} is read-only; direction must be read")
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        if self.address + self.words > 65536:
            raise ValueError("the value runs past address 65535")
        return self

    @property
    def value_type(self) -> str:
        if self.type is not None:
            return self.type
        return "bool" if self.table in ("coil", "discrete_input") else "uint16"

    @property
    def words(self) -> int:
        """Registers (or bits, for bit tables) the point occupies."""
        return MODBUS_TYPE_WORDS[self.value_type]

    @property
    def type_hint(self) -> str:
        if self.value_type == "bool":
            return "bool"
        if self.value_type.startswith("float") or self.scale != 1.0 or self.offset != 0.0:
            return "float"
        return "int"


class _ModbusCommon(_Model):
    name: str = Field(min_length=1, max_length=16, pattern=r"^[A-Za-z][A-Za-z0-9_.-]*$",
                      description="Driver name; at most 16 characters, so that the "
                      "owner label driver:<name> fits the segment's 23-byte owner field")
    unit_id: int = Field(default=1, ge=0, le=255)
    poll_period_s: Seconds = Field(default=1.0, gt=0, le=86400)
    groups: dict[str, PollGroup] = Field(default_factory=dict)
    timeouts: TimeoutConfig = Field(default_factory=TimeoutConfig)
    retry: RetryConfig = Field(default_factory=RetryConfig)
    on_connect: OnConnect = Field(
        default="write_all", description="on every (re)connect: write_all writes the current "
        "value of every write point before any queued write (a rebooted device gets its "
        "outputs back); changed_only writes only what changed while disconnected")
    coalesce: bool = True
    max_gap: int = Field(default=8, ge=0, le=2000, description="unused addresses a read may span")
    max_registers_per_read: int = Field(default=125, ge=1, le=125)
    max_bits_per_read: int = Field(default=2000, ge=1, le=2000)
    points: list[ModbusPoint] = Field(default_factory=list)

    @model_validator(mode="after")
    def _groups_known(self) -> _ModbusCommon:
        _check_groups(self.groups, self.points)
        return self


class ModbusTcpConfig(_ModbusCommon):
    """A Modbus TCP gateway or device: one connection for all its points and unit ids."""

    kind: Literal["modbus_tcp"]
    host: str = Field(min_length=1)
    port: int = Field(default=502, ge=1, le=65535)


class ModbusRtuConfig(_ModbusCommon):
    """A Modbus RTU line on a serial port: one master for all unit ids on the line."""

    kind: Literal["modbus_rtu"]
    device: str = Field(min_length=1, description="serial port, e.g. /dev/ttyUSB0")
    baudrate: int = Field(default=9600, gt=0)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8


# ----------------------------------------------------------------------------- S7
class S7Point(_Model):
    """One S7 address (engineers' notation, see ``petra.drivers.s7_address``)."""

    signal: str
    address: str
    direction: Direction = "read"
    scale: float = 1.0
    offset: float = 0.0
    group: str = "default"

    @field_validator("address")
    @classmethod
    def _parse(cls, v: str) -> str:
        from petra.config._s7_address import parse_s7_address

        parse_s7_address(v)  # raises ValueError naming the column
        return v

    @model_validator(mode="after")
    def _scale(self) -> S7Point:
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        return self

    @property
    def type_hint(self) -> str:
        from petra.config._s7_address import parse_s7_address

        t = parse_s7_address(self.address).type
        if t == "BOOL":
            return "bool"
        if t in ("REAL", "LREAL") or self.scale != 1.0 or self.offset != 0.0:
            return "float"
        return "int"


class S7Config(_Model):
    """A Siemens S7 CPU reached over ISO-on-TCP."""

    kind: Literal["s7"]
    name: str = Field(min_length=1, max_length=16, pattern=r"^[A-Za-z][A-Za-z0-9_.-]*$",
                      description="Driver name; at most 16 characters, so that the "
                      "owner label driver:<name> fits the segment's 23-byte owner field")
    host: str = Field(min_length=1)
    port: int = Field(default=102, ge=1, le=65535)
    rack: int = Field(default=0, ge=0, le=7)
    slot: int = Field(default=1, ge=0, le=31)
    local_tsap: int | None = Field(default=None, ge=0, le=0xFFFF)
    remote_tsap: int | None = Field(default=None, ge=0, le=0xFFFF,
                                    description="overrides rack/slot when set")
    pdu_size: int = Field(default=480, ge=240, le=960,
                          description="requested; the CPU may lower it")
    poll_period_s: Seconds = Field(default=1.0, gt=0, le=86400)
    groups: dict[str, PollGroup] = Field(default_factory=dict)
    timeouts: TimeoutConfig = Field(default_factory=TimeoutConfig)
    retry: RetryConfig = Field(default_factory=RetryConfig)
    on_connect: OnConnect = Field(
        default="write_all", description="on every (re)connect: write_all writes the current "
        "value of every write point before any queued write (a rebooted device gets its "
        "outputs back); changed_only writes only what changed while disconnected")
    max_gap: int = Field(default=16, ge=0, le=1024, description="unused bytes a read may span")
    points: list[S7Point] = Field(default_factory=list)

    @model_validator(mode="after")
    def _groups_known(self) -> S7Config:
        _check_groups(self.groups, self.points)
        return self


# ----------------------------------------------------------------------------- MQTT
class TlsConfig(_Model):
    """TLS towards the broker: CA to verify it, optionally a client certificate."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = Field(default=False, description="skip hostname check (never in production)")

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class BrokerConfig(_Model):
    """How to reach and authenticate to an MQTT broker. Secrets come from a file or an
    environment variable, never from the plant file itself."""

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    client_id: str | None = None
    username: str | None = None
    password_file: str | None = None
    password_env: str | None = None
    tls: TlsConfig | None = None
    keepalive_s: WholeSeconds = Field(default=30, ge=5, le=3600)
    protocol: Literal["auto", "5", "3.1.1"] = Field(
        default="auto", description="auto: MQTT 5, falling back to 3.1.1 when the broker "
        "refuses it")

    @model_validator(mode="after")
    def _secret(self) -> BrokerConfig:
        if self.password_file and self.password_env:
            raise ValueError("give password_file or password_env, not both")
        if (self.password_file or self.password_env) and not self.username:
            raise ValueError("a password needs a username")
        return self


class MqttSubscription(_Model):
    """A topic filter (wildcards allowed) mapped to a signal.

    ``signal`` may hold ``{1}``, ``{2}``... standing for the topic levels matched by
    the filter's wildcards, in order (``plant/+/temp`` with ``signal: "{1}.temp"``).
    Such a template must list, in ``signals``, every signal it may write: a message
    whose topic resolves to any other name is refused. The list is what ``petra
    check`` verifies (each signal exists, has no other writer), so a broker client can
    never reach a signal the plant did not hand to this driver."""

    topic: str = Field(min_length=1, max_length=MAX_TOPIC_CHARS)
    signal: str = Field(min_length=1)
    signals: list[str] | None = Field(
        default=None, description="for a template signal: the signals it may write "
        "(required; a topic that resolves to any other name is refused)")
    format: Literal["plain", "json"] = "plain"
    json_path: str | None = Field(default=None, description="dotted path to the value, e.g. "
                                  "data.value or readings.0")
    qos: Literal[0, 1, 2] = 1

    @model_validator(mode="after")
    def _check(self) -> MqttSubscription:
        levels = self.topic.split("/")
        for i, lvl in enumerate(levels):
            if "#" in lvl and (lvl != "#" or i != len(levels) - 1):
                raise ValueError(f"'#' must be the whole last level of {self.topic!r}")
            if "+" in lvl and lvl != "+":
                raise ValueError(f"'+' must be a whole level of {self.topic!r}")
        if self.json_path is not None and self.format != "json":
            raise ValueError("json_path needs format: json")
        if not self.is_template:
            if self.signals is not None:
                raise ValueError("signals: lists what a template signal may write; "
                                 f"the literal signal {self.signal!r} needs none")
            return self
        pattern = template_pattern(self.topic, self.signal)
        if not self.signals:
            raise ValueError(f"the template {self.signal!r} needs signals: the list of "
                             "signals it may write (anything else is refused)")
        for j, name in enumerate(self.signals):
            if name in self.signals[:j]:
                raise ValueError(f"signals: {name!r} is listed twice")
            if pattern.fullmatch(name) is None:
                raise ValueError(f"signals: {name!r} can never come out of the template "
                                 f"{self.signal!r} on topic {self.topic!r}")
        return self

    @property
    def is_template(self) -> bool:
        return "{" in self.signal


def template_pattern(topic: str, template: str) -> re.Pattern[str]:
    """The names ``template`` can produce from topics matching ``topic``, as a regex.

    Raises ValueError for a field that is not ``{1}``, ``{2}``... up to the number of
    wildcards in ``topic`` (no attributes, indexing, conversions or format specs: a
    template substitutes topic levels, nothing else)."""
    wild = [lvl for lvl in topic.split("/") if lvl in ("+", "#")]
    out: list[str] = []
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"signal template {template!r}: {exc}") from None
    for literal, field, spec, conversion in parts:
        out.append(re.escape(literal))
        if field is None:
            continue
        if not field.isdecimal() or spec or conversion:
            whole = field + (f"!{conversion}" if conversion else "") + (
                f":{spec}" if spec else "")
            raise ValueError(f"signal template {template!r}: {{{whole}}} is not a "
                             "wildcard number ({1}, {2}, ...)")
        n = int(field)
        if not 1 <= n <= len(wild):
            raise ValueError(f"signal template {template!r}: {{{n}}} but topic "
                             f"{topic!r} has {len(wild)} wildcard(s), counted from {{1}}")
        out.append("[^/]*" if wild[n - 1] == "+" else ".*")
    return re.compile("".join(out), re.DOTALL)


def topic_within(topic: str, prefix: str) -> bool:
    """True when ``topic`` is ``prefix`` or lies below it (level by level)."""
    return topic == prefix or topic.startswith(prefix.rstrip("/") + "/")


class MqttInConfig(_Model):
    """An MQTT subscriber driver: broker messages become signal values."""

    kind: Literal["mqtt"]
    name: str = Field(min_length=1, max_length=16, pattern=r"^[A-Za-z][A-Za-z0-9_.-]*$",
                      description="Driver name; at most 16 characters, so that the "
                      "owner label driver:<name> fits the segment's 23-byte owner field")
    broker: BrokerConfig | None = Field(default=None, description="default: the mqtt: section's")
    retry: RetryConfig = Field(default_factory=RetryConfig)
    timeouts: TimeoutConfig = Field(default_factory=TimeoutConfig)
    subscriptions: list[MqttSubscription] = Field(default_factory=list)
    clean_start: bool = Field(default=False, description="false: a persistent session; the "
                              "broker keeps the subscriptions and queues QoS 1/2 messages "
                              "while the driver reconnects or restarts")
    session_expiry_s: WholeSeconds = Field(default=3600, ge=0, le=4_294_967_295,
                                           description="how long the broker keeps the "
                                           "session after a disconnect (MQTT 5)")


DriverConfig = Annotated[
    ModbusTcpConfig | ModbusRtuConfig | S7Config | MqttInConfig,
    Field(discriminator="kind"),
]
DRIVER_ADAPTER: TypeAdapter[ModbusTcpConfig | ModbusRtuConfig | S7Config | MqttInConfig] = (
    TypeAdapter(DriverConfig))


class PublishRule(_Model):
    """Which signals the sink publishes, where and how."""

    signals: list[str] = Field(min_length=1, description="names or glob patterns")
    topic: str = Field(default="{prefix}/{signal}", description="{prefix}, {signal}, {path} "
                       "(signal with '.' as '/')")
    qos: Literal[0, 1, 2] = 0
    retain: bool = False
    format: Literal["json", "plain"] = "json"
    deadband: float = Field(default=0.0, ge=0, description="absolute; 0 publishes every change")
    heartbeat_s: Seconds = Field(default=0.0, ge=0, description="republish a signal's current "
                                 "value when nothing was published for it this long; 0: never")
    min_interval_s: Seconds = Field(default=0.0, ge=0, description="at most one message per signal "
                                  "per interval; the latest value is sent when it ends")
    batch: bool = Field(default=False, description="send through the batched topic instead")

    @field_validator("signals", mode="before")
    @classmethod
    def _one(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("topic")
    @classmethod
    def _topic(cls, v: str) -> str:
        return check_topic_template(v, ("prefix", "signal", "path"))


class BatchConfig(_Model):
    """The batched payload mode: many changes per message (JSON array)."""

    topic: str = "{prefix}/batch"
    max_changes: int = Field(default=1000, ge=1, le=100_000)
    max_delay_s: Seconds = Field(default=0.05, gt=0, le=60)
    qos: Literal[0, 1, 2] = 0

    @field_validator("topic")
    @classmethod
    def _topic(cls, v: str) -> str:
        return check_topic_template(v, ("prefix", "instance"))


class CommandsConfig(_Model):
    """Set/get requests over MQTT.

    A set needs the signal declared ``writable`` and a value inside its limits. A
    request's ``reply_to`` is honoured only at ``reply_prefix`` or below it (default:
    the reply topic), so a client cannot make Petra publish anywhere else with its
    credentials. ``get_all`` reveals every signal and is refused unless allowed here."""

    topic: str = "{prefix}/cmd"
    reply_topic: str = "{prefix}/cmd/reply"
    reply_prefix: str | None = Field(
        default=None, min_length=1, description="reply_to must be this topic or below it; "
        "default: reply_topic")
    allow_get_all: bool = Field(default=False, description="answer get_all (every signal's "
                                "value) instead of refusing it")
    qos: Literal[0, 1, 2] = 1
    roles: dict[str, RoleName] = Field(
        default_factory=dict, description="broker user -> role (viewer, operator, engineer, "
        "admin): a command published on <topic>/<user> acts with that role; '*' gives a "
        "role to the plain <topic>. Commands from anyone else are refused.")

    @property
    def replies_under(self) -> str:
        """The topic subtree replies may go to (``reply_prefix`` or ``reply_topic``)."""
        return self.reply_prefix if self.reply_prefix is not None else self.reply_topic

    @model_validator(mode="after")
    def _apart(self) -> CommandsConfig:
        if any(c in self.replies_under for c in "+#\0"):
            raise ValueError(f"reply_prefix {self.replies_under!r}: a topic, without the "
                             "wildcards + and #")
        if topic_within(self.topic, self.replies_under):
            raise ValueError(f"the command topic {self.topic!r} lies within the reply "
                             f"topics {self.replies_under!r}: a reply would be a command")
        if not topic_within(self.reply_topic, self.replies_under):
            raise ValueError(f"reply_topic {self.reply_topic!r} lies outside reply_prefix "
                             f"{self.replies_under!r}")
        return self

    @field_validator("topic", "reply_topic", "reply_prefix")
    @classmethod
    def _topic(cls, v: str | None) -> str | None:
        return None if v is None else check_topic_template(v, ("prefix", "instance"))


class MqttConfig(_Model):
    """The plant's ``mqtt:`` section: broker, publishing rules, status and commands."""

    broker: BrokerConfig = Field(default_factory=BrokerConfig)
    topic_prefix: str = "petra/{instance}"
    status_topic: str = "{prefix}/status"
    publish: list[PublishRule] = Field(default_factory=list)
    batch: BatchConfig = Field(default_factory=BatchConfig)
    commands: CommandsConfig | None = None
    offline_queue: int = Field(default=10_000, ge=1, le=10_000_000,
                               description="messages kept while disconnected")
    max_inflight: int = Field(default=1000, ge=1, le=65_000,
                              description="QoS 1/2 messages awaiting an ack")
    retry: RetryConfig = Field(default_factory=RetryConfig)
    timeouts: TimeoutConfig = Field(default_factory=TimeoutConfig)

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        return check_topic_template(v, ("instance",), "topic_prefix")

    @field_validator("status_topic")
    @classmethod
    def _status(cls, v: str) -> str:
        return check_topic_template(v, ("prefix", "instance"), "status_topic")


# ----------------------------------------------------------------------------- refs
def signal_refs(driver: Any) -> list[SignalRef]:
    """Every signal ``driver`` names, with direction and key path inside the entry. An
    MQTT template contributes the signals of its allow-list (``signals:``): those are
    all it can ever write."""
    refs: list[SignalRef] = []
    if isinstance(driver, ModbusTcpConfig | ModbusRtuConfig):
        for i, p in enumerate(driver.points):
            refs.append(SignalRef(p.signal, p.direction, ("points", i, "signal"), p.type_hint))
    elif isinstance(driver, S7Config):
        for i, sp in enumerate(driver.points):
            refs.append(SignalRef(sp.signal, sp.direction, ("points", i, "signal"),
                                  sp.type_hint))
    elif isinstance(driver, MqttInConfig):
        for i, s in enumerate(driver.subscriptions):
            if not s.is_template:
                refs.append(SignalRef(s.signal, "read", ("subscriptions", i, "signal"), None))
            for j, name in enumerate(s.signals or ()):
                refs.append(SignalRef(name, "read", ("subscriptions", i, "signals", j), None))
    return refs


__all__ = [
    "DRIVER_ADAPTER",
    "BatchConfig",
    "BrokerConfig",
    "CommandsConfig",
    "DriverConfig",
    "ModbusPoint",
    "ModbusRtuConfig",
    "ModbusTcpConfig",
    "MqttConfig",
    "MqttInConfig",
    "MqttSubscription",
    "PollGroup",
    "PublishRule",
    "RetryConfig",
    "S7Config",
    "S7Point",
    "SignalRef",
    "TimeoutConfig",
    "TlsConfig",
    "signal_refs",
    "template_pattern",
    "topic_within",
]
