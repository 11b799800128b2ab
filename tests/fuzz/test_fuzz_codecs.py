"""Fuzz the device codecs (Modbus registers, S7 bytes) and the device-value rule.

Properties: decoding any registers or bytes gives a number or a CodecError / S7ValueError
(the driver catches anything else per point, but the codecs should not need it);
encoding any value gives registers or bytes of exactly the type's size, or a refusal,
and never a NaN or infinity unless the signal allows one; what encodes decodes back to
the same value (rounded to float32 where the type is float32); the device-value rule
never raises and never lets a value through GOOD that its signal does not allow.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import pytest
from fuzz_support import CORPUS, FUZZ
from hypothesis import given
from hypothesis import strategies as st

from petra.config._s7_address import S7AddressError, parse_s7_address
from petra.drivers._common import fit_device_value, refuse_device_write
from petra.drivers._modbus_codec import DATATYPES, INT_RANGES, CodecError, decode, encode
from petra.drivers.s7 import S7ValueError, decode_s7, encode_s7
from petra.shm import SignalInfo
from petra.types import FLAG_NONFINITE, INT64_MAX, INT64_MIN, SignalType

TYPES = list(DATATYPES)
ORDERS = ["ABCD", "CDAB", "BADC", "DCBA"]
WORDS = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "int64": 4, "uint64": 4,
         "float32": 2, "float64": 4}
ANY_NUMBER = st.one_of(st.floats(), st.integers(-(2**70), 2**70),
                       st.integers(-(10**400), 10**400))
S7_ADDRESSES = ["DB1.DBX0.3", "DB1.DBB0", "DB1.DBW0", "DB1.DBW0:INT", "DB1.DBD0",
                "DB1.DBD0:DINT", "DB1.DBD0:REAL", "DB1.DBB0:LREAL", "MW2", "IB0", "QD4:REAL"]


def _f32(x: float) -> float:
    return float(struct.unpack(">f", struct.pack(">f", x))[0])


# ----------------------------------------------------------------------------- Modbus
@FUZZ
@given(regs=st.lists(st.integers(-3, 70_000), max_size=5),
       typ=st.sampled_from([*TYPES, "bool", "float16"]), order=st.sampled_from([*ORDERS, "XYZW"]))
def test_modbus_decode_any_registers(regs: list[int], typ: str, order: str) -> None:
    try:
        v = decode(regs, typ, order)
    except CodecError:
        return
    assert typ in DATATYPES and len(regs) == WORDS[typ]
    assert isinstance(v, int | float) and not isinstance(v, bool)
    if typ in INT_RANGES:
        lo, hi = INT_RANGES[typ]
        assert isinstance(v, int) and lo <= v <= hi


@FUZZ
@given(regs=st.lists(st.integers(0, 0xFFFF), min_size=4, max_size=4),
       typ=st.sampled_from(TYPES), order=st.sampled_from(ORDERS))
def test_modbus_decode_encode_round_trips_every_bit_pattern(regs: list[int], typ: str,
                                                            order: str) -> None:
    regs = regs[:WORDS[typ]]
    v = decode(regs, typ, order)
    if isinstance(v, float) and math.isnan(v):
        return  # NaN payload bits are not kept by Python floats
    assert encode(v, typ, order, allow_nonfinite=True) == regs


@FUZZ
@given(value=ANY_NUMBER, typ=st.sampled_from(TYPES), order=st.sampled_from(ORDERS),
       allow=st.booleans())
def test_modbus_encode_any_value(value: float, typ: str, order: str, allow: bool) -> None:
    try:
        regs = encode(value, typ, order, allow_nonfinite=allow)
    except CodecError:
        return
    assert len(regs) == WORDS[typ] and all(0 <= r <= 0xFFFF for r in regs)
    back = decode(regs, typ, order)
    if typ in INT_RANGES:
        assert back == round(value)
    elif isinstance(back, float) and math.isnan(back):
        assert allow and math.isnan(value)
    else:
        assert allow or math.isfinite(back), "a non-finite value reached the registers"
        assert back == (_f32(float(value)) if typ == "float32" else float(value))


def _registers_corpus() -> list[dict[str, Any]]:
    return list(json.loads((CORPUS / "modbus_registers.json").read_text()))


@pytest.mark.parametrize("case", _registers_corpus(), ids=lambda c: c["why"])
def test_modbus_register_corpus(case: dict[str, Any]) -> None:
    try:
        v = decode(case["regs"], case["type"], case["order"])
    except CodecError:
        return
    for info in INFOS:
        stored, why = fit_device_value(info, v)
        _check_verdict(info, v, stored, why)


# ----------------------------------------------------------------------------- S7
@FUZZ
@given(data=st.binary(min_size=8, max_size=8), address=st.sampled_from(S7_ADDRESSES))
def test_s7_decode_any_bytes_and_encode_back(data: bytes, address: str) -> None:
    a = parse_s7_address(address)
    v = decode_s7(bytearray(data), 0, a)
    if a.type == "BOOL":
        assert isinstance(v, bool)
        return
    if isinstance(v, float) and math.isnan(v):
        return
    assert bytes(encode_s7(v, a, allow_nonfinite=True)) == data[:a.size]


@FUZZ
@given(value=ANY_NUMBER, address=st.sampled_from([a for a in S7_ADDRESSES if "X" not in a]),
       allow=st.booleans())
def test_s7_encode_any_value(value: float, address: str, allow: bool) -> None:
    a = parse_s7_address(address)
    try:
        buf = encode_s7(value, a, allow_nonfinite=allow)
    except S7ValueError:
        return
    assert len(buf) == a.size
    back = decode_s7(buf, 0, a)
    if isinstance(back, float) and math.isnan(back):
        assert allow and math.isnan(value)
    elif isinstance(back, float):
        assert allow or math.isfinite(back)
        assert back == (_f32(float(value)) if a.type == "REAL" else float(value))
    else:
        assert back == round(value)


def _s7_corpus() -> list[dict[str, Any]]:
    return list(json.loads((CORPUS / "s7_bytes.json").read_text()))


@pytest.mark.parametrize("case", _s7_corpus(), ids=lambda c: c["why"])
def test_s7_byte_corpus(case: dict[str, Any]) -> None:
    a = parse_s7_address(case["address"])
    data = bytearray(bytes.fromhex(case["hex"]))
    if len(data) < a.size:
        # a short buffer: the driver refuses the reply (size check) before decoding;
        # should one reach decode, it raises and the driver marks only that point
        with pytest.raises(Exception):  # noqa: B017 - any error, caught per point
            decode_s7(data, 0, a)
        return
    v = decode_s7(data, 0, a)
    for info in INFOS:
        stored, why = fit_device_value(info, v)
        _check_verdict(info, v, stored, why)


@FUZZ
@given(text=st.text(max_size=30))
def test_s7_address_parser_only_refuses(text: str) -> None:
    try:
        a = parse_s7_address(text)
    except S7AddressError:
        return
    assert parse_s7_address(str(a)) == a


@pytest.mark.parametrize(
    "text", (CORPUS / "s7_addresses.txt").read_text(encoding="utf-8").split("\n")[:-1])
def test_s7_address_corpus(text: str) -> None:
    try:
        a = parse_s7_address(text)
    except S7AddressError as exc:
        assert 1 <= exc.column <= len(text) + 1
        return
    assert parse_s7_address(str(a)) == a


# ----------------------------------------------------------------------------- the rule
INFOS = [SignalInfo(0, "f", SignalType.FLOAT, "", "", 0),
         SignalInfo(1, "fl", SignalType.FLOAT, "", "", 0, -10.0, 10.0),
         SignalInfo(2, "fn", SignalType.FLOAT, "", "", FLAG_NONFINITE, None, 100.0),
         SignalInfo(3, "i", SignalType.INT, "", "", 0),
         SignalInfo(4, "il", SignalType.INT, "", "", 0, 0.0, 1000.0),
         SignalInfo(5, "b", SignalType.BOOL, "", "", 0)]


def _check_verdict(info: SignalInfo, raw: Any, stored: Any, why: str | None) -> None:
    if why is None:
        assert stored is not None
        if info.type is SignalType.BOOL:
            assert isinstance(stored, bool)
            return
        if info.type is SignalType.INT:
            assert isinstance(stored, int) and INT64_MIN <= stored <= INT64_MAX
        else:
            assert isinstance(stored, float)
            assert math.isfinite(stored) or info.allow_nonfinite
        if stored == stored:  # noqa: PLR0124 - NaN has no limits to break
            assert info.minimum is None or stored >= info.minimum
            assert info.maximum is None or stored <= info.maximum
    else:
        assert len(why) < 200
        if stored is not None and info.type is SignalType.INT:
            assert INT64_MIN <= stored <= INT64_MAX, "a BAD int must still fit its slot"


@FUZZ
@given(raw=st.one_of(ANY_NUMBER, st.booleans()), k=st.integers(0, len(INFOS) - 1))
def test_device_value_rule_never_lets_a_bad_value_through(raw: Any, k: int) -> None:
    info = INFOS[k]
    stored, why = fit_device_value(info, raw)
    _check_verdict(info, raw, stored, why)
    if why is None and stored is not None and info.type is not SignalType.BOOL:
        assert refuse_device_write(info, stored) is None, "what reads GOOD may be written"
