"""Issue 10: while the scan is down its outputs say so (UNCERTAIN/SCAN_DOWN), end to end.

A real ``petra run`` with a Modbus device (block outputs carried to it, a polled input),
Mosquitto and the mqtt-out sink. The scan is killed with SIGKILL and frozen with SIGSTOP
past the supervisor's heartbeat timeout; each time its outputs must read UNCERTAIN with
substatus SCAN_DOWN within the supervisor's detection time, value and source time kept,
while inputs written by others stay as they are; every consumer shows it (the slot,
MQTT payload, ``petra read``, petra-top, /healthz with "scan down since ..."); the
device is not sent the mark as a command; and the restarted scan's first cycle brings
every output back to GOOD."""

from __future__ import annotations

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
from driver_peers import Collector, ModbusServer, Mosquitto, wait_until
from test_run_e2e import Running, start, stop

from petra.shm import Segment, read_heartbeats
from petra.types import Quality, Substatus

PLANT = """\
instance: {instance}
scan: {{period: 10ms, policy: other, wait: sleep}}
signals:
  - {{name: stop, type: bool, writable: true}}
  - {{name: run, type: bool}}
  - {{name: sp, type: float, writable: true, initial: 2.5}}
  - {{name: out, type: float}}
  - {{name: level, type: float}}
blocks:
  - {{name: inv, type: NOT, inputs: {{in: stop}}, outputs: {{out: run}}}}
  - {{name: gain, type: MUL, inputs: {{in1: sp, in2: 2.0}}, outputs: {{out: out}}}}
drivers:
  - kind: modbus_tcp
    name: plc
    host: 127.0.0.1
    port: {mb_port}
    poll_period_s: 0.05
    timeouts: {{connect_s: 1, request_s: 0.5}}
    points:
      - {{signal: level, table: holding, address: 10}}
      - {{signal: out, table: holding, address: 0, direction: write}}
      - {{signal: run, table: coil, address: 0, direction: write}}
mqtt:
  broker: {{host: 127.0.0.1, port: {port}}}
  topic_prefix: "p"
  publish:
    - {{signals: [run, out, level], qos: 1}}
"""

HOLDING, COIL = 3, 1
HEARTBEAT_TIMEOUT_S = 3.0  # the supervisor's RestartPolicy default
TICK_S = 0.1


@pytest.fixture
def plant(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[tuple[Running, ModbusServer]]:
    srv = ModbusServer({1: 50})
    mb_port = srv.start()
    srv.set(1, HOLDING, 10, [17])
    path = tmp_path / "plant.yaml"
    inst = f"sd{os.getpid()}"
    path.write_text(PLANT.format(instance=inst, mb_port=mb_port, port=mosquitto.port))
    r = start(tmp_path, inst, path)
    try:
        yield r, srv
    finally:
        stop(r)
        srv.close()


def scan_pid(r: Running) -> int:
    with Segment.attach(r.instance, readonly=True) as seg:
        for hb in read_heartbeats(seg):
            if hb.role == "scan" and hb.state.name == "RUNNING":
                return hb.pid
    return 0


def healthz(r: Running) -> dict[str, Any]:
    with urllib.request.urlopen(r.url("/healthz"), timeout=10) as resp:
        body: dict[str, Any] = json.loads(resp.read())
    return body


def payloads(col: Collector, topic: str) -> list[tuple[Any, str, str]]:
    return [(m["value"], m["quality"], m["substatus"])
            for m in map(json.loads, col.on_topic(topic))]


def all_good(seg: Segment) -> bool:
    return all(seg.read(n).quality == Quality.GOOD and seg.read(n).substatus in (
        Substatus.NONE, Substatus.CALC) for n in ("run", "out"))


def marked(seg: Segment) -> bool:
    return all((seg.read(n).quality, seg.read(n).substatus)
               == (Quality.UNCERTAIN, Substatus.SCAN_DOWN) for n in ("run", "out"))


def wait_restarted(r: Running, seg: Segment, old: int) -> int:
    new = wait_until(lambda: (p := scan_pid(r)) and p != old and p, timeout=30,
                     what="the restarted scan")
    wait_until(lambda: all_good(seg), timeout=10, what="the outputs GOOD again")
    return int(new)


def kill_and_time(r: Running, seg: Segment, sig: signal.Signals) -> tuple[int, float]:
    """Send ``sig`` to the running scan; returns its pid and the seconds until both
    outputs read UNCERTAIN/SCAN_DOWN (polled every millisecond)."""
    pid = wait_until(lambda: scan_pid(r), timeout=30, what="a running scan")
    before = {n: seg.read(n) for n in ("run", "out")}
    t0 = time.monotonic()
    os.kill(pid, sig)
    wait_until(lambda: marked(seg), timeout=HEARTBEAT_TIMEOUT_S + 10,
               what=f"SCAN_DOWN after {sig.name}", interval=0.001)
    took = time.monotonic() - t0
    for n, b in before.items():
        now = seg.read(n)
        assert (now.value, now.source_ts_ns) == (b.value, b.source_ts_ns), n
    level = seg.read("level")
    assert (level.quality, level.substatus) == (Quality.GOOD, Substatus.NONE), \
        "a driver's input is not the scan's: never marked"
    return int(pid), took


def test_scan_outputs_read_scan_down_while_the_scan_is_down(
        plant: tuple[Running, ModbusServer], mosquitto: Mosquitto) -> None:
    r, srv = plant
    col = Collector(mosquitto.client(), "p/#")
    with Segment.attach(r.instance, readonly=True) as seg:
        wait_until(lambda: all_good(seg) and seg.read("level").quality == Quality.GOOD,
                   timeout=20, what="a running plant")
        wait_until(lambda: srv.get(1, HOLDING, 0) == [5] and srv.get(1, COIL, 0) == [True],
                   what="the outputs on the device")
        wait_until(lambda: payloads(col, "p/out")[-1:] == [(5.0, "GOOD", "NONE")],
                   what="the sink's first message")

        # 1. kill -9: marked within the supervisor's tick (plus the reap)
        old, took_kill = kill_and_time(r, seg, signal.SIGKILL)
        # the device is not sent the mark: a local change made now stays
        srv.set(1, HOLDING, 0, [9])
        wait_until(lambda: payloads(col, "p/out")[-1:] == [(5.0, "UNCERTAIN", "SCAN_DOWN")],
                   what="the mark published over MQTT")
        old = wait_restarted(r, seg, old)
        wait_until(lambda: payloads(col, "p/out")[-1:] == [(5.0, "GOOD", "NONE")],
                   what="GOOD published again")
        # the restarted scan's first cycle wrote every output: the device has it again
        wait_until(lambda: srv.get(1, HOLDING, 0) == [5], what="the output re-sent")

        # 2. SIGSTOP: marked once the heartbeat is older than the watchdog
        old, took_stop = kill_and_time(r, seg, signal.SIGSTOP)
        assert took_stop >= HEARTBEAT_TIMEOUT_S - 1.5, "marked before the watchdog fired?"
        srv.set(1, HOLDING, 0, [9])
        srv.set(1, COIL, 0, [False])
        old = wait_restarted(r, seg, old)
        # both outputs back on the device: the driver has sent the restarted scan's
        # first cycle, so nothing of it is still on its way when step 3 looks
        wait_until(lambda: srv.get(1, HOLDING, 0) == [5] and srv.get(1, COIL, 0) == [True],
                   what="the outputs re-sent after the second restart")

        # 3. the consumers. The supervisor is held (SIGSTOP) as soon as the outputs are
        # marked, so it cannot restart the scan while the segment's readers, slow to
        # start on a loaded box, take their look; /healthz and /metrics (served by the
        # supervisor) are read once it runs again, while the new scan is starting
        # the device's coil changed locally, with no new command: a driver that sent the
        # coming mark as a command would put it back to true
        srv.set(1, COIL, 0, [False])
        old, _ = kill_and_time(r, seg, signal.SIGKILL)
        os.kill(r.proc.pid, signal.SIGSTOP)
        try:
            assert marked(seg), "the scan came back before the supervisor was held"
            time.sleep(1.0)  # a driver that would send the mark has had its chance
            read = r.petra("read", r.instance, "out", "--json")
            assert read.returncode == 0, read.stderr
            got = json.loads(read.stdout)["signals"]["out"]
            assert (got["value"], got["quality"], got["substatus"]) == (
                5.0, "uncertain", "scan_down"), got
            top = subprocess.run([sys.executable, "-m", "petra.top", "--once", "--json",
                                  "--instance", r.instance], capture_output=True, text=True,
                                 timeout=60, check=True, env=r.env())
            got = json.loads(top.stdout)["signals"]["run"]
            assert (got["quality"], got["substatus"]) == ("uncertain", "scan_down"), got
            assert srv.get(1, COIL, 0) == [False], \
                "the driver wrote a SCAN_DOWN mark to the device"
        finally:
            os.kill(r.proc.pid, signal.SIGCONT)
        body = healthz(r)
        assert body["status"] == "degraded", body
        assert any(x.startswith("scan down since ") and "UNCERTAIN/SCAN_DOWN" in x
                   for x in body["reasons"]), body
        with urllib.request.urlopen(r.url("/metrics"), timeout=10) as resp:
            metrics = resp.read().decode()
        assert 'petra_signals{quality="uncertain",substatus="scan_down"} 2.0' in metrics
        wait_restarted(r, seg, old)
        wait_until(lambda: srv.get(1, COIL, 0) == [True], what="the coil re-sent")
        wait_until(lambda: not any(x.startswith("scan down")
                                   for x in healthz(r)["reasons"]), what="the reason gone")
    print(f"SCAN_DOWN marked {took_kill * 1e3:.0f} ms after SIGKILL, "
          f"{took_stop:.2f} s after SIGSTOP (heartbeat timeout {HEARTBEAT_TIMEOUT_S:.0f} s)")
    # correctness, not speed (a loaded box starves the supervisor too): a kill is seen
    # by its exit status, before the heartbeat watchdog could have fired; a freeze by
    # the watchdog, not long after it
    assert took_kill < HEARTBEAT_TIMEOUT_S, \
        f"marked {took_kill:.2f} s after the scan died (tick {TICK_S} s)"
    assert took_stop < HEARTBEAT_TIMEOUT_S + 5.0, took_stop
    log = r.log.read_text()
    assert log.count("event=scan_down ") == 3 and "event=scan_back " in log
