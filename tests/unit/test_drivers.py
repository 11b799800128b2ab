"""Pure logic of the field drivers: addresses, codecs, read plans, backoff, config, payloads."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import struct
import tempfile
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import NoReturn

import pytest
from pydantic import ValidationError

from petra.config import ConfigErrors, load_plant_text
from petra.config._drivers import (
    DRIVER_ADAPTER,
    BrokerConfig,
    ModbusPoint,
    ModbusTcpConfig,
    MqttConfig,
    MqttInConfig,
    MqttSubscription,
    S7Config,
    signal_refs,
)
from petra.drivers import S7AddressError, parse_s7_address
from petra.drivers._common import SignalPort, refuse_device_write
from petra.drivers._modbus_codec import CodecError, decode, encode, get_bit, set_bit
from petra.drivers._modbus_plan import PlannedPoint, plan_reads, split_block
from petra.drivers.mqtt_in import MqttInDriver, PayloadError, match_levels, parse_payload
from petra.drivers.s7 import S7Planned, decode_s7, encode_s7, plan_s7
from petra.errors import ConfigError
from petra.io import RATE_LOG_MAX_KEYS, Backoff, IoLimits, MqttLink
from petra.security import AuditLog
from petra.shm import Quality, Segment, SignalDef, SignalType, Substatus
from petra.sinks._mqtt_commands import CommandPolicy, Reply, handle_command
from petra.types import AccessRole, DriverCounter


def _command(seg: Segment, payload: bytes, policy: CommandPolicy | str) -> Reply:
    """``handle_command`` from a sender with the operator role (the '*' role of the
    plain command topic); its audit records go to a throwaway log."""
    if isinstance(policy, str):
        policy = CommandPolicy(policy)
    return handle_command(seg, payload, replace(policy, roles={"*": AccessRole.OPERATOR}),
                          audit=_CMD_AUDIT)


_CMD_AUDIT = AuditLog(Path(tempfile.mkdtemp(prefix="petra-cmd-audit-")) / "audit.log",
                      fsync=False)



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
    ("I\u00b2", 2, "byte number"),  # str.isdigit takes '²'; int() did not
    ("MW" + "9" * 5000, 3, "larger"),  # never int() of a 5000-digit string
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


def test_backoff_cap_holds_with_jitter_so_a_returning_device_is_seen_quickly() -> None:
    b = Backoff(IoLimits(backoff_jitter=0.5), random.Random(3))  # defaults: 0.5 s, cap 1 s
    delays = [b.next_delay() for _ in range(200)]
    assert delays[0] <= 0.75
    assert max(delays) <= 1.0 and min(delays) > 0
    cfg = DRIVER_ADAPTER.validate_python({"kind": "modbus_tcp", "name": "m", "host": "h"})
    assert isinstance(cfg, ModbusTcpConfig) and cfg.on_connect == "write_all"


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
        {"topic": "a/+", "signal": "{1}.x", "signals": ["n.x", "s.x"]},
        {"topic": "b", "signal": "lit"}]})
    assert [(r.signal, r.key_path) for r in signal_refs(m)] == [
        ("n.x", ("subscriptions", 0, "signals", 0)),
        ("s.x", ("subscriptions", 0, "signals", 1)),
        ("lit", ("subscriptions", 1, "signal"))]


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
    (b"{x", "json", SignalType.FLOAT), (b"1_000", "plain", SignalType.INT),
    (b'"12"', "json", SignalType.FLOAT), (b"true", "json", SignalType.INT),
    (b"\xff", "plain", SignalType.INT), (b"0x10", "plain", SignalType.INT),
    (b"\xd9\xa1\xd9\xa2", "plain", SignalType.INT),  # Arabic-Indic digits: int() takes them
    (b"1" + b"0" * 400, "plain", SignalType.FLOAT), (b"1" * 5000, "json", SignalType.FLOAT),
    (b"[" * 100_000, "json", SignalType.FLOAT), (b"{}", "json", SignalType.FLOAT),
    (b"1" * 70_000, "plain", SignalType.FLOAT), (b"1.5e3.2", "plain", SignalType.FLOAT),
])
def test_bad_payloads_are_refused(payload: bytes, fmt: str, typ: SignalType) -> None:
    sub = MqttSubscription(topic="t", signal="s", format=fmt)  # type: ignore[arg-type]
    with pytest.raises(PayloadError) as info:
        parse_payload(payload, sub, typ)
    assert len(str(info.value)) < 200, "a reason quotes only the start of the payload"


@pytest.mark.parametrize(("payload", "fmt", "typ"), [
    (b"inf", "plain", SignalType.FLOAT), (b"-Infinity", "json", SignalType.FLOAT),
    (b"NaN", "json", SignalType.FLOAT), (b"1e400", "json", SignalType.FLOAT),
    (b"99999999999999999999", "plain", SignalType.INT), (b"nan", "plain", SignalType.INT),
])
def test_numbers_the_signal_cannot_hold_come_back_raw(payload: bytes, fmt: str,
                                                      typ: SignalType) -> None:
    """A number is a reading, even one the signal cannot accept: parse_payload returns
    it as it is, and the device-value rule marks it BAD (test_device_value_rule)."""
    sub = MqttSubscription(topic="t", signal="s", format=fmt)  # type: ignore[arg-type]
    v = parse_payload(payload, sub, typ)
    assert isinstance(v, int | float) and not isinstance(v, bool)
    assert not math.isfinite(v) or abs(v) > 2**63


# ----------------------------------------------------------------------------- commands
@pytest.fixture
def seg() -> Iterator[Segment]:
    s = Segment.create(f"u{uuid.uuid4().hex[:10]}", [
        SignalDef("sp", SignalType.FLOAT, writable=True), SignalDef("pv", SignalType.INT)])
    yield s
    s.unlink()
    s.close()


def test_commands(seg: Segment) -> None:
    r = _command(seg, json.dumps({"op": "set", "signal": "sp", "value": 2,
                                        "id": 7}).encode(), "rep")
    assert r.ok and r.topic == "rep" and json.loads(r.payload)["id"] == 7
    assert seg.read("sp").value == 2.0 and seg.read("sp").quality == Quality.GOOD
    r = _command(seg, b'{"op": "set", "signal": "pv", "value": 1}', "rep")
    assert not r.ok and "not writable" in r.reason
    r = _command(seg, b'{"op": "get", "signal": "pv", "reply_to": "rep/me"}', "rep")
    assert r.ok and r.topic == "rep/me"
    r = _command(seg, b'{"op": "get", "signal": "pv", "reply_to": "rep/#"}', "rep")
    assert r.topic == "rep" and not r.ok, "wildcards are not reply topics"
    assert not _command(seg, b"[1]", "rep").ok
    assert not _command(seg, b'{"op": "set", "signal": "sp"}', "rep").ok


# ----------------------------------------------------------------------------- issue 11
# Each numbered problem of issue 11 that lives in the drivers and sinks has a test here
# named after it; the end-to-end half (real broker, real processes, real devices) is in
# tests/integration/test_drivers_{mqtt,modbus,s7}.py, the parsers' fuzzing in tests/fuzz.

@pytest.fixture
def hseg() -> Iterator[Segment]:
    s = Segment.create(f"u{uuid.uuid4().hex[:10]}", [
        SignalDef("f", SignalType.FLOAT, initial=1.0),
        SignalDef("j", SignalType.FLOAT, initial=2.0),
        SignalDef("n", SignalType.INT, initial=3),
        SignalDef("b", SignalType.BOOL),
        SignalDef("sec.a", SignalType.FLOAT, initial=4.0),
        SignalDef("scan.out", SignalType.FLOAT, owner="scan", initial=5.0),
        SignalDef("sp", SignalType.FLOAT, writable=True, minimum=0, maximum=5, initial=1.0),
        SignalDef("free", SignalType.FLOAT, writable=True, allow_nonfinite=True),
        SignalDef("lim", SignalType.FLOAT, minimum=0, maximum=100),
        SignalDef("cnt", SignalType.INT, minimum=0, maximum=1000)])
    yield s
    s.unlink()
    s.close()


def mqtt_in(seg: Segment, subs: list[dict[str, object]]) -> MqttInDriver:
    """A driver that is never connected, on a frozen clock (so the log limiter's
    interval never ends during a test)."""
    cfg = MqttInConfig.model_validate({"kind": "mqtt", "name": "mqin",
                                       "broker": {"port": 1883}, "subscriptions": subs})
    return MqttInDriver(cfg, seg, clock=lambda: 1000.0)


HOSTILE_SUBS: list[dict[str, object]] = [
    {"topic": "p/f", "signal": "f"}, {"topic": "p/j", "signal": "j", "format": "json"},
    {"topic": "p/n", "signal": "n"}, {"topic": "p/b", "signal": "b", "format": "json"},
    {"topic": "sec/#", "signal": "{1}", "signals": ["sec.a"]}]
HOSTILE: list[tuple[int, str, bytes]] = [  # issue 11 item 1, and relatives
    (0, "p/f", b"1" + b"0" * 400), (1, "p/j", b"1" * 5000), (1, "p/j", b"[" * 100_000),
    (1, "p/j", b'{"value": ' + b"9" * 5000 + b"}"), (1, "p/j", b'{"value": "1e400"}'),
    (1, "p/j", b"{" * 60_000), (2, "p/n", b"1e999999999999999999999999999999999999999"),
    (2, "p/n", b"1.5"), (3, "p/b", b"2"), (0, "p/f", b"\xff\xfe"), (0, "p/f", b"x" * 1_000_000),
    (4, "sec/scan.out", b"999"), (4, "sec/../scan.out", b"999"), (4, "sec/" + "a/" * 500, b"1"),
    (1, "p/j", b'{"value": [' + b"1," * 30_000 + b"1]}")]


def test_issue11_1_hostile_payloads_are_refused_counted_never_written(
        hseg: Segment, caplog: pytest.LogCaptureFixture) -> None:
    drv = mqtt_in(hseg, HOSTILE_SUBS)
    before = {n: hseg.read(n) for n in hseg.names}
    with caplog.at_level(logging.WARNING, logger="petra.drivers.mqin"):
        for i, topic, payload in HOSTILE:
            assert drv.on_payload(i, topic, payload) is False, (topic, payload[:20])
    assert drv.tm[DriverCounter.REJECTED] == len(HOSTILE), "every refusal is counted"
    assert {n: hseg.read(n) for n in hseg.names} == before, "nothing was written"
    assert len(caplog.records) <= len(HOSTILE_SUBS), "one line per subscription per interval"
    assert all(len(r.getMessage()) < 600 for r in caplog.records), "log lines stay short"
    assert drv.on_payload(0, "p/f", b"21.5") and hseg.read("f").value == 21.5
    assert drv.on_payload(4, "sec/sec.a", b"7") and hseg.read("sec.a").value == 7.0


def test_issue11_1_a_topic_flood_keeps_the_log_and_its_table_bounded(
        hseg: Segment, caplog: pytest.LogCaptureFixture) -> None:
    drv = mqtt_in(hseg, HOSTILE_SUBS)
    with caplog.at_level(logging.WARNING, logger="petra.drivers.mqin"):
        for k in range(20_000):
            drv.on_payload(4, f"sec/t{k}", b"1")
    assert drv.tm[DriverCounter.REJECTED] == 20_000
    assert len(caplog.records) == 1
    assert len(drv.rlog._last) <= RATE_LOG_MAX_KEYS


def test_issue11_1_the_link_guard_keeps_every_failure_out_of_paho() -> None:
    """What the numbered attacks would reach if a parser still failed: MqttLink's guard
    catches it (also when the owner's error hook fails too), and an exception from
    paho's own packet handling drops the connection instead of re-reading the packet."""
    seen: list[BaseException] = []

    def boom(*_: object) -> None:
        raise RecursionError("maximum recursion depth exceeded")

    async def run() -> None:
        link = MqttLink(BrokerConfig(), "t", on_error=seen.append)
        link._guard(boom)(None, None, None)
        assert isinstance(seen[0], RecursionError)

        def hook_fails(exc: BaseException) -> None:
            raise ValueError("accounting broke")
        bad = MqttLink(BrokerConfig(), "u", on_error=hook_fails)
        bad._guard(boom)(None, None, None)  # nothing escapes
        reads: list[int] = []

        def broken_read(_n: int = 1) -> NoReturn:
            reads.append(1)
            raise OverflowError("int too large to convert to float")
        # a stand-in for paho failing inside its own packet handling
        link.client.loop_read = broken_read  # type: ignore[method-assign,assignment]
        link._readable()
        assert link.lost.is_set() and reads == [1], "dropped once, not re-read"
        await link.close()
        await bad.close()

    asyncio.run(run())


def test_issue11_1_hostile_commands_get_a_refusal_and_write_nothing(hseg: Segment) -> None:
    before = hseg.read("sp")
    bad = [b"[" * 100_000, b'{"op": "set", "signal": "sp", "value": ' + b"1" * 5000 + b"}",
           b'{"op": "set", "signal": "sp", "value": 1' + b"0" * 400 + b"}",
           b'{"op": "set", "signal": "sp", "value": 2, "id": ' + b"7" * 5000 + b"}",
           b'{"op": "set", "signal": "sp", "value": 2, "id": "' + b"x" * 5000 + b'"}',
           b'{"op": "set", "signal": "sp", "value": 2, "id": [1]}',
           b'{"op": "set", "signal": "sp", "value": {"a": ' * 40 + b"1" + b"}" * 40,
           b'{"op": ' + b'"x' * 10_000 + b'"}', b"\xff" * 100, b"", b"null", b"1e400",
           b'{"op": "set", "signal": "' + b"s" * 10_000 + b'", "value": 1}',
           json.dumps({"op": "set", "signal": "sp", "value": "x" * 10_000}).encode()]
    for payload in bad:
        r = _command(hseg, payload, "rep")
        assert not r.ok and r.topic == "rep", payload[:40]
        assert len(r.payload) < 600, "a refusal quotes only the start of what was sent"
    assert hseg.read("sp") == before


# -- item 2: commands write NaN, inf and out-of-range values; so did device writes
@pytest.mark.parametrize("value", [b"NaN", b"Infinity", b"-Infinity", b"1e400",
                                   b"1" + b"0" * 39, b"1e9", b"5.000001", b"-0.5", b"true",
                                   b'"3"', b"null", b"[1]"])
def test_issue11_2_a_set_outside_the_signal_is_refused(hseg: Segment, value: bytes) -> None:
    before = hseg.read("sp")
    r = _command(hseg, b'{"op": "set", "signal": "sp", "value": ' + value + b"}", "rep")
    assert not r.ok and json.loads(r.payload)["ok"] is False
    assert hseg.read("sp") == before, "nothing written"


def test_issue11_2_limits_named_and_nonfinite_where_allowed(hseg: Segment) -> None:
    r = _command(hseg, b'{"op": "set", "signal": "sp", "value": 1e9}', "rep")
    assert "[0, 5]" in r.reason and "sp" in r.reason
    r = _command(hseg, b'{"op": "set", "signal": "sp", "value": 5}', "rep")
    assert r.ok and hseg.read("sp").value == 5.0
    r = _command(hseg, b'{"op": "set", "signal": "free", "value": NaN}', "rep")
    assert r.ok and math.isnan(hseg.get("free")), "a signal that allows NaN takes it"


def test_issue11_2_device_writes_refuse_nonfinite_and_out_of_limits(hseg: Segment) -> None:
    for typ in ("float32", "float64", "int16", "uint64"):
        for bad in (math.nan, math.inf, -math.inf):
            with pytest.raises(CodecError):
                encode(bad, typ)
    with pytest.raises(CodecError, match="float32"):
        encode(1e300, "float32")  # would round to inf
    assert len(encode(math.nan, "float32", allow_nonfinite=True)) == 2
    real, lreal = parse_s7_address("DB1.DBD0:REAL"), parse_s7_address("DB1.DBB0:LREAL")
    for bad in (math.nan, math.inf, 1e300, 10**400):
        with pytest.raises(ValueError):
            encode_s7(bad, real)
    with pytest.raises(ValueError):
        encode_s7(math.inf, lreal)
    assert math.isnan(decode_s7(encode_s7(math.nan, real, allow_nonfinite=True), 0, real))
    info = {i.name: i for i in hseg.signals}
    assert refuse_device_write(info["lim"], math.nan) is not None
    assert refuse_device_write(info["lim"], 100.5) is not None
    assert refuse_device_write(info["lim"], 100.0) is None
    assert refuse_device_write(info["free"], math.inf) is None
    assert refuse_device_write(info["b"], True) is None


# -- item 3: authorisation was only the writable flag
def test_issue11_3_a_template_writes_only_its_allow_list(hseg: Segment) -> None:
    drv = mqtt_in(hseg, [{"topic": "sec/+", "signal": "{1}", "signals": ["sec.a"]}])
    assert not drv.on_payload(0, "sec/scan.out", b"999")
    assert not drv.on_payload(0, "sec/sp", b"1")
    assert hseg.get("scan.out") == 5.0 and hseg.get("sp") == 1.0
    assert drv.on_payload(0, "sec/sec.a", b"8") and hseg.get("sec.a") == 8.0


def test_issue11_3_templates_need_an_allow_list_and_whole_wildcard_fields() -> None:
    for bad, words in [({"topic": "sec/#", "signal": "{1}"}, "needs signals"),
                       ({"topic": "s/+", "signal": "{1}.x", "signals": ["a.y"]}, "never"),
                       ({"topic": "s/+", "signal": "{2}", "signals": ["a"]}, "1 wildcard"),
                       ({"topic": "s/+", "signal": "{1.__class__}", "signals": ["a"]},
                        "wildcard number"),
                       ({"topic": "s", "signal": "x", "signals": ["x"]}, "needs none")]:
        with pytest.raises(ValidationError, match=words):
            MqttSubscription.model_validate(bad)


def test_issue11_3_petra_check_refuses_a_template_reaching_a_foreign_signal() -> None:
    plant = textwrap.dedent("""\
        instance: t
        signals:
          - {name: a.level, type: float}
          - {name: b.level, type: float}
          - {name: c.level, type: float}
          - {name: src, type: float}
        blocks:
          - {name: m, type: MOVE, inputs: {in: src}, outputs: {out: b.level}}
        drivers:
          - kind: modbus_tcp
            name: plc
            host: 127.0.0.1
            points: [{signal: c.level, table: holding, address: 0, type: float32}]
          - kind: mqtt
            name: mq
            broker: {port: 1883}
            subscriptions:
              - {topic: "s/+/level", signal: "{1}.level",
                 signals: [a.level, b.level, c.level, x.level]}
        """)
    with pytest.raises(ConfigErrors) as info:
        load_plant_text(plant, "p.yaml")
    text = "\n".join(e.format() for e in info.value.errors)
    assert "b.level" in text and "two writers" in text, text
    assert "c.level" in text, text
    assert "x.level" in text, text
    paths = {e.key_path for e in info.value.errors}
    assert paths == {f"drivers[1].subscriptions[0].signals[{j}]" for j in (1, 2, 3)}, paths
    ok = plant.replace("signals: [a.level, b.level, c.level, x.level]", "signals: [a.level]")
    assert load_plant_text(ok, "p.yaml").config.drivers[1].name == "mq"


def test_issue11_3_a_signal_owned_by_another_process_is_refused_at_start(
        hseg: Segment) -> None:
    with pytest.raises(ConfigError, match="belongs to 'scan'"):
        mqtt_in(hseg, [{"topic": "x", "signal": "scan.out"}])


def test_issue11_3_reply_to_is_kept_under_the_reply_prefix(hseg: Segment) -> None:
    pol = CommandPolicy("petra/i/cmd/reply")
    for where in ["victim/topic", "petra/i/cmd", "petra/i/cmd/replyx", "petra/i/cmd/reply/+",
                  "petra/i/cmd/reply/#", "", "x" * 5000, 7]:
        req = {"op": "get", "signal": "f", "reply_to": where}
        r = _command(hseg, json.dumps(req).encode(), pol)
        assert r.topic == "petra/i/cmd/reply" and not r.ok, where
    r = _command(hseg, b'{"op": "get", "signal": "f", "reply_to": "petra/i/cmd/reply/c7"}',
                       pol)
    assert r.ok and r.topic == "petra/i/cmd/reply/c7"
    wide = CommandPolicy("petra/i/cmd/reply", "clients")
    r = _command(hseg, b'{"op": "get", "signal": "f", "reply_to": "clients/7/r"}', wide)
    assert r.ok and r.topic == "clients/7/r"
    with pytest.raises(ValidationError, match="a reply would be a command"):
        MqttConfig.model_validate({"commands": {"reply_prefix": "{prefix}"}})
    with pytest.raises(ValidationError, match="wildcards"):
        MqttConfig.model_validate({"commands": {"reply_prefix": "{prefix}/+"}})


def test_issue11_3_get_all_is_a_permission(hseg: Segment) -> None:
    r = _command(hseg, b'{"op": "get_all"}', "rep")
    assert not r.ok and "not allowed" in r.reason and b"scan.out" not in r.payload
    r = _command(hseg, b'{"op": "get_all"}', CommandPolicy("rep", allow_get_all=True))
    assert r.ok and set(json.loads(r.payload)["signals"]) == set(hseg.names)


# -- item 4: one bad device value dropped the connection; NaN was stored GOOD
@pytest.mark.parametrize(("name", "raw", "stored"), [
    ("n", 2**64 - 1, 3),  # a uint64 beyond int64: BAD, last value kept
    ("n", math.inf, 3), ("n", math.nan, 3),
    ("f", math.nan, math.nan), ("f", math.inf, math.inf), ("f", 10**400, math.inf),
    ("lim", 100.5, 100.5), ("lim", -1, -1.0), ("cnt", 1001, 1001), ("b", math.nan, False),
])
def test_issue11_4_device_values_the_signal_cannot_take_are_bad(
        hseg: Segment, name: str, raw: float, stored: float) -> None:
    port = SignalPort(hseg)
    i = hseg.index(name)
    assert port.put(i, raw) is not None
    s = hseg.read(name)
    assert s.quality == Quality.BAD and s.substatus == Substatus.OUT_OF_RANGE
    assert s.value == stored or (math.isnan(stored) and math.isnan(s.value))
    assert port.put(i, 7) is None, "a good value makes it GOOD again"
    assert hseg.read(name).quality == Quality.GOOD


def test_issue11_4_device_values_within_the_signal_are_good(hseg: Segment) -> None:
    port = SignalPort(hseg)
    for name, raw, want in [("lim", 100, 100.0), ("lim", 0.0, 0.0), ("n", 2**63 - 1, 2**63 - 1),
                            ("n", 2.6, 3), ("free", math.nan, math.nan), ("b", 1, True)]:
        assert port.put(hseg.index(name), raw) is None, (name, raw)
        s = hseg.read(name)
        assert s.quality == Quality.GOOD
        assert s.value == want or (math.isnan(want) and math.isnan(s.value))


def test_issue11_4_decoding_a_device_value_judges_nothing() -> None:
    """The codec decodes what the registers hold (the driver judges it): a uint64 of
    all ones and a float32 NaN are valid decodes, never an exception that would take
    the connection down."""
    assert decode([0xFFFF] * 4, "uint64") == 2**64 - 1
    assert math.isnan(decode([0x7FC0, 0], "float32"))
    assert decode([0x7F80, 0], "float32") == math.inf
