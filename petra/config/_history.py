"""Config models of the ``history:`` section: what is recorded, the write-ahead log and
the destinations (Parquet files on the box, a ClickHouse server).

Structure only, per key (types, ranges, one rule's own consistency). What needs the
signal table (an ``alarm_signal`` that exists and is a bool, a rule pattern that matches
nothing) is :func:`check_history`, which the loader runs with the file's positions so
each finding names its line.

Durations are seconds (a number) or text with a unit (``250ms``, ``10s``, ``5min``,
``2h``, ``30d``); sizes are bytes (a number) or text with a unit (``64MiB``, ``2GB``).
Both are held as numbers and written back as numbers, so a dumped model loads again to
the same model.
"""

from __future__ import annotations

import fnmatch
import math
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator

from petra.types import SINK_HISTORY, sink_role

_SECONDS = {"ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_SECONDS_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(ms|s|min|h|d)\s*$")
_BYTES = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_BYTES_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?)\s*([kmgt]?i?b)\s*$", re.IGNORECASE)

MIB = 2**20
HISTORY_OWNER = sink_role(SINK_HISTORY)


def parse_seconds(value: object) -> float:
    """Seconds from a number or ``"250ms"``/``"10s"``/``"5min"``/``"2h"``/``"30d"``."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as '10s' or a number of seconds, "
                         f"got {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"a duration must be a finite number >= 0, got {value!r}")
        return float(value)
    if isinstance(value, str):
        m = _SECONDS_RE.match(value)
        if m is not None:
            return float(m.group(1)) * _SECONDS[m.group(2)]
    raise ValueError(f"expected a duration such as '250ms', '10s', '5min', '2h', '30d' or a "
                     f"number of seconds, got {value!r}")


def parse_bytes(value: object) -> int:
    """Bytes from a number or ``"64MiB"``/``"2GB"``/``"512KiB"``."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size such as '64MiB' or a number of bytes, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a size must be >= 0, got {value}")
        return value
    if isinstance(value, str):
        m = _BYTES_RE.match(value)
        if m is not None:
            return round(float(m.group(1)) * _BYTES[m.group(2).lower()])
    raise ValueError(f"expected a size such as '64MiB', '2GB' or a number of bytes, "
                     f"got {value!r}")


Seconds = Annotated[
    float,
    BeforeValidator(parse_seconds),
    WithJsonSchema({"anyOf": [{"type": "number", "minimum": 0},
                              {"type": "string", "pattern": _SECONDS_RE.pattern}],
                    "description": "seconds, or text with a unit: ms, s, min, h, d"}),
]
Bytes = Annotated[
    int,
    BeforeValidator(parse_bytes),
    WithJsonSchema({"anyOf": [{"type": "integer", "minimum": 0},
                              {"type": "string", "pattern": _BYTES_RE.pattern}],
                    "description": "bytes, or text with a unit: KiB, MiB, GiB, KB, MB, GB"}),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class RecordRule(_Model):
    """Which signals are recorded and when. Rules are matched in order; the first rule
    with a pattern matching a signal decides for it."""

    signals: list[str] = Field(min_length=1, description="Signal names or fnmatch patterns")
    mode: Literal["change", "period", "off"] = Field(
        default="change", description="change: on change; period: every period_s; off: never")
    deadband: float = Field(default=0.0, ge=0, description="Absolute deadband (change mode)")
    deadband_percent: float = Field(
        default=0.0, ge=0, le=100,
        description="Deadband in percent of the signal's min..max span (else of |last value|)")
    min_interval_s: Seconds = Field(
        default=0.0, description="At most one sample per interval; the latest is kept")
    max_interval_s: Seconds | None = Field(
        default=None, description="A sample at least this often, even without a change")
    period_s: Seconds | None = Field(default=None, description="Sampling period (period mode)")

    @model_validator(mode="after")
    def _consistent(self) -> RecordRule:
        if self.mode == "period":
            if self.period_s is None or self.period_s <= 0:
                raise ValueError("mode period needs period_s > 0")
            if self.deadband or self.deadband_percent or self.min_interval_s or (
                    self.max_interval_s is not None):
                raise ValueError("mode period samples on its period only: deadband, "
                                 "min_interval_s and max_interval_s apply to mode change")
        elif self.period_s is not None:
            raise ValueError("period_s applies to mode period only")
        if self.max_interval_s is not None:
            if self.max_interval_s <= 0:
                raise ValueError("max_interval_s must be > 0 (leave it out for none)")
            if self.max_interval_s < self.min_interval_s:
                raise ValueError("max_interval_s must be >= min_interval_s")
        return self


class WalConfig(_Model):
    """The local write-ahead log every sample is appended to before any destination."""

    fsync: Literal["batch", "interval", "off"] = Field(
        default="interval",
        description="batch: fsync every append; interval: every fsync_interval_s; off: never")
    fsync_interval_s: Seconds = Field(default=0.1, description="fsync period (fsync: interval)")
    segment_bytes: Bytes = Field(default=64 * MIB, description="Rotate a segment at this size")
    segment_max_age_s: Seconds = Field(default=600.0, description="Rotate a segment this old")
    quota_bytes: Bytes = Field(
        default=1024 * MIB,
        description="Most bytes the WAL may hold; past it the oldest segment is dropped")
    hold_samples: int = Field(
        default=1_000_000, ge=1000,
        description="Samples held in memory while the disk is full, then dropped (counted)")

    @model_validator(mode="after")
    def _sizes(self) -> WalConfig:
        if self.segment_bytes < 64 * 1024:
            raise ValueError("segment_bytes must be >= 64KiB")
        if self.quota_bytes < 2 * self.segment_bytes:
            raise ValueError("quota_bytes must hold at least two segments (2 * segment_bytes)")
        if self.fsync == "interval" and self.fsync_interval_s <= 0:
            raise ValueError("fsync_interval_s must be > 0 (or use fsync: batch)")
        if self.segment_max_age_s <= 0:
            raise ValueError("segment_max_age_s must be > 0")
        return self


class RetentionConfig(_Model):
    """How long Parquet partitions are kept, by age and by total size."""

    max_age_s: Seconds | None = Field(default=None, description="Delete partitions older")
    max_bytes: Bytes | None = Field(default=None, description="Delete oldest partitions past")


class ParquetConfig(_Model):
    """Columnar files on the box, one directory per date (and hour)."""

    enabled: bool = Field(default=True, description="Write Parquet files")
    dir: str = Field(default="parquet", description="Directory, relative to history.dir")
    partition: Literal["date", "hour"] = Field(default="date", description="Partition size")
    row_group_rows: int = Field(default=131_072, ge=1024, le=16_777_216,
                                description="Rows per row group (large groups compress best)")
    max_file_rows: int = Field(default=1_048_576, ge=1024, description="Rotate a file here")
    max_file_age_s: Seconds = Field(default=60.0, description="Rotate a file this old")
    compression_level: int = Field(default=3, ge=1, le=22, description="zstd level")
    write_ts: bool = Field(default=False, description="Also store each sample's write time")
    retention: RetentionConfig = Field(default=RetentionConfig(), description="Retention")
    compact_after_s: Seconds | None = Field(
        default=3600.0, description="Merge the small files of partitions closed this long")

    @model_validator(mode="after")
    def _check(self) -> ParquetConfig:
        if self.max_file_age_s <= 0:
            raise ValueError("max_file_age_s must be > 0")
        if not self.dir.strip():
            raise ValueError("dir must not be empty")
        return self


class ClickHouseConfig(_Model):
    """A ClickHouse server (or cluster) the history is inserted into."""

    enabled: bool = Field(default=True, description="Insert into ClickHouse")
    url: str = Field(
        default="https://localhost:8443",
        description="http(s)://host:port, or chdb:PATH for an in-process engine")
    database: str = Field(default="petra", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    table: str = Field(default="history", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    username: str = Field(default="default", description="User name")
    password_file: str | None = Field(default=None, description="File holding the password")
    password_env: str | None = Field(default=None, description="Variable holding the password")
    ca_file: str | None = Field(default=None, description="CA bundle for https")
    verify: bool = Field(default=True, description="Verify the server certificate (https)")
    batch_rows: int = Field(default=50_000, ge=1000, le=1_000_000, description="Rows per insert")
    max_delay_s: Seconds = Field(default=1.0, description="Insert a partial batch this late")
    max_rows_per_s: int | None = Field(
        default=None, ge=1000, description="Drain rate of a backlog (None: as fast as it goes)")
    timeout_s: Seconds = Field(default=30.0, description="Request timeout")
    create_table: bool = Field(default=True, description="Create the table if missing")
    rollup: bool = Field(default=False, description="Per-minute min/max/avg/last rollup view")

    @model_validator(mode="after")
    def _check(self) -> ClickHouseConfig:
        if self.password_file and self.password_env:
            raise ValueError("give password_file or password_env, not both")
        if not re.match(r"^(https?://[^/\s]+/?|chdb:.*)$", self.url):
            raise ValueError(f"url must be http(s)://host:port or chdb:PATH, got {self.url!r}")
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be > 0")
        return self


class HistoryConfig(_Model):
    """The ``history:`` section: record signals into a WAL, then Parquet and ClickHouse."""

    dir: str = Field(default="/var/lib/petra/history/{instance}",
                     description="WAL, Parquet and state; relative to the plant file")
    site: str = Field(default="", description="Site column (default: the instance name)")
    record: list[RecordRule] = Field(
        default_factory=list, description="Recording rules; none = every signal on change")
    wal: WalConfig = Field(default=WalConfig(), description="Write-ahead log")
    parquet: ParquetConfig = Field(default=ParquetConfig(), description="Parquet files")
    clickhouse: ClickHouseConfig | None = Field(default=None, description="ClickHouse")
    alarm_signal: str | None = Field(
        default=None, description="bool signal the sink sets while an alarm is active")
    lost_signal: str | None = Field(
        default=None, description="int signal the sink sets to the samples lost so far")

    @model_validator(mode="after")
    def _check(self) -> HistoryConfig:
        if not self.dir.strip():
            raise ValueError("dir must not be empty")
        if self.alarm_signal is not None and self.alarm_signal == self.lost_signal:
            raise ValueError("alarm_signal and lost_signal must be two signals")
        return self


HISTORY_MODELS: tuple[type[BaseModel], ...] = (
    HistoryConfig, RecordRule, WalConfig, ParquetConfig, RetentionConfig, ClickHouseConfig)


def rule_for(rules: list[RecordRule], name: str) -> RecordRule | None:
    """The first rule whose pattern matches ``name``; None when none does (with no rules
    at all every signal is recorded on change: see :data:`DEFAULT_RULE`)."""
    if not rules:
        return DEFAULT_RULE
    for rule in rules:
        if any(fnmatch.fnmatchcase(name, pat) for pat in rule.signals):
            return rule
    return None


DEFAULT_RULE = RecordRule(signals=["*"])


def check_history(config: Any, owners: dict[str, str], diag: Any) -> None:
    """Cross-checks of ``history:`` against the signal table, reported at their keys:
    status signals exist, have the right type and no other writer (``owners`` is the
    semantic pass's signal -> owner map); every rule pattern matches at least one
    signal (a warning: a pattern may be meant for later)."""
    hist: HistoryConfig | None = getattr(config, "history", None)
    if hist is None:
        return
    signals = {s.name: s for s in config.signals}
    for key, want in (("alarm_signal", "bool"), ("lost_signal", "int")):
        name = getattr(hist, key)
        if name is None:
            continue
        sig = signals.get(name)
        if sig is None:
            diag.error(("history", key), f"unknown signal {name!r}")
        elif sig.type != want:
            diag.error(("history", key), f"signal {name!r} is {sig.type}; {key} needs a "
                                         f"{want} signal")
        elif owners.get(name, "") not in ("", HISTORY_OWNER):
            diag.error(("history", key), f"signal {name!r} is written by "
                                         f"{owners[name]!r}; the history sink writes it "
                                         f"(leave it unwritten, owner {HISTORY_OWNER})")
    for i, rule in enumerate(hist.record):
        for j, pat in enumerate(rule.signals):
            if not any(fnmatch.fnmatchcase(n, pat) for n in signals):
                diag.warning(("history", "record", i, "signals", j),
                             f"pattern {pat!r} matches no signal")
