"""Pure logic of the field drivers: addresses, codecs, read plans, backoff, config, payloads."""

from __future__ import annotations

import json
import random
import struct
import uuid
from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from petra.config._drivers import (
    DRIVER_ADAPTER,
    ModbusPoint,
    MqttConfig,
    MqttSubscription,
    S7Config,
    signal_refs,
)
from petra.drivers import S7AddressError, parse_s7_address
from petra.drivers._modbus_codec import CodecError, decode, encode, get_bit, set_bit
from petra.drivers._modbus_plan import PlannedPoint, plan_reads, split_block
from petra.drivers.mqtt_in import PayloadError, match_levels, parse_payload
from petra.drivers.s7 import S7Planned, decode_s7, encode_s7, plan_s7
from petra.io import Backoff, IoLimits
from petra.shm import Quality, Segment, SignalDef, SignalType
from petra.sinks._mqtt_commands import handle_command


# ----------------------------------------------------------------------------- S7 addresses
@pytest.mark.parametrize(("text", "area", "db", "byte", "bit", "typ"), [
    ("DB1.DBX0.0", "DB", 1, 0, 0, "BOOL"),
    ("DB12.DBB2", "DB", 12, 2, None, "BYTE"),
    ("DB1.DBW4", "DB", 1, 4, None, "WORD"),
    ("DB1.DBW4:INT", "DB", 1, 4, None, "INT"),
    ("DB1.DBD8", "DB", 1, 8, None, "DWORD"),
    ("db1.dbd8:real", "DB", 1, 8, None, "REAL"),
    ("DB1.DBD8:DINT", "DB", 1, 8, None, "DINT"),
    ("DB1.DBB16:LREAL", "DB", 1, 16, None, "LREAL"),
    ("M10.1", "M", 0, 10, 1, "BOOL"),
    ("MX10.7", "M", 0, 10, 7, "BOOL"),
    ("MW20", "M", 0, 20, None, "WORD"),
    ("IB0", "I", 0, 0, None, "BYTE"),
    ("QD4", "Q", 0, 4, None, "DWORD"),
    ("QD4:REAL", "Q", 0, 4, None, "REAL"),
])
def test_s7_addresses_parse(  # noqa: PLR0917 - parametrized columns
        text: str, area: str, db: int, byte: int, bit: int | None,
                            typ: str) -> None:
    a = parse_s7_address(text)
    assert (a.area, a.db, a.byte, a.bit, a.type) == (area, db, byte, bit, typ)
    assert parse_s7_address(str(a)) == a


@pytest.mark.parametrize(("text", "column", "words"), [
    ("DB1.DBX0.8", 10, "not 0-7"),
    ("DB1.DBX0", 9, "'.'"),
    ("DB1.DBW4:REAL", 10, "does not fit"),
    ("DB1.DBQ4", 7, "X, B, W or D"),
    ("DB0.DBB1", 3, "start at 1"),
    ("XB1", 1, "DB, M, I or Q"),
    ("MW", 3, "byte offset"),
    ("MW20x", 5, "unexpected"),
    ("DB1.DBD8:FLOAT", 10, "unknown type"),
    ("DB1DBB2", 4, "'.'"),
])
def test_s7_address_errors_point_at_the_column(text: str, column: int, words: str) -> None:
    with pytest.raises(S7AddressError) as info:
        parse_s7_address(text)
    assert info.value.column == column, str(info.value)
    assert words in str(info.value)


def test_s7_config_rejects_a_bad_address_with_its_column() -> None:
    with pytest.raises(ValidationError, match="column 10"):
        S7Config.model_validate({"kind": "s7", "name": "c", "host": "h",
                                 "points": [{"signal": "x", "address": "DB1.DBX0.9"}]})


def test_s7_codec_round_trips() -> None:
    for text, value in (("DB1.DBW0:INT", -5), ("DB1.DBD0:REAL", 1.5), ("DB1.DBB0:LREAL", 2.25),
                        ("DB1.DBD0:DINT", -70000), ("MW0", 65535), ("IB0", 7)):
        a = parse_s7_address(text)
        assert decode_s7(encode_s7(value, a), 0, a) == value
    with pytest.raises(ValueError, match="range"):
        encode_s7(70000, parse_s7_address("MW0"))


def test_s7_plan_respects_pdu_and_gap() -> None:
    pts = [S7Planned(i, i, None, parse_s7_address(a))  # type: ignore[arg-type]
           for i, a in enumerate(["DB1.DBD0", "DB1.DBD4", "DB1.DBD200", "MW0", "DB2.DBB0"])]
    blocks = plan_s7(pts, max_bytes=100, max_gap=16)
    spans = sorted((b.area, b.db, b.start, b.size) for b in blocks)
    assert spans == [("DB", 1, 0, 8), ("DB", 1, 200, 4), ("DB", 2, 0, 1), ("M", 0, 0, 2)]


# ----------------------------------------------------------------------------- Modbus codec
@pytest.mark.parametrize("order", ["ABCD", "CDAB", "BADC", "DCBA"])
@pytest.mark.parametrize(("typ", "value"), [
    ("int16", -2), ("uint16", 65535), ("int32", -123456), ("uint32", 4_000_000_000),
    ("int64", -(2**60)), ("uint64", 2**63 + 5), ("float32", 0.15625), ("float64", -1e200)])
def test_modbus_codec_round_trips(typ: str, value: int | float, order: str) -> None:
    assert decode(encode(value, typ, order), typ, order) == value


def test_modbus_byte_orders_match_their_names() -> None:
    raw = struct.pack(">I", 0x11223344)  # A=11 B=22 C=33 D=44
    assert encode(0x11223344, "uint32", "ABCD") == [0x1122, 0x3344]
    assert encode(0x11223344, "uint32", "CDAB") == [0x3344, 0x1122]
    assert encode(0x11223344, "uint32", "BADC") == [0x2211, 0x4433]
    assert encode(0x11223344, "uint32", "DCBA") == [0x4433, 0x2211]
    assert raw == bytes([0x11, 0x22, 0x33, 0x44])


def test_modbus_codec_range_errors() -> None:
    with pytest.raises(CodecError):
        encode(70000, "uint16")
    with pytest.raises(CodecError):
        encode(-1, "uint32")
    with pytest.raises(CodecError):
        decode([1], "int32")
    assert set_bit(0b1001, 1, True) == 0b1011 and not get_bit(0b1001, 1)


def _pp(pos: int, addr: int, typ: str = "uint16", table: str = "holding",
        unit: int = 1) -> PlannedPoint:
    p = ModbusPoint(signal=f"s{pos}", table=table, address=addr, type=typ)  # type: ignore[arg-type]
    return PlannedPoint(pos, pos, p, unit)


def test_modbus_plan_coalesces_within_limits_and_gap() -> None:
    pts = [_pp(0, 0), _pp(1, 1, "float32"), _pp(2, 10), _pp(3, 200), _pp(4, 5, unit=2),
           _pp(5, 0, "bool", "coil"), _pp(6, 1999, "bool", "coil")]
    blocks = plan_reads(pts, max_gap=8)
    spans = sorted((b.unit, b.table, b.start, b.count) for b in blocks)
    assert spans == [(1, "coil", 0, 1), (1, "coil", 1999, 1), (1, "holding", 0, 11),
                     (1, "holding", 200, 1), (2, "holding", 5, 1)]
    many = [_pp(i, i) for i in range(300)]
    assert [b.count for b in plan_reads(many)] == [125, 125, 50]
    assert len(plan_reads(many, coalesce=False)) == 300
    halves = split_block(plan_reads(many[:10])[0])
    assert [(b.start, b.count) for b in halves] == [(0, 5), (5, 5)]


def test_modbus_point_validation() -> None:
    with pytest.raises(ValidationError, match="read-only"):
        ModbusPoint(signal="x", table="input", address=0, direction="write")
    with pytest.raises(ValidationError, match="bit"):
        ModbusPoint(signal="x", table="holding", address=0, type="bool")
    with pytest.raises(ValidationError, match="type must be bool"):
        ModbusPoint(signal="x", table="coil", address=0, type="int16")


# ----------------------------------------------------------------------------- common
def test_backoff_grows_with_jitter_and_resets() -> None:
    b = Backoff(IoLimits(backoff_initial_s=0.1, backoff_max_s=1.0, backoff_jitter=0.2),
                random.Random(1))
    delays = [b.next_delay() for _ in range(8)]
    assert all(d > 0 for d in delays)
    assert 0.08 <= delays[0] <= 0.12 and delays[-1] <= 1.2 and delays[-1] >= 0.8
    b.reset()
    assert b.next_delay() <= 0.12


def test_zero_delay_is_a_config_error() -> None:
    with pytest.raises(ValidationError, match="greater than 0"):
        DRIVER_ADAPTER.validate_python({"kind": "modbus_tcp", "name": "m", "host": "h",
                                        "retry": {"initial_delay_s": 0}})
    with pytest.raises(ValueError, match="busy-loop"):
        IoLimits(backoff_initial_s=0)


def test_signal_refs_name_direction_and_key_path() -> None:
    d = DRIVER_ADAPTER.validate_python({
        "kind": "modbus_tcp", "name": "m", "host": "h",
        "points": [{"signal": "a", "table": "holding", "address": 0, "type": "float32"},
                   {"signal": "b", "table": "coil", "address": 0, "direction": "write"}]})
    refs = signal_refs(d)
    assert [(r.signal, r.direction, r.key_path, r.type_hint) for r in refs] == [
        ("a", "read", ("points", 0, "signal"), "float"),
        ("b", "write", ("points", 1, "signal"), "bool")]
    m = DRIVER_ADAPTER.validate_python({"kind": "mqtt", "name": "q", "subscriptions": [
        {"topic": "a/+", "signal": "{1}.x"}, {"topic": "b", "signal": "lit"}]})
    assert [r.signal for r in signal_refs(m)] == ["lit"]


def test_unknown_keys_and_bad_topics_are_errors() -> None:
    with pytest.raises(ValidationError, match="Extra inputs"):
        DRIVER_ADAPTER.validate_python({"kind": "s7", "name": "c", "host": "h", "rackk": 1})
    with pytest.raises(ValidationError, match="whole"):
        MqttSubscription(topic="a/b#", signal="x")
    with pytest.raises(ValidationError, match="not both"):
        MqttConfig.model_validate({"broker": {"username": "u", "password_file": "f",
                                              "password_env": "E"}})


# ----------------------------------------------------------------------------- MQTT in
def test_match_levels() -> None:
    assert match_levels("a/+/c", "a/b/c") == ["b"]
    assert match_levels("a/#", "a/b/c") == ["b/c"]
    assert match_levels("a/+", "a/b/c") is None
    assert match_levels("a/b", "a/b") == []


@pytest.mark.parametrize(("payload", "fmt", "path", "typ", "value"), [
    (b"21.5", "plain", None, SignalType.FLOAT, 21.5),
    (b"42", "plain", None, SignalType.INT, 42),
    (b"ON", "plain", None, SignalType.BOOL, True),
    (b'{"value": 3}', "json", None, SignalType.FLOAT, 3.0),
    (b"true", "json", None, SignalType.BOOL, True),
    (b'{"a": [1, {"b": 7}]}', "json", "a.1.b", SignalType.INT, 7),
])
def test_payload_forms(payload: bytes, fmt: str, path: str | None, typ: SignalType,
                       value: object) -> None:
    sub = MqttSubscription(topic="t", signal="s", format=fmt, json_path=path)  # type: ignore[arg-type]
    assert parse_payload(payload, sub, typ) == value


@pytest.mark.parametrize(("payload", "fmt", "typ"), [
    (b"abc", "plain", SignalType.FLOAT), (b"1.5", "plain", SignalType.INT),
    (b"2", "plain", SignalType.BOOL), (b"", "plain", SignalType.FLOAT),
    (b"inf", "plain", SignalType.FLOAT), (b"{x", "json", SignalType.FLOAT),
    (b'"12"', "json", SignalType.FLOAT), (b"true", "json", SignalType.INT),
    (b"\xff", "plain", SignalType.INT), (b"99999999999999999999", "plain", SignalType.INT),
])
def test_bad_payloads_are_refused(payload: bytes, fmt: str, typ: SignalType) -> None:
    sub = MqttSubscription(topic="t", signal="s", format=fmt)  # type: ignore[arg-type]
    with pytest.raises(PayloadError):
        parse_payload(payload, sub, typ)


# ----------------------------------------------------------------------------- commands
@pytest.fixture
def seg() -> Iterator[Segment]:
    s = Segment.create(f"u{uuid.uuid4().hex[:10]}", [
        SignalDef("sp", SignalType.FLOAT, writable=True), SignalDef("pv", SignalType.INT)])
    yield s
    s.unlink()
    s.close()


def test_commands(seg: Segment) -> None:
    r = handle_command(seg, json.dumps({"op": "set", "signal": "sp", "value": 2,
                                        "id": 7}).encode(), "rep")
    assert r.ok and r.topic == "rep" and json.loads(r.payload)["id"] == 7
    assert seg.read("sp").value == 2.0 and seg.read("sp").quality == Quality.GOOD
    r = handle_command(seg, b'{"op": "set", "signal": "pv", "value": 1}', "rep")
    assert not r.ok and "not writable" in r.reason
    r = handle_command(seg, b'{"op": "get", "signal": "pv", "reply_to": "x/y"}', "rep")
    assert r.ok and r.topic == "x/y"
    r = handle_command(seg, b'{"op": "get", "signal": "pv", "reply_to": "x/#"}', "rep")
    assert r.topic == "rep", "wildcards are not reply topics"
    assert not handle_command(seg, b"[1]", "rep").ok
    assert not handle_command(seg, b'{"op": "set", "signal": "sp"}', "rep").ok
