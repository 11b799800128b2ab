"""One block of a compiled program: :class:`BlockInstance`, and :class:`Const`.

Pure Python (no C core), so the catalogue layer can hold it.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Const:
    """A constant block input."""

    value: float | int | bool


@dataclass(frozen=True)
class BlockInstance:
    """One block of a plant, already in execution order.

    ``inputs`` maps port names to a signal index or a :class:`Const`; ``outputs``
    maps port names to signal indices. Ports left out take their default (or, for
    ``extra["param_inputs"]`` ports, the parameter); outputs left out are discarded.
    """

    name: str
    type: str
    inputs: Mapping[str, int | Const]
    outputs: Mapping[str, int]
    params: Mapping[str, Any] = field(default_factory=dict)

    def definition(self) -> tuple[Any, ...]:
        """What must be equal for a hot reload to keep this block's state."""
        return (
            self.type,
            tuple(sorted((k, _const_key(v)) for k, v in self.inputs.items())),
            tuple(sorted(self.outputs.items())),
            tuple(sorted((k, repr(v)) for k, v in self.params.items())),
        )


def _const_key(v: int | Const) -> Any:
    if isinstance(v, Const):
        return ("const", struct.pack("<d", float(v.value)))
    return int(v)
