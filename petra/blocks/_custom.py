"""Custom blocks: Python classes that run in the same cycle as the built-ins.

A custom block declares its ports and parameters in a class-level ``spec`` and is
registered either directly (:func:`register_custom`) or through the entry point
group ``petra.blocks`` (:func:`load_entry_points`), whose entry points name
:class:`CustomBlock` subclasses::

    [project.entry-points."petra.blocks"]
    EXAMPLE_DEADBAND = "petra_example_blocks:Deadband"

Each block instance in a plant gets its own object: ``init(params)`` once, then
``step(inputs, ctx)`` every cycle in dependency order. State lives on the object;
a hot reload that leaves the block's definition unchanged keeps the same object.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from petra.blocks._spec import BlockSpec, register_spec

log = logging.getLogger("petra.blocks")

ENTRY_POINT_GROUP = "petra.blocks"

StepResult = Mapping[str, "float | tuple[float, int]"]


@dataclass(frozen=True, slots=True)
class StepContext:
    """What a custom block's ``step`` gets besides its inputs.

    ``quality`` maps each input port to its quality (0 BAD, 1 UNCERTAIN, 2 GOOD);
    ``first_scan`` is true on the block's first step after a cold start or after
    it was (re)created by a hot reload.
    """

    now_ns: int
    dt_ns: int
    first_scan: bool
    params: Mapping[str, Any]
    quality: Mapping[str, int] = field(default_factory=dict)


class CustomBlock:
    """Base class of custom blocks.

    Subclasses set ``spec`` (a :class:`BlockSpec` whose ``category`` is usually
    ``"custom"``), may override :meth:`init`, and must override :meth:`step`, which
    returns a value for every output port: a float (quality = the lowest input
    quality, GOOD without inputs) or ``(value, quality)``. An exception in ``step``
    makes the block's outputs BAD for that cycle and is counted; the scan goes on.
    """

    spec: ClassVar[BlockSpec]
    #: True promises that ``step`` depends on its inputs (and parameters) alone: no
    #: state kept between steps, no ``ctx.now_ns``/``dt_ns``, no outside world. In
    #: the scan's event mode a pure block is stepped only when an input changed;
    #: any other custom block is stepped every cycle.
    pure: ClassVar[bool] = False

    def init(self, params: Mapping[str, Any]) -> None:
        """Called once with the block's parameters (defaults filled in)."""

    def step(self, inputs: Mapping[str, float], ctx: StepContext) -> StepResult:
        """Compute the outputs of one cycle."""
        raise NotImplementedError


_CLASSES: dict[str, type[CustomBlock]] = {}


def register_custom(cls: type[CustomBlock]) -> type[CustomBlock]:
    """Register a custom block class and its spec; registering it again is a no-op."""
    spec = getattr(cls, "spec", None)
    if not isinstance(spec, BlockSpec):
        raise TypeError(f"{cls.__qualname__}.spec must be a BlockSpec")
    existing = _CLASSES.get(spec.name)
    if existing is cls:
        return cls
    if existing is not None:
        raise ValueError(f"block type {spec.name!r} registered by two classes")
    register_spec(spec)
    _CLASSES[spec.name] = cls
    return cls


def custom_class(type_name: str) -> type[CustomBlock] | None:
    """The class of a custom block type, or None for a built-in or unknown type."""
    return _CLASSES.get(type_name)


def load_entry_points() -> list[str]:
    """Register every block class of the ``petra.blocks`` entry point group.

    Idempotent: a class already registered is skipped. Returns the type names the
    group provides. An entry point that fails to load raises: a plant that names a
    block type which cannot be imported must not start.
    """
    import importlib.metadata  # here, not at import: ~3 MB the locked scan rarely needs

    names = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        cls = ep.load()
        if not (isinstance(cls, type) and issubclass(cls, CustomBlock)):
            raise TypeError(f"entry point {ep.name} = {ep.value} is not a CustomBlock subclass")
        register_custom(cls)
        names.append(cls.spec.name)
        log.debug("event=block_entry_point name=%s value=%s", ep.name, ep.value)
    return names
