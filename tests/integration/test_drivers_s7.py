"""S7 driver against python-snap7's own server on 127.0.0.1 (a non-privileged port)."""

from __future__ import annotations

import struct
from functools import partial
from typing import Any

from driver_peers import S7Server, driver_process, wait_until

from petra.config._drivers import S7Config
from petra.shm import Quality, Segment, SignalDef, SignalType, Substatus
from petra.types import ConnState, DriverCounter

# (signal, address, signal type, packed bytes format, first value, written value)
POINTS: list[tuple[str, str, SignalType, str, Any, Any]] = [
    ("db.byte", "DB1.DBB2", SignalType.INT, ">B", 200, 17),
    ("db.word", "DB1.DBW4", SignalType.INT, ">H", 65000, 1234),
    ("db.int", "DB1.DBW6:INT", SignalType.INT, ">h", -30000, 29999),
    ("db.dword", "DB1.DBD8", SignalType.INT, ">I", 4_000_000_000, 7),
    ("db.dint", "DB1.DBD12:DINT", SignalType.INT, ">i", -2_000_000_000, 1_999_999_999),
    ("db.real", "DB1.DBD16:REAL", SignalType.FLOAT, ">f", 3.5, -0.25),
    ("db.lreal", "DB1.DBB20:LREAL", SignalType.FLOAT, ">d", 1e300, -2.5e-300),
    ("m.word", "MW20", SignalType.INT, ">H", 4321, 8765),
    ("q.real", "QD4:REAL", SignalType.FLOAT, ">f", 12.5, 99.75),
    ("i.byte", "IB0", SignalType.INT, ">B", 33, None),
]
BITS = [("db.bit", "DB1.DBX0.3"), ("m.bit", "M10.1"), ("i.bit", "I1.7")]


def area(srv: S7Server, address: str) -> bytearray:
    return {"D": srv.db1, "M": srv.mk, "I": srv.pe, "Q": srv.pa}[address[0]]


def offset(address: str) -> int:
    body = address.split(":", maxsplit=1)[0]
    body = body.split(".")[1][3:] if body.startswith("DB") else body[2:]
    return int(body)


def cfg_for(port: int, points: list[dict[str, Any]], **kw: Any) -> S7Config:
    return S7Config.model_validate({
        "kind": "s7", "name": "cpu1", "host": "127.0.0.1", "port": port, "rack": 0, "slot": 1,
        "poll_period_s": 0.05, "retry": {"initial_delay_s": 0.05, "max_delay_s": 0.2},
        "timeouts": {"connect_s": 2, "request_s": 1}, "points": points, **kw})


def holds(srv: S7Server, address: str, fmt: str, value: Any) -> bool:
    return bool(struct.unpack_from(fmt, area(srv, address), offset(address))[0] == value)


def good(seg: Segment, name: str, value: Any) -> bool:
    s = seg.read(name)
    return s.quality == Quality.GOOD and s.value == value


def test_every_type_round_trips_both_ways(s7_server: S7Server, make_segment: Any) -> None:
    defs = [SignalDef(n, t, writable=True) for n, _, t, _, _, _ in POINTS]
    defs += [SignalDef(n, SignalType.BOOL, writable=True) for n, _ in BITS]
    seg = make_segment(defs)
    points = [{"signal": n, "address": a, "direction": "read" if w is None else "readwrite"}
              for n, a, _, _, _, w in POINTS]
    points += [{"signal": n, "address": a, "direction": "readwrite"} for n, a in BITS]
    for _, a, _, fmt, v, _ in POINTS:
        struct.pack_into(fmt, area(s7_server, a), offset(a), v)
    s7_server.db1[0] = 0b1010_1000  # bit 3 set, neighbours 5 and 7 set
    s7_server.mk[10] = 0b0000_0011
    s7_server.pe[1] = 0b1000_0000
    with driver_process(cfg_for(s7_server.port, points), seg) as drv:
        drv.wait_state(ConnState.UP)
        for n, _, _, _, v, _ in POINTS:
            wait_until(partial(good, seg, n, v), 10, f"read {n}")
        for n, _ in BITS:
            wait_until(partial(good, seg, n, True), 10, f"read {n}")
        for n, _, _, _, _, w in POINTS:
            if w is not None:
                seg.write(n, w)
        seg.write("db.bit", False)
        seg.write("m.bit", False)
        for n, a, _, fmt, _, w in POINTS:
            if w is not None:
                wait_until(partial(holds, s7_server, a, fmt, w), 10, f"write {n}")
        wait_until(lambda: s7_server.db1[0] == 0b1010_0000, 10, "DB bit write keeps neighbours")
        wait_until(lambda: s7_server.mk[10] == 0b0000_0001, 10, "M bit write keeps neighbours")
        assert drv.counter(DriverCounter.WRITE_FAILURES) == 0


def test_server_stop_start_bad_then_recovery(s7_server: S7Server, make_segment: Any) -> None:
    seg = make_segment([SignalDef("r", SignalType.FLOAT)])
    struct.pack_into(">f", s7_server.db1, 40, 1.5)
    cfg = cfg_for(s7_server.port, [{"signal": "r", "address": "DB1.DBD40:REAL"}])
    with driver_process(cfg, seg) as drv:
        drv.wait_state(ConnState.UP)
        wait_until(lambda: good(seg, "r", 1.5), 10, "first read")
        s7_server.stop()
        wait_until(lambda: seg.read("r").quality == Quality.BAD, 10, "bad quality")
        assert seg.read("r").value == 1.5
        assert seg.read("r").substatus == Substatus.NOT_CONNECTED
        struct.pack_into(">f", s7_server.db1, 40, 2.5)
        s7_server.start()
        wait_until(lambda: good(seg, "r", 2.5), 15, "recovery")
        wait_until(lambda: drv.counter(DriverCounter.RECONNECTS) >= 1, 5, "reconnects")


def test_unknown_db_fails_that_point_only(s7_server: S7Server,
                                                   make_segment: Any) -> None:
    seg = make_segment([SignalDef("ok1", SignalType.INT), SignalDef("bad", SignalType.INT),
                        SignalDef("ok2", SignalType.INT)])
    s7_server.db1[250] = 9
    s7_server.db1[255] = 8
    points = [{"signal": "ok1", "address": "DB1.DBB250"},
              {"signal": "bad", "address": "DB2.DBW0"},
              {"signal": "ok2", "address": "DB1.DBB255"}]
    with driver_process(cfg_for(s7_server.port, points), seg) as drv:
        drv.wait_state(ConnState.UP)
        wait_until(lambda: good(seg, "ok1", 9) and good(seg, "ok2", 8), 10, "good points")
        wait_until(lambda: seg.read("bad").quality == Quality.BAD, 10, "bad point")
        drv.wait_state(ConnState.UP)
