"""The ``retain:`` settings: which block state is persisted to disk, where and how often.

Every built-in block's state survives a scan restart without any setting (the retain
area in shared memory, docs/operations.md "Warm restart and retain"). ``retain`` is
about power loss, IEC 61131-3 RETAIN: the state of the blocks it names is also written
to a file, periodically and on a clean stop, and read back at a cold start.

- per block: ``retain: true`` on a block;
- plant-wide: ``retain: true`` at the top level (every stateful built-in), or the
  mapping form ``retain: {all: true, dir: ..., interval: 10s}``.

A block ``retain: true`` must be a built-in with state; custom (Python) blocks restart
cold and cannot be retained (their state lives in their Python objects).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, field_validator

from petra.config._history import Seconds

if TYPE_CHECKING:
    from petra.config._errors import Diagnostics
    from petra.config._models import PlantConfig

RETAIN_DIR_DEFAULT = "/var/lib/petra/retain/{instance}"
INTERVAL_MIN_S, INTERVAL_MAX_S = 0.1, 3600.0


class RetainConfig(BaseModel):
    """The mapping form of the top-level ``retain:``."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    all: bool = Field(default=False, description="Retain every stateful built-in block")
    dir: str = Field(default=RETAIN_DIR_DEFAULT,
                     description="Directory of the retain file; {instance} is replaced")
    interval: Seconds = Field(
        default=10.0, description="Seconds between two writes of the file (0.1..3600)")

    @field_validator("interval")
    @classmethod
    def _interval(cls, v: float) -> float:
        if not INTERVAL_MIN_S <= v <= INTERVAL_MAX_S:
            raise ValueError(
                f"interval must be {INTERVAL_MIN_S:g}..{INTERVAL_MAX_S:g} s, got {v:g}")
        return v

    @field_validator("dir")
    @classmethod
    def _dir(cls, v: str) -> str:
        if not v.strip() or "\x00" in v:
            raise ValueError("dir must be a non-empty path")
        return v


def retain_settings(config: PlantConfig) -> RetainConfig:
    """The plant's ``retain:`` in its mapping form (``true`` is ``{all: true}``)."""
    r = config.retain
    if isinstance(r, RetainConfig):
        return r
    return RetainConfig(all=bool(r))


def retained_blocks(config: PlantConfig) -> list[str]:
    """Names of the blocks whose state goes to the retain file: those marked
    ``retain: true``, or every stateful built-in when the plant says ``all`` (a block's
    own ``retain: false`` still opts it out)."""
    from petra.blocks._builtins import KERNELS

    every = retain_settings(config).all
    out = []
    for b in config.blocks:
        kernel = KERNELS.get(b.type)
        stateful = kernel is not None and (kernel.n_state > 0 or b.type == "AVERAGE")
        if b.retain is True or (b.retain is None and every and stateful):
            out.append(b.name)
    return out


def check_retain(config: PlantConfig, diag: Diagnostics) -> None:
    """A block marked ``retain: true`` must have state to retain."""
    from petra.blocks._builtins import KERNELS

    for i, b in enumerate(config.blocks):
        if b.retain is not True:
            continue
        kernel = KERNELS.get(b.type)
        if kernel is None:
            diag.error(("blocks", i, "retain"),
                       f"block type {b.type} is not a built-in: custom blocks restart cold "
                       "and cannot be retained")
        elif kernel.n_state == 0 and b.type != "AVERAGE":
            diag.error(("blocks", i, "retain"), f"block type {b.type} has no state to retain")
