"""Modbus values to and from 16-bit registers, in any of the four byte orders.

Modbus defines registers as 16-bit big-endian words and says nothing about values
wider than one register, so devices disagree. With the value's bytes named A B C D
from most to least significant (a float32 or 32-bit integer):

========  =====================  ===================================
order     registers on the wire  what it is
========  =====================  ===================================
ABCD      [AB] [CD]              big-endian (Modicon convention)
CDAB      [CD] [AB]              word-swapped ("little-endian words")
BADC      [BA] [DC]              byte-swapped within each word
DCBA      [DC] [BA]              fully little-endian
========  =====================  ===================================

The same letters extend to 64-bit values (four registers): the word order reverses all
four words, the byte swap swaps within each. For one-register values only the byte swap
matters (BADC and DCBA swap the two bytes, ABCD and CDAB do not).

The register <-> value conversion itself is pymodbus's (``convert_from_registers`` /
``convert_to_registers`` with ``word_order``); this module adds the byte swap, scale
and offset, range checks and the bit-in-register case.
"""

from __future__ import annotations

import math
from typing import Literal

from pymodbus.client.mixin import ModbusClientMixin

_DT = ModbusClientMixin.DATATYPE
DATATYPES = {
    "int16": _DT.INT16, "uint16": _DT.UINT16, "int32": _DT.INT32, "uint32": _DT.UINT32,
    "int64": _DT.INT64, "uint64": _DT.UINT64, "float32": _DT.FLOAT32, "float64": _DT.FLOAT64,
}
INT_RANGES = {
    "int16": (-(2**15), 2**15 - 1), "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1), "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1), "uint64": (0, 2**64 - 1),
}


class CodecError(ValueError):
    """A value that cannot be encoded for, or decoded from, a point."""


def _swap_bytes(regs: list[int]) -> list[int]:
    return [((r & 0xFF) << 8) | (r >> 8) for r in regs]


def decode(regs: list[int], typ: str, order: str = "ABCD") -> int | float:
    """Registers (as read, in wire order) to the raw value of ``typ``."""
    if len(regs) != _words(typ):
        raise CodecError(f"{typ} needs {_words(typ)} registers, got {len(regs)}")
    if any(not 0 <= r <= 0xFFFF for r in regs):
        raise CodecError(f"register value out of 0..65535 in {regs}")
    if order in ("BADC", "DCBA"):
        regs = _swap_bytes(regs)
    word_order: Literal["big", "little"] = "little" if order in ("CDAB", "DCBA") else "big"
    value = ModbusClientMixin.convert_from_registers(regs, DATATYPES[typ],
                                                     word_order=word_order)
    if not isinstance(value, int | float):
        raise CodecError(f"unexpected conversion result {value!r}")
    return value


def encode(value: int | float, typ: str, order: str = "ABCD") -> list[int]:
    """The raw value of ``typ`` to registers in wire order; range-checked."""
    if typ in INT_RANGES:
        if isinstance(value, float):
            if not math.isfinite(value):
                raise CodecError(f"{value} cannot be written as {typ}")
            value = round(value)
        lo, hi = INT_RANGES[typ]
        if not lo <= value <= hi:
            raise CodecError(f"{value} is outside the {typ} range {lo}..{hi}")
    elif typ == "float32":
        value = float(value)
        if math.isfinite(value) and abs(value) > 3.4028234663852886e38:
            raise CodecError(f"{value} is outside the float32 range")
    else:
        value = float(value)
    word_order: Literal["big", "little"] = "little" if order in ("CDAB", "DCBA") else "big"
    regs = ModbusClientMixin.convert_to_registers(value, DATATYPES[typ], word_order=word_order)
    if order in ("BADC", "DCBA"):
        regs = _swap_bytes(regs)
    return regs


def scale_in(raw: int | float, scale: float, offset: float) -> int | float:
    """Engineering value from a raw device value: raw * scale + offset."""
    if scale == 1.0 and offset == 0.0:
        return raw
    return raw * scale + offset


def scale_out(value: int | float | bool, scale: float, offset: float) -> int | float:
    """Raw device value from an engineering value: (value - offset) / scale."""
    if scale == 1.0 and offset == 0.0:
        return int(value) if isinstance(value, bool) else value
    return (float(value) - offset) / scale


def get_bit(reg: int, bit: int) -> bool:
    return bool((reg >> bit) & 1)


def set_bit(reg: int, bit: int, value: bool) -> int:
    return (reg | (1 << bit)) if value else (reg & ~(1 << bit) & 0xFFFF)


def _words(typ: str) -> int:
    return {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "int64": 4, "uint64": 4,
            "float32": 2, "float64": 4}[typ]
