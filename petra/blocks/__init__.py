"""Block library: IEC 61131-3 style function blocks, their specs and reference models.

Importing this package registers every built-in block type, so :func:`all_specs` is
complete; custom blocks from installed packages join through :func:`load_entry_points`.
See ``docs/blocks.md`` for the semantics of each block.

The catalogue is pure Python, so the config layer and ``petra check`` use it without
the C core: specs and parameters (``_spec``), custom-block registration (``_custom``),
:class:`BlockInstance` (``_instance``) and the one validator of ports and parameters,
:func:`resolve_block` (``_validate``). The compiler (:func:`compile_program`,
``_compiler``) and the runtime (:class:`Program`, ``_runtime``) need the C kernel and
are imported on first use.
"""

import importlib
from typing import TYPE_CHECKING, Any

from petra.blocks import _builtins  # noqa: F401 - registers the built-in specs
from petra.blocks._custom import (
    ENTRY_POINT_GROUP,
    CustomBlock,
    StepContext,
    custom_class,
    load_entry_points,
    register_custom,
)
from petra.blocks._instance import BlockInstance, Const, SignalRef
from petra.blocks._spec import (
    REQUIRED,
    BlockSpec,
    Param,
    Port,
    PortType,
    all_specs,
    get_spec,
    register_spec,
)
from petra.blocks._validate import (
    Problem,
    Resolution,
    check_param,
    resolve_block,
    resolve_params,
)

if TYPE_CHECKING:
    from petra.blocks._compiler import compile_program
    from petra.blocks._runtime import Program


_NEEDS_C = {"compile_program": "petra.blocks._compiler", "Program": "petra.blocks._runtime"}


def __getattr__(name: str) -> Any:
    """The compiler and runtime names, imported (with the C core) on first use."""
    module = _NEEDS_C.get(name)
    if module is not None:
        return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module 'petra.blocks' has no attribute {name!r}")


__all__ = [
    "ENTRY_POINT_GROUP",
    "REQUIRED",
    "BlockInstance",
    "BlockSpec",
    "Const",
    "CustomBlock",
    "Param",
    "Port",
    "PortType",
    "Problem",
    "Program",
    "Resolution",
    "SignalRef",
    "StepContext",
    "all_specs",
    "check_param",
    "compile_program",
    "custom_class",
    "get_spec",
    "load_entry_points",
    "register_custom",
    "register_spec",
    "resolve_block",
    "resolve_params",
]
