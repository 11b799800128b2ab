"""What a block type declares: named ports, parameters, and whether it delays.

This is the contract between the block library (``petra.blocks``), the config validator
(``petra.config``: port names, port/signal types, parameter ranges, algebraic loops)
and the compiler that turns a plant's blocks into the C instruction list.
"""

from __future__ import annotations

import difflib
import enum
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


class PortType(enum.StrEnum):
    """Type of a block port. NUM accepts int or float signals; ANY accepts every type."""

    BOOL = "bool"
    INT = "int"
    FLOAT = "float"
    NUM = "num"
    ANY = "any"

    def accepts(self, signal_type: str) -> bool:
        """Whether a signal of ``signal_type`` (bool/int/float) may connect here."""
        if self is PortType.ANY:
            return True
        if self is PortType.NUM:
            return signal_type in ("int", "float")
        return self.value == signal_type


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


@dataclass(frozen=True, slots=True)
class Port:
    """A named input or output. An input with a default may be left unconnected."""

    name: str
    type: PortType
    default: bool | int | float | None = None
    doc: str = ""


@dataclass(frozen=True, slots=True)
class Param:
    """A block parameter with its type and allowed range (checked by the config)."""

    name: str
    kind: type = float
    default: Any = REQUIRED
    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False
    choices: tuple[str, ...] | None = None
    doc: str = ""


@dataclass(frozen=True, slots=True)
class BlockSpec:
    """Declaration of one block type.

    ``variadic`` names an input prefix (``"in"``): the block then takes ``in1`` ..
    ``inN`` with ``min_inputs <= N <= max_inputs``, all of the first variadic port's
    type. ``delay`` is True when outputs depend only on state from earlier cycles, so
    a feedback loop through the block is not an algebraic loop.
    """

    name: str
    category: str
    doc: str
    inputs: tuple[Port, ...]
    outputs: tuple[Port, ...]
    params: tuple[Param, ...] = ()
    variadic: str | None = None
    min_inputs: int = 2
    max_inputs: int = 8
    delay: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def input_ports(self, n_variadic: int | None = None) -> Iterator[Port]:
        """The concrete input ports, expanding a variadic prefix to ``n_variadic``."""
        if self.variadic is None:
            yield from self.inputs
            return
        n = self.min_inputs if n_variadic is None else n_variadic
        template = self.inputs[0]
        for i in range(1, n + 1):
            yield Port(f"{self.variadic}{i}", template.type, template.default, template.doc)
        yield from self.inputs[1:]


_REGISTRY: dict[str, BlockSpec] = {}


def register_spec(spec: BlockSpec) -> BlockSpec:
    """Add a block type; names are upper case and unique."""
    if spec.name in _REGISTRY and _REGISTRY[spec.name] is not spec:
        raise ValueError(f"block type {spec.name!r} registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def get_spec(name: str) -> BlockSpec:
    """The spec of a block type; KeyError with close matches in the message."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown block type {name!r}{hint}") from None


def all_specs() -> dict[str, BlockSpec]:
    return dict(_REGISTRY)
