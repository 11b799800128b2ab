"""Config models of the ``drivers`` and ``mqtt`` sections (owned by the drivers work).

Contract with the config validator (``petra.config``):
- ``DriverConfig``: the pydantic model (or discriminated union on ``kind``) of one
  entry of ``drivers:``.
- ``MqttConfig``: the model of the top-level ``mqtt:`` section (broker, publishing).
- ``signal_refs(driver) -> list[SignalRef]``: every signal a driver entry names, with
  its direction and the key path inside the entry, so the validator can report
  unknown signals, type mismatches and two writers of one signal at the right line.

PLACEHOLDER until the field drivers land: permissive models so plants without drivers
validate. Replace, keeping the three names above.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


@dataclass(frozen=True, slots=True)
class SignalRef:
    signal: str
    direction: Literal["read", "write", "readwrite"]
    key_path: tuple[str | int, ...]
    type_hint: str | None = None


class DriverConfig(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    kind: str


class MqttConfig(BaseModel):
    model_config = ConfigDict(extra="allow")


def signal_refs(driver: Any) -> list[SignalRef]:
    return []
