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

Decoding never judges a value (a NaN from a float register is a valid decode; whether
the signal accepts it is the driver's device-value rule); encoding refuses anything the
registers cannot carry exactly as meant: out of the integer type's range, beyond float32,
or NaN/infinity unless the signal allows them.
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


FLOAT32_MAX = 3.4028234663852886e38


class CodecError(ValueError):
    """A value that cannot be encoded for, or decoded from, a point."""


def _swap_bytes(regs: list[int]) -> list[int]:
    return [((r & 0xFF) << 8) | (r >> 8) for r in regs]


def decode(regs: list[int], typ: str, order: str = "ABCD") -> int | float:
    """Registers (as read, in wire order) to the raw value of ``typ``. A float may come
    out NaN or infinite: the caller judges it against the signal."""
    if typ not in DATATYPES:
        raise CodecError(f"unknown type {typ!r}")
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


def encode(value: int | float, typ: str, order: str = "ABCD", *,
           allow_nonfinite: bool = False) -> list[int]:
    """The raw value of ``typ`` to registers in wire order; range-checked. NaN and
    infinities are refused unless ``allow_nonfinite`` (the signal allows them and the
    type is a float); so is a finite value that would round to infinity in float32."""
    if typ not in DATATYPES:
        raise CodecError(f"unknown type {typ!r}")
    if typ in INT_RANGES:
        if isinstance(value, float):
            if not math.isfinite(value):
                raise CodecError(f"{value} cannot be written as {typ}")
            value = round(value)
        lo, hi = INT_RANGES[typ]
        if not lo <= value <= hi:
            raise CodecError(f"{value} is outside the {typ} range {lo}..{hi}")
    else:
        try:
            value = float(value)
        except OverflowError:
            raise CodecError(f"{value} is outside the {typ} range") from None
        if not math.isfinite(value):
            if not allow_nonfinite:
                raise CodecError(f"{value} is not a finite number")
        elif typ == "float32" and abs(value) > FLOAT32_MAX:
            raise CodecError(f"{value} is outside the float32 range")
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
