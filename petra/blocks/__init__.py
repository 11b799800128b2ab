"""Block library: IEC 61131-3 style function blocks, their specs and reference models.

Importing this package registers every built-in block type, so :func:`all_specs` is
complete; custom blocks from installed packages join through :func:`load_entry_points`.
See ``docs/blocks.md`` for the semantics of each block.
"""

from petra.blocks import _builtins  # noqa: F401 - registers the built-in specs
from petra.blocks._custom import (
    ENTRY_POINT_GROUP,
    CustomBlock,
    StepContext,
    custom_class,
    load_entry_points,
    register_custom,
)
from petra.blocks._program import (
    BlockInstance,
    Const,
    Program,
    compile_program,
    resolve_params,
)
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
    "Program",
    "StepContext",
    "all_specs",
    "compile_program",
    "custom_class",
    "get_spec",
    "load_entry_points",
    "register_custom",
    "register_spec",
    "resolve_params",
]
