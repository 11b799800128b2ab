"""The structure of a plant file as pydantic models.

These models check what one key can tell on its own: types, allowed values, ranges,
name rules. What needs the whole file (references between blocks, signals and drivers,
two writers, loops, cross-field rules such as ``spin < period``) is the semantic pass in
``_semantic.py``, which has the source positions to report it at the right line.

Models are strict (``1.0`` is not an int, ``1`` is not a bool, ``"5"`` is not a number)
and closed (``extra="forbid"``): an unknown key is an error, never ignored. Durations are
held as integer nanoseconds and written back as strings with a unit, so a dumped model
loads again to the same model.
"""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)

from petra.config._alarms import AlarmsSection
from petra.config._api import ApiConfig
from petra.config._drivers import DriverConfig, MqttConfig
from petra.config._history import HistoryConfig
from petra.config._retain import RetainConfig
from petra.config._seconds import convert_block_times
from petra.errors import InvalidNameError
from petra.types import validate_instance_name, validate_signal_name

NS_PER_UNIT = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
_DURATION_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(ns|us|ms|s)\s*$")

PERIOD_MIN_NS = 100_000
PERIOD_MAX_NS = 10_000_000_000
JOURNAL_MIN = 64
JOURNAL_MAX = 1 << 22
UNIT_MAX_BYTES = 15
OWNER_MAX_BYTES = 23
DEFAULT_FIFO_PRIORITY = 80


def parse_duration(value: object) -> int:
    """A duration in integer nanoseconds from ``"10ms"``-style text or a number of ms."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as '10ms' or a number of ms, got {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"a duration must be a finite number >= 0, got {value!r}")
        return round(value * 1_000_000)
    if isinstance(value, str):
        m = _DURATION_RE.match(value)
        if m is None:
            raise ValueError(
                f"expected a duration such as '10ms', '250us', '1.5s' or a number of ms, "
                f"got {value!r}"
            )
        return round(float(m.group(1)) * NS_PER_UNIT[m.group(2)])
    raise ValueError(f"expected a duration such as '10ms' or a number of ms, got {value!r}")


def format_duration(ns: int) -> str:
    """The shortest exact text for ``ns``: ``10ms``, ``250us``, ``1500ns``."""
    for unit in ("s", "ms", "us"):
        size = NS_PER_UNIT[unit]
        if ns and ns % size == 0:
            return f"{ns // size}{unit}"
    return f"{ns}ns"


_DURATION_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "pattern": _DURATION_RE.pattern},
        {"type": "number", "minimum": 0},
    ],
    "description": "a duration: text with a unit (ns, us, ms, s) or a number of milliseconds",
}

Duration = Annotated[
    int,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(_DURATION_SCHEMA),
]


def _parse_offset(value: object) -> int | str:
    if value == "auto":
        return "auto"
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ValueError(f"expected 'auto' or {str(exc).removeprefix('expected ')}") from None


def _format_offset(value: int | str) -> str:
    return value if isinstance(value, str) else format_duration(value)


GridOffset = Annotated[
    int | Literal["auto"],
    BeforeValidator(_parse_offset),
    PlainSerializer(_format_offset, return_type=str),
    WithJsonSchema({"anyOf": [{"const": "auto"}, *_DURATION_SCHEMA["anyOf"]]}),
]


def _check_scalar(value: object) -> object:
    if value is None or isinstance(value, bool | int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"expected a finite number, got {value!r}")
        return value
    raise ValueError(f"expected a bool or a number, got {type(value).__name__} {value!r}")


Scalar = Annotated[
    bool | int | float,
    BeforeValidator(_check_scalar),
    WithJsonSchema({"type": ["boolean", "integer", "number"]}),
]


def _check_input(value: object) -> object:
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return _check_scalar(value)
    raise ValueError(
        f"expected a signal name or a constant (bool or number), got "
        f"{type(value).__name__} {value!r}"
    )


InputValue = Annotated[
    str | bool | int | float,
    BeforeValidator(_check_input),
    WithJsonSchema({"type": ["string", "boolean", "integer", "number"]}),
]


def _finite(value: float | None) -> float | None:
    if value is not None and not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r}")
    return value


def _name_rule(value: str, what: str = "signal") -> str:
    try:
        validate_signal_name(value)
    except InvalidNameError as exc:
        raise ValueError(str(exc).replace("signal name", f"{what} name", 1)) from None
    return value


def _max_bytes(what: str, value: str | None, limit: int) -> str | None:
    """``value`` as a directory text field: at most ``limit`` bytes, and no control
    characters (tools print it on terminals; the segment's reader refuses them)."""
    if value is not None and len(value.encode("utf-8")) > limit:
        raise ValueError(f"{what} {value!r} is longer than {limit} bytes in UTF-8")
    if value is not None and any(unicodedata.category(c) == "Cc" for c in value):
        raise ValueError(f"{what} {value!r} holds control characters")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ScanConfig(_Model):
    """The ``scan:`` section: cycle timing and how the scan process claims its CPU."""

    period: Duration = Field(
        default=10_000_000, description="Cycle period, 100us..10s (number = ms); held in ns")
    cpu: int | None = Field(
        default=None, ge=0, description="CPU to pin the scan to; checked again at start")
    policy: Literal["other", "fifo"] = Field(
        default="other", description="Scheduling policy: other (SCHED_OTHER) or fifo (SCHED_FIFO)")
    priority: int | None = Field(
        default=None, ge=1, le=99, description="SCHED_FIFO priority 1..99 (fifo only, default 80)")
    rt: bool = Field(
        default=False, description="Refuse to start without SCHED_FIFO and mlockall")
    wait: Literal["sleep", "hybrid"] = Field(
        default="sleep",
        description="sleep: clock_nanosleep; hybrid: sleep then spin to the deadline")
    spin: Duration = Field(
        default=200_000, description="hybrid only: spin this long before the deadline; < period")
    grid_offset: GridOffset = Field(
        default="auto", description="Offset of the cycle grid: auto (half a period) or a duration")
    cpu_dma_latency: bool = Field(
        default=True, description="Hold /dev/cpu_dma_latency at 0 while running, when permitted")
    journal_capacity: int | None = Field(
        default=None, description="Change journal entries: a power of two, 64..4194304; "
        "default sized from the plant: 4 cycles of every signal changing, rounded up to a "
        "power of two, 65536..4194304")
    scan_down: Literal["uncertain", "bad", "keep"] = Field(
        default="uncertain",
        description="While the scan process is down, its outputs are marked with substatus "
                    "SCAN_DOWN and this quality (value and source time kept); keep: not marked")
    mode: Literal["full", "event"] = Field(
        default="full",
        description="Cycle: full (run every block) or event (run only blocks whose inputs "
                    "changed, and every block with state or time; same result)")

    @field_validator("period")
    @classmethod
    def _period_range(cls, v: int) -> int:
        if not PERIOD_MIN_NS <= v <= PERIOD_MAX_NS:
            raise ValueError(f"period must be 100us..10s, got {format_duration(v)}")
        return v

    @field_validator("journal_capacity")
    @classmethod
    def _pow2(cls, v: int | None) -> int | None:
        if v is None:
            return v
        if v < JOURNAL_MIN or v > JOURNAL_MAX or v & (v - 1):
            raise ValueError(
                f"journal_capacity must be a power of two in {JOURNAL_MIN}..{JOURNAL_MAX}, "
                f"got {v}")
        return v

    @property
    def period_ns(self) -> int:
        """The cycle period in nanoseconds."""
        return self.period

    @property
    def spin_ns(self) -> int:
        """Spin time in ns for ``wait: hybrid``; 0 for ``wait: sleep``."""
        return self.spin if self.wait == "hybrid" else 0

    @property
    def grid_offset_ns(self) -> int:
        """Offset of the deadline grid in ns; ``auto`` is half a period, off the tick."""
        return self.period // 2 if self.grid_offset == "auto" else int(self.grid_offset)

    @property
    def fifo_priority(self) -> int | None:
        """The SCHED_FIFO priority to ask for, or None for policy ``other``."""
        if self.policy != "fifo":
            return None
        return DEFAULT_FIFO_PRIORITY if self.priority is None else self.priority


class SignalConfig(_Model):
    """One entry of ``signals:``: a slot of the shared segment."""

    name: str = Field(description="Signal name: dotted identifier, <= 63 bytes")
    type: Literal["bool", "int", "float"] = Field(description="Value type")
    initial: Scalar | None = Field(
        default=None, description="Value at start (default false / 0 / 0.0); must fit the type")
    unit: str = Field(default="", description="Engineering unit, <= 15 bytes")
    description: str = Field(default="", description="Free text for people and tools")
    min: float | None = Field(default=None, description="Lowest valid value (int/float signals)")
    max: float | None = Field(default=None, description="Highest valid value (int/float signals)")
    writable: bool = Field(default=False, description="Operators and MQTT commands may write it")
    owner: str | None = Field(
        default=None, description="Writer label; derived when omitted (scan, driver:<name>)")
    safe_value: Scalar | None = Field(
        default=None, description="Written by the scan on a clean stop")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _name_rule(v, "signal")

    @field_validator("unit")
    @classmethod
    def _unit(cls, v: str) -> str:
        _max_bytes("unit", v, UNIT_MAX_BYTES)
        return v

    @field_validator("owner")
    @classmethod
    def _owner(cls, v: str | None) -> str | None:
        return _max_bytes("owner", v, OWNER_MAX_BYTES)

    @field_validator("min", "max")
    @classmethod
    def _range(cls, v: float | None) -> float | None:
        return _finite(v)


class BlockConfig(_Model):
    """One entry of ``blocks:``: an instance of a registered block type."""

    name: str = Field(description="Block name: same rules as signal names")
    type: str = Field(description="A registered block type (see docs/blocks.md)")
    inputs: dict[str, InputValue] = Field(
        default_factory=dict, description="Input port -> signal name or constant")
    outputs: dict[str, str] = Field(
        default_factory=dict, description="Output port -> signal name")
    params: dict[str, Any] = Field(
        default_factory=dict, description="Parameters of the block type")
    description: str = Field(default="", description="Free text for people and tools")
    retain: bool | None = Field(
        default=None, description="Persist this block's state to the retain file (power "
        "loss); default: the plant-wide retain setting")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _name_rule(v, "block")

    @field_validator("inputs", "params", mode="before")
    @classmethod
    def _times(cls, v: Any, info: ValidationInfo) -> Any:
        """A timer's ``pt: 20s`` (and every other time of a built-in) in seconds."""
        return convert_block_times(info.data.get("type"), str(info.field_name), v)


class PlantConfig(_Model):
    """A whole plant file."""

    instance: str = Field(
        description="Instance (segment) name: [A-Za-z0-9][A-Za-z0-9_-]*, <= 48 characters")
    scan: ScanConfig = Field(default=ScanConfig(), description="Scan cycle settings")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Log level of the processes of this plant")
    signals: list[SignalConfig] = Field(default_factory=list, description="The signal table")
    blocks: list[BlockConfig] = Field(default_factory=list, description="The logic")
    drivers: list[DriverConfig] = Field(
        default_factory=list, description="Field device connections (docs/drivers.md)")
    mqtt: MqttConfig | None = Field(default=None, description="MQTT connection (docs/drivers.md)")
    history: HistoryConfig | None = Field(
        default=None, description="Recording to a WAL, Parquet and ClickHouse (docs/history.md)")
    alarms: AlarmsSection = Field(
        default=None, description="Alarm definitions and notifications (docs/alarms.md)")
    api: ApiConfig | None = Field(
        default=None, description="The HTTP(S) API process and its security (docs/http-api.md)")
    users: list[Any] = Field(default_factory=list, description="Reserved")
    retain: bool | RetainConfig = Field(
        default=False, description="Persist block state to a file for a cold start after "
        "power loss: true (every stateful block) or {all, dir, interval} (docs/config.md)")

    @field_validator("instance")
    @classmethod
    def _instance(cls, v: str) -> str:
        try:
            validate_instance_name(v)
        except InvalidNameError as exc:
            raise ValueError(str(exc)) from None
        return v


OWN_MODELS: tuple[type[BaseModel], ...] = (PlantConfig, ScanConfig, SignalConfig, BlockConfig)
