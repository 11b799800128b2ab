"""Modbus driver against a real pymodbus server (TCP on 127.0.0.1, RTU over a socat pty)."""

from __future__ import annotations

import struct
from functools import partial
from typing import Any

import pytest
from driver_peers import ModbusServer, PtyPair, driver_process, wait_until

from petra.config._drivers import ModbusPoint, ModbusRtuConfig, ModbusTcpConfig
from petra.shm import Quality, Segment, SignalDef, SignalType, Substatus
from petra.types import ConnState, DriverCounter

FC_COIL, FC_DI, FC_HR, FC_IR = 1, 2, 3, 4
FMT = {"int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "int64": "q", "uint64": "Q",
       "float32": "f", "float64": "d"}
SAMPLES: dict[str, int | float] = {
    "int16": -12345, "uint16": 54321, "int32": -123456789, "uint32": 3_000_000_000,
    "int64": -(2**62) - 12345, "uint64": 2**62 + 6789, "float32": 1234.5,
    "float64": -9876.54321}
ORDERS = ("ABCD", "CDAB", "BADC", "DCBA")


def wire_registers(value: int | float, typ: str, order: str) -> list[int]:
    """Independent of the driver's codec: pack big-endian, then reorder as named."""
    raw = struct.pack(">" + FMT[typ], value)
    words = [raw[i:i + 2] for i in range(0, len(raw), 2)]
    if order in ("CDAB", "DCBA"):
        words.reverse()
    if order in ("BADC", "DCBA"):
        words = [w[::-1] for w in words]
    return [int.from_bytes(w, "big") for w in words]


def sig_type(typ: str) -> SignalType:
    return SignalType.FLOAT if typ.startswith("float") else SignalType.INT


def typed_points() -> tuple[list[SignalDef], list[ModbusPoint], dict[str, tuple[int, str, str]]]:
    defs: list[SignalDef] = []
    points: list[ModbusPoint] = []
    where: dict[str, tuple[int, str, str]] = {}
    addr = 0
    for typ in SAMPLES:
        for order in ORDERS:
            name = f"hr.{typ}.{order}"
            defs.append(SignalDef(name, sig_type(typ), writable=True))
            points.append(ModbusPoint.model_validate(
                {"signal": name, "table": "holding", "address": addr, "type": typ,
                 "order": order, "direction": "readwrite"}))
            where[name] = (addr, typ, order)
            addr += 4
    return defs, points, where


def tcp_cfg(port: int, points: list[ModbusPoint], **kw: Any) -> ModbusTcpConfig:
    base: dict[str, Any] = {"kind": "modbus_tcp", "name": "plc1", "host": "127.0.0.1",
                            "port": port, "poll_period_s": 0.05,
                            "retry": {"initial_delay_s": 0.05, "max_delay_s": 0.2},
                            "timeouts": {"connect_s": 1, "request_s": 0.5}}
    base.update(kw)
    return ModbusTcpConfig.model_validate({**base, "points": [p.model_dump() for p in points]})


def regs_are(server: ModbusServer, unit: int, addr: int, want: list[int]) -> bool:
    return server.get(unit, FC_HR, addr, len(want)) == want


def good_value(seg: Segment, name: str, expected: Any) -> bool:
    s = seg.read(name)
    if s.quality != Quality.GOOD:
        return False
    if isinstance(expected, float):
        return abs(float(s.value) - expected) <= abs(expected) * 1e-6
    return bool(s.value == expected)


def test_every_type_and_byte_order_round_trips_tcp(
        modbus_server: ModbusServer, make_segment: Any) -> None:
    defs, points, where = typed_points()
    extra = [
        (SignalDef("coil.a", SignalType.BOOL, writable=True),
         ModbusPoint(signal="coil.a", table="coil", address=10, direction="readwrite")),
        (SignalDef("di.a", SignalType.BOOL),
         ModbusPoint(signal="di.a", table="discrete_input", address=3)),
        (SignalDef("ir.scaled", SignalType.FLOAT),
         ModbusPoint(signal="ir.scaled", table="input", address=7, type="int16", scale=0.1,
                     offset=-5.0)),
        (SignalDef("hr.bit5", SignalType.BOOL, writable=True),
         ModbusPoint(signal="hr.bit5", table="holding", address=150, type="bool", bit=5,
                     direction="readwrite")),
        (SignalDef("u2.reg", SignalType.INT, writable=True),
         ModbusPoint(signal="u2.reg", table="holding", address=4, unit_id=2,
                     direction="readwrite")),
    ]
    defs += [d for d, _ in extra]
    points += [p for _, p in extra]
    seg = make_segment(defs)
    for addr, typ, order in where.values():
        modbus_server.set(1, FC_HR, addr, wire_registers(SAMPLES[typ], typ, order))
    modbus_server.set(1, FC_COIL, 10, [True])
    modbus_server.set(1, FC_DI, 3, [True])
    modbus_server.set(1, FC_IR, 7, [struct.unpack(">H", struct.pack(">h", -250))[0]])
    modbus_server.set(1, FC_HR, 150, [0b1000_0000_0010_0001])
    modbus_server.set(2, FC_HR, 4, [777])

    with driver_process(tcp_cfg(modbus_server.port, points), seg) as drv:
        drv.wait_state(ConnState.UP)
        # device -> signal, every type and order
        for name, (_, typ, _) in where.items():
            wait_until(partial(good_value, seg, name, SAMPLES[typ]), 10, f"read {name}")
        wait_until(lambda: good_value(seg, "coil.a", True), 5, "coil")
        wait_until(lambda: good_value(seg, "di.a", True), 5, "discrete input")
        wait_until(lambda: good_value(seg, "ir.scaled", -30.0), 5, "scaled input register")
        wait_until(lambda: good_value(seg, "hr.bit5", True), 5, "bit in register")
        wait_until(lambda: good_value(seg, "u2.reg", 777), 5, "unit 2")
        wait_until(lambda: drv.counter(DriverCounter.READS) > 0, 5, "reads counted")

        # signal -> device, every type and order (new values)
        new: dict[str, int | float] = {}
        for name, (_, typ, _) in where.items():
            v = SAMPLES[typ]
            new[name] = v / 2 if isinstance(v, float) else v // 3
            seg.write(name, new[name])
        seg.write("coil.a", False)
        seg.write("hr.bit5", False)
        seg.write("u2.reg", 4242)
        for name, (addr, typ, order) in where.items():
            want = wire_registers(new[name], typ, order)
            wait_until(partial(regs_are, modbus_server, 1, addr, want), 10, f"write {name}")
        wait_until(lambda: modbus_server.get(1, FC_COIL, 10) == [False], 5, "coil write")
        # bit write keeps the neighbouring bits
        wait_until(lambda: modbus_server.get(1, FC_HR, 150) == [0b1000_0000_0000_0001], 5,
                   "bit write")
        wait_until(lambda: modbus_server.get(2, FC_HR, 4) == [4242], 5, "unit 2 write")
        wait_until(lambda: drv.counter(DriverCounter.WRITES) >= len(where) + 3, 5,
                   "writes counted")
        assert drv.counter(DriverCounter.WRITE_FAILURES) == 0


def test_server_stop_gives_bad_quality_then_recovery(
        modbus_server: ModbusServer, make_segment: Any) -> None:
    seg = make_segment([SignalDef("a", SignalType.INT), SignalDef("b", SignalType.INT)])
    modbus_server.set(1, FC_HR, 0, [11, 22])
    points = [ModbusPoint(signal="a", table="holding", address=0),
              ModbusPoint(signal="b", table="holding", address=1)]
    with driver_process(tcp_cfg(modbus_server.port, points), seg) as drv:
        drv.wait_state(ConnState.UP)
        wait_until(lambda: good_value(seg, "b", 22), 10, "first read")
        modbus_server.stop()
        wait_until(lambda: seg.read("a").quality == Quality.BAD, 10, "bad quality")
        s = seg.read("a")
        assert s.value == 11, "the last value is kept while the device is away"
        assert s.substatus == Substatus.NOT_CONNECTED
        wait_until(lambda: drv.counter(DriverCounter.STATE) in (ConnState.BACKOFF,
                                                                ConnState.CONNECTING), 10,
                   "backoff state")
        modbus_server.start()
        modbus_server.set(1, FC_HR, 0, [33, 44])
        wait_until(lambda: good_value(seg, "a", 33) and good_value(seg, "b", 44), 15,
                   "recovery")
        drv.wait_state(ConnState.UP)
        wait_until(lambda: drv.counter(DriverCounter.RECONNECTS) >= 1, 5, "reconnect counted")


def test_illegal_address_fails_that_point_only(
        modbus_server: ModbusServer, make_segment: Any) -> None:
    names = ["p0", "p1", "bad", "p3"]
    seg = make_segment([SignalDef(n, SignalType.INT) for n in names])
    modbus_server.set(2, FC_HR, 40, [1, 2])
    modbus_server.set(2, FC_HR, 48, [4])
    # unit 2 has 50 registers: address 50 is illegal, and coalescing puts it in one block
    points = [ModbusPoint(signal="p0", table="holding", address=40, unit_id=2),
              ModbusPoint(signal="p1", table="holding", address=41, unit_id=2),
              ModbusPoint(signal="bad", table="holding", address=50, unit_id=2),
              ModbusPoint(signal="p3", table="holding", address=48, unit_id=2)]
    with driver_process(tcp_cfg(modbus_server.port, points, max_gap=20), seg) as drv:
        drv.wait_state(ConnState.UP)
        wait_until(lambda: all(good_value(seg, n, v) for n, v in
                               (("p0", 1), ("p1", 2), ("p3", 4))), 10, "good points")
        wait_until(lambda: seg.read("bad").quality == Quality.BAD, 10, "bad point")
        assert seg.read("bad").substatus == Substatus.CONFIG
        drv.wait_state(ConnState.UP)
        # later polls keep the good points fresh
        modbus_server.set(2, FC_HR, 40, [100])
        wait_until(lambda: good_value(seg, "p0", 100), 10, "later poll")
        assert seg.read("bad").quality == Quality.BAD


@pytest.mark.parametrize("coalesce", [True, False])
def test_coalescing_on_and_off_read_the_same(
        modbus_server: ModbusServer, make_segment: Any, coalesce: bool) -> None:
    n = 60
    seg = make_segment([SignalDef(f"r{i}", SignalType.INT) for i in range(n)])
    modbus_server.set(1, FC_HR, 0, [i * 3 for i in range(n)])
    points = [ModbusPoint(signal=f"r{i}", table="holding", address=i) for i in range(n)]
    with driver_process(tcp_cfg(modbus_server.port, points, coalesce=coalesce), seg) as drv:
        wait_until(lambda: all(good_value(seg, f"r{i}", i * 3) for i in range(n)), 10, "all")
        assert drv.counter(DriverCounter.REJECTED) == 0


def test_rtu_over_pty_round_trips(pty_pair: PtyPair, make_segment: Any) -> None:
    server = ModbusServer({1: 100, 3: 100}, serial=pty_pair.a)
    server.start()
    try:
        typs = ("int16", "uint32", "float32", "float64")
        defs = [SignalDef(f"rtu.{t}", sig_type(t), writable=True) for t in typs]
        defs.append(SignalDef("rtu.coil", SignalType.BOOL, writable=True))
        seg = make_segment(defs)
        points = [ModbusPoint.model_validate(
            {"signal": f"rtu.{t}", "table": "holding", "address": 10 * i, "type": t,
             "order": ORDERS[i], "unit_id": 3, "direction": "readwrite"})
            for i, t in enumerate(typs)]
        points.append(ModbusPoint(signal="rtu.coil", table="coil", address=5,
                                  direction="readwrite"))
        for i, t in enumerate(typs):
            server.set(3, FC_HR, 10 * i, wire_registers(SAMPLES[t], t, ORDERS[i]))
        cfg = ModbusRtuConfig.model_validate({
            "kind": "modbus_rtu", "name": "rtu1", "device": pty_pair.b, "baudrate": 115200,
            "poll_period_s": 0.05, "retry": {"initial_delay_s": 0.05, "max_delay_s": 0.2},
            "timeouts": {"request_s": 0.5}, "points": [p.model_dump() for p in points]})
        with driver_process(cfg, seg) as drv:
            drv.wait_state(ConnState.UP)
            for t in typs:
                wait_until(partial(good_value, seg, f"rtu.{t}", SAMPLES[t]), 10, f"rtu {t}")
            seg.write("rtu.float32", 0.5)
            seg.write("rtu.coil", True)
            want = wire_registers(0.5, "float32", ORDERS[2])
            wait_until(lambda: server.get(3, FC_HR, 20, 2) == want, 10, "rtu write")
            wait_until(lambda: server.get(1, FC_COIL, 5) == [True], 10, "rtu coil write")
    finally:
        server.close()
