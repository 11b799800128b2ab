"""Issue 10 end to end through ``petra run``: restarts and reconnects lose nothing.

Each test runs a real supervisor against real peers (pymodbus server, Mosquitto) and
kills or restarts one of them: a command written while its driver is dead reaches the
device; a device that comes back with zeroed outputs gets them all back."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from driver_peers import Collector, ModbusServer, Mosquitto, S7Server, wait_until
from test_run_e2e import Running, start, stop

from petra.shm import Segment, read_heartbeats

# One plant per device kind: the same signals and latch, one driver of that kind.
_SIGNALS_AND_LATCH = """\
instance: {instance}
scan: {{period: 10ms, policy: other, wait: sleep}}
signals:
  - {{name: cmd, type: float, writable: true}}
  - {{name: pump, type: bool, writable: true}}
  - {{name: level, type: float}}
  - {{name: l.s, type: bool, writable: true}}
  - {{name: l.r, type: bool, writable: true}}
  - {{name: l.q, type: bool}}
blocks:
  - {{name: latch, type: RS, inputs: {{s: l.s, r1: l.r}}, outputs: {{q1: l.q}}}}
"""


def _device_plant(kind: str, name: str, points: str) -> str:
    """The plant text (to ``.format(instance=, port=)``) with one ``kind`` driver."""
    return _SIGNALS_AND_LATCH + (
        f"drivers:\n  - kind: {kind}\n    name: {name}\n    host: 127.0.0.1\n"
        "    port: {port}\n    poll_period_s: 0.1\n"
        "    timeouts: {{connect_s: 1, request_s: 0.5}}\n    points:\n" + points)


PLANT = _device_plant("modbus_tcp", "plc", """\
      - {{signal: level, table: holding, address: 10}}
      - {{signal: cmd, table: holding, address: 0, direction: write}}
      - {{signal: pump, table: coil, address: 0, direction: write}}
""")

HOLDING, COIL = 3, 1


def driver_pid(r: Running, name: str = "driver:plc") -> int:
    with Segment.attach(r.instance, readonly=True) as seg:
        for hb in read_heartbeats(seg):
            if hb.role == name and hb.counters[0] == 2:  # ConnState.UP
                return hb.pid
    return 0


@pytest.fixture
def plant(tmp_path: Path) -> Iterator[tuple[Running, ModbusServer]]:
    srv = ModbusServer({1: 50})
    port = srv.start()
    path = tmp_path / "plant.yaml"
    inst = f"ll{os.getpid()}"
    path.write_text(PLANT.format(instance=inst, port=port))
    r = start(tmp_path, inst, path)
    try:
        yield r, srv
    finally:
        stop(r)
        srv.close()


def test_command_written_while_the_driver_is_dead_reaches_the_device(
        plant: tuple[Running, ModbusServer]) -> None:
    r, srv = plant
    old = wait_until(lambda: driver_pid(r), timeout=20, what="the driver to connect")
    with Segment.attach(r.instance) as seg:
        seg.write("cmd", 12.5)
        wait_until(lambda: srv.get(1, HOLDING, 0) == [12], what="the first command")
        for n, value in enumerate((42.0, 43.0, 44.0)):
            os.kill(old, signal.SIGKILL)
            wait_until(lambda old=old: not driver_pid(r) or driver_pid(r) != old,  # type: ignore[misc]
                       what="the driver to be gone")
            seg.write("cmd", value)          # while no driver runs
            seg.write("pump", n % 2 == 0)
            old = wait_until(lambda old=old: (p := driver_pid(r)) and p != old and p,  # type: ignore[misc]
                             timeout=30, what="the restarted driver")
            wait_until(lambda v=value: srv.get(1, HOLDING, 0) == [int(v)],  # type: ignore[misc]
                       what=f"command {value} to reach the device")
            wait_until(lambda n=n: srv.get(1, COIL, 0) == [n % 2 == 0],  # type: ignore[misc]
                       what="the pump command to reach the device")


def test_device_restarted_with_zeroed_outputs_gets_them_back(
        plant: tuple[Running, ModbusServer]) -> None:
    r, srv = plant
    wait_until(lambda: driver_pid(r), timeout=20, what="the driver to connect")
    with Segment.attach(r.instance) as seg:
        seg.write("cmd", 7.0)
        seg.write("pump", True)
        wait_until(lambda: srv.get(1, HOLDING, 0) == [7] and srv.get(1, COIL, 0) == [True],
                   what="the outputs")
        srv.stop()
        wait_until(lambda: seg.read("level").quality.name == "BAD", what="the outage")
        time.sleep(5)  # a long outage: the backoff must not have grown past its cap
        srv.start()  # a rebooted device: every output back at zero
        t0 = time.monotonic()
        assert srv.get(1, HOLDING, 0) == [0]
        t_up = t_back = 0.0  # when the driver reports UP; when both outputs are back
        while not t_back and time.monotonic() - t0 < 10:
            if not t_up and driver_pid(r):
                t_up = time.monotonic()
            if srv.get(1, HOLDING, 0) == [7] and srv.get(1, COIL, 0) == [True]:
                t_back = time.monotonic()
            time.sleep(0.002)
        assert t_back, "outputs never re-asserted"
        took = t_back - t0
        after_up = t_back - (t_up or t_back)
    print(f"modbus outputs re-asserted {took:.3f} s after the device returned, "
          f"{after_up:.3f} s after the driver reconnected")
    # Correctness: the reconnect itself re-asserts them (nothing changed since, so a
    # write-on-change driver never would). The figure (well under 1 s here) is printed
    # above; the ceilings only catch a re-assertion left to some later event, and stay
    # clear of a loaded CI box's scheduling delays.
    assert took < 6.0, f"outputs back {took:.2f} s after the device returned"
    assert after_up < 4.0, f"outputs back {after_up:.2f} s after reconnecting"


# ----------------------------------------------------------------------------- MQTT
MQTT_PLANT = """\
instance: {instance}
scan: {{period: 10ms, policy: other, wait: sleep}}
signals:
  - {{name: level, type: float}}
  - {{name: sp, type: float, writable: true}}
  - {{name: sp_in, type: float}}
  - {{name: l.s, type: bool, writable: true}}
  - {{name: l.r, type: bool, writable: true}}
  - {{name: l.q, type: bool}}
blocks:
  - {{name: latch, type: RS, inputs: {{s: l.s, r1: l.r}}, outputs: {{q1: l.q}}}}
drivers:
  - kind: modbus_tcp
    name: plc
    host: 127.0.0.1
    port: {mb_port}
    poll_period_s: 0.05
    points:
      - {{signal: level, table: holding, address: 10}}
  - kind: mqtt
    name: min
    subscriptions:
      - {{topic: "cmd/sp", signal: sp_in, qos: 1}}
mqtt:
  broker: {{host: 127.0.0.1, port: {port}}}
  topic_prefix: "p"
  publish:
    - {{signals: [level, sp], qos: 1}}
"""


def role_pid(r: Running, role: str, up: bool = True) -> int:
    with Segment.attach(r.instance, readonly=True) as seg:
        for hb in read_heartbeats(seg):
            if hb.role == role and (not up or hb.counters[0] == 2):
                return hb.pid
    return 0


@pytest.fixture
def mqtt_plant(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[tuple[Running, ModbusServer]]:
    srv = ModbusServer({1: 50})
    mb_port = srv.start()
    path = tmp_path / "plant.yaml"
    inst = f"lm{os.getpid()}"
    path.write_text(MQTT_PLANT.format(instance=inst, mb_port=mb_port, port=mosquitto.port))
    r = start(tmp_path, inst, path)
    try:
        yield r, srv
    finally:
        stop(r)
        srv.close()


def values(col: Collector, topic: str) -> list[tuple[float, str, str]]:
    out = []
    for p in col.on_topic(topic):
        m = json.loads(p)
        out.append((m["value"], m["quality"], m["substatus"]))
    return out


def test_mqtt_out_publishes_changes_once_and_what_changed_while_it_restarted(
        mqtt_plant: tuple[Running, ModbusServer], mosquitto: Mosquitto) -> None:
    r, srv = mqtt_plant
    col = Collector(mosquitto.client(), "p/#")
    wait_until(lambda: role_pid(r, "sink:mqtt-out") and role_pid(r, "driver:plc"),
               timeout=20, what="the sink and the driver")
    wait_until(lambda: values(col, "p/level"), what="the level's first message")
    changes = [1, 2, 3, 4, 5, 5, 6]
    for v in changes:  # each value is polled ~6 times: 6 journal entries, one change
        srv.set(1, HOLDING, 10, [v])
        time.sleep(0.3)
    wait_until(lambda: values(col, "p/level")[-1:] == [(6.0, "GOOD", "NONE")],
               what="the last change")
    got = values(col, "p/level")
    assert [v for v, _, _ in got][-6:] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], got
    assert all(a != b for a, b in itertools.pairwise(got)), f"a repeat: {got}"
    assert len(got) <= 7, got  # the start value (or its snapshot) + 6 changes

    # a change written while the sink is dead is published by the restarted sink
    old = role_pid(r, "sink:mqtt-out")
    os.kill(old, signal.SIGKILL)
    with Segment.attach(r.instance) as seg:
        seg.write("sp", 3.5)
    wait_until(lambda: (p := role_pid(r, "sink:mqtt-out")) and p != old, timeout=30,
               what="the restarted sink")
    wait_until(lambda: values(col, "p/sp")[-1:] == [(3.5, "GOOD", "NONE")],
               what="the change made while the sink was down")

    # a device outage is published with its quality and substatus (the value kept)
    srv.stop()
    wait_until(lambda: values(col, "p/level")[-1:] == [(6.0, "BAD", "NOT_CONNECTED")],
               what="BAD/NOT_CONNECTED on the outage")


def test_mqtt_in_qos1_message_sent_while_the_driver_restarts_is_delivered(
        mqtt_plant: tuple[Running, ModbusServer], mosquitto: Mosquitto) -> None:
    r, _ = mqtt_plant
    pub = mosquitto.client()
    old = wait_until(lambda: role_pid(r, "driver:min"), timeout=20, what="mqtt in")
    pub.publish("cmd/sp", b"1.5", qos=1).wait_for_publish(5)
    with Segment.attach(r.instance, readonly=True) as seg:
        wait_until(lambda: seg.get("sp_in") == 1.5, what="the first setpoint")
        os.kill(old, signal.SIGKILL)
        pub.publish("cmd/sp", b"2.5", qos=1).wait_for_publish(5)  # not retained
        wait_until(lambda: (p := role_pid(r, "driver:min")) and p != old, timeout=30,
                   what="the restarted driver")
        wait_until(lambda: seg.get("sp_in") == 2.5, what="the setpoint sent while it was down")
        assert seg.read("sp_in").quality.name == "GOOD"


# ----------------------------------------------------------------------------- health
def healthz(r: Running) -> dict[str, Any]:
    with urllib.request.urlopen(r.url("/healthz"), timeout=10) as resp:
        body: dict[str, Any] = json.loads(resp.read())
    return body


def test_healthz_degraded_with_a_reason_during_a_device_outage(
        plant: tuple[Running, ModbusServer]) -> None:
    r, srv = plant
    wait_until(lambda: driver_pid(r), timeout=20, what="the driver to connect")
    wait_until(lambda: healthz(r)["status"] == "ok", timeout=20, what="a healthy plant")
    srv.stop()
    body = wait_until(lambda: (b := healthz(r))["status"] == "degraded" and b, timeout=10,
                      what="degraded health")
    assert any(x.startswith("driver:plc not connected to its device")
               for x in body["reasons"]), body
    with urllib.request.urlopen(r.url("/metrics"), timeout=10) as resp:
        text = resp.read().decode()
    assert 'petra_link_state{role="driver:plc",state="up"} 0.0' in text
    assert 'petra_signals{quality="bad",substatus="not_connected"} 1.0' in text
    top = subprocess.run([sys.executable, "-m", "petra.top", "--once", "--json", "--instance",
                          r.instance], capture_output=True, text=True, timeout=60, check=True,
                         env=r.env())
    snap = json.loads(top.stdout)
    assert snap["signals"]["level"]["substatus"] == "not_connected"
    drv = next(p for p in snap["processes"] if p["role"] == "driver:plc")
    assert drv["link"] in ("backoff", "connecting")
    srv.start()
    wait_until(lambda: healthz(r)["status"] == "ok", timeout=10, what="health back to ok")


S7_PLANT = _device_plant("s7", "cpu", """\
      - {{signal: level, address: "DB1.DBD0:REAL"}}
      - {{signal: cmd, address: "DB1.DBD4:REAL", direction: write}}
      - {{signal: pump, address: "DB1.DBX8.0", direction: write}}
""")


def test_s7_restarted_with_zeroed_outputs_gets_them_back(tmp_path: Path) -> None:
    import struct

    srv = S7Server()
    port = srv.start()
    path = tmp_path / "plant.yaml"
    inst = f"ls{os.getpid()}"
    path.write_text(S7_PLANT.format(instance=inst, port=port))
    r = start(tmp_path, inst, path)
    try:
        wait_until(lambda: driver_pid(r, "driver:cpu"), timeout=20, what="the S7 driver")
        with Segment.attach(r.instance) as seg:
            seg.write("cmd", 7.5)
            seg.write("pump", True)

            def outputs() -> tuple[float, int]:
                return struct.unpack(">f", bytes(srv.db1[4:8]))[0], srv.db1[8] & 1

            wait_until(lambda: outputs() == (7.5, 1), what="the outputs")
            srv.stop()
            wait_until(lambda: seg.read("level").quality.name == "BAD", what="the outage")
            srv.db1[:] = bytearray(256)  # a CPU that restarted with its DB at zero
            srv.start()
            t0 = time.monotonic()
            t_up = t_back = 0.0
            while not t_back and time.monotonic() - t0 < 10:
                if not t_up and driver_pid(r, "driver:cpu"):
                    t_up = time.monotonic()
                if outputs() == (7.5, 1):
                    t_back = time.monotonic()
                time.sleep(0.002)
            assert t_back, "outputs never re-asserted"
            took = t_back - t0
            after_up = t_back - (t_up or t_back)
        print(f"s7 outputs re-asserted {took:.3f} s after the CPU returned, "
              f"{after_up:.3f} s after the driver reconnected")
        # as for Modbus: the reconnect re-asserts them; loose ceilings, figure printed
        assert took < 6.0, f"outputs back {took:.2f} s after the CPU returned"
        assert after_up < 4.0, f"outputs back {after_up:.2f} s after reconnecting"
    finally:
        stop(r)
        srv.stop()


def test_a_value_marked_bad_keeps_its_source_time(plant: tuple[Running, ModbusServer]) -> None:
    r, srv = plant
    wait_until(lambda: driver_pid(r), timeout=20, what="the driver to connect")
    with Segment.attach(r.instance, readonly=True) as seg:
        wait_until(lambda: seg.read("level").quality.name == "GOOD", what="a good level")
        srv.stop()
        last_good = seg.read("level")
        deadline = time.monotonic() + 10
        while (now := seg.read("level")).quality.name == "GOOD":
            last_good = now
            assert time.monotonic() < deadline, "the outage was never marked"
            time.sleep(0.001)
        assert now.quality.name == "BAD" and now.substatus.name == "NOT_CONNECTED"
        assert now.source_ts_ns == last_good.source_ts_ns  # the last good value's time
        assert now.write_ts_ns > last_good.write_ts_ns  # when it went BAD
