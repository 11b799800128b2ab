"""One block of a plant: :class:`BlockInstance`, and :class:`Const` for a constant input.

The same class carries a block from the plant file to the compiled program. What an
input or output port is connected to is a *signal reference*:

- a signal **name** (``str``), as the config writes it (``petra.config`` resolves every
  block against its spec and hands out instances by name, ``Plant.blocks``);
- a segment **index** (``int``), as the compiler reads it (:func:`compile_program`
  takes instances by index; :meth:`BlockInstance.bind` turns the one into the other).

A constant input is always a :class:`Const`, never a bare number, so an ``int`` input is
never ambiguous between "signal 3" and "the constant 3".

Pure Python: the config and ``petra check`` use it without the C core.
"""

from __future__ import annotations

import hashlib
import operator
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from petra.blocks._spec import BlockSpec

SignalRef = int | str
"""What a port is connected to: a segment index (a program) or a signal name (a plant)."""


@dataclass(frozen=True, slots=True)
class Const:
    """A constant block input. ``Const(Const(x))`` is ``Const(x)``: wrapping whatever is
    not a signal name (as a caller holding config-form inputs may) keeps the constant."""

    value: float | int | bool

    def __post_init__(self) -> None:
        inner: object = self.value
        if isinstance(inner, Const):
            object.__setattr__(self, "value", inner.value)


@dataclass(frozen=True)
class BlockInstance:
    """One block: its name, type, connections and parameters.

    ``inputs`` maps input port names to a signal reference or a :class:`Const`;
    ``outputs`` maps output port names to a signal reference. As written (by a test, a
    bench, a Python caller), ports and parameters may be left out: they take their
    defaults when the block is resolved against its spec
    (:func:`petra.blocks.resolve_block`); an output left out is discarded. A resolved
    instance (every input port present, every parameter filled in and normalised) also
    carries the ``spec`` it was resolved against.
    """

    name: str
    type: str
    inputs: Mapping[str, SignalRef | Const]
    outputs: Mapping[str, SignalRef]
    params: Mapping[str, Any] = field(default_factory=dict)
    spec: BlockSpec | None = field(default=None, compare=False, repr=False, kw_only=True)

    @property
    def n_inputs(self) -> int | None:
        """N of a variadic type's ``in1..inN`` once resolved; None for other types."""
        if self.spec is None or self.spec.variadic is None:
            return None
        return sum(1 for k in self.inputs if is_variadic_key(self.spec, k))

    def definition(self) -> tuple[Any, ...]:
        """What must be equal for a hot reload to keep this block's state: the type,
        every connection (signal references compared as they are, constants by their
        float64 bits) and every parameter."""
        return (
            self.type,
            tuple(sorted((k, _input_key(v)) for k, v in self.inputs.items())),
            tuple(sorted((k, _ref_key(v)) for k, v in self.outputs.items())),
            tuple(sorted((k, repr(v)) for k, v in self.params.items())),
        )

    @property
    def definition_hash(self) -> str:
        """SHA-256 of :meth:`definition`: changes exactly when the definition does."""
        return hashlib.sha256(repr(self.definition()).encode()).hexdigest()

    def bind(self, index: Callable[[str], int]) -> BlockInstance:
        """The same block with every signal name replaced by ``index(name)`` (e.g.
        ``Segment.index``): what the compiler takes. Indices and constants stay."""

        def ref(v: SignalRef) -> int:
            return index(v) if isinstance(v, str) else v

        return BlockInstance(
            self.name,
            self.type,
            {k: v if isinstance(v, Const) else ref(v) for k, v in self.inputs.items()},
            {k: ref(v) for k, v in self.outputs.items()},
            self.params,
            spec=self.spec,
        )


def is_variadic_key(spec: BlockSpec, key: str) -> bool:
    """Whether ``key`` names one of ``spec``'s variadic ports: the prefix and a number
    from 1 without leading zeros (``in1``, ``in12``; not ``in0`` or ``in01``)."""
    prefix = spec.variadic
    if prefix is None or not key.startswith(prefix):
        return False
    digits = key[len(prefix) :]
    return digits.isascii() and digits.isdigit() and digits[0] != "0"


def _ref_key(v: SignalRef) -> Any:
    return v if isinstance(v, str) else operator.index(v)


def _input_key(v: SignalRef | Const) -> Any:
    if isinstance(v, Const):
        return ("const", struct.pack("<d", float(v.value)))
    return _ref_key(v)
