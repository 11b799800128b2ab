"""Block library: IEC 61131-3 style function blocks, their specs and reference models."""

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
    "REQUIRED",
    "BlockSpec",
    "Param",
    "Port",
    "PortType",
    "all_specs",
    "get_spec",
    "register_spec",
]
