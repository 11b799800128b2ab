"""Device outages and stale values through ``petra run`` with a real Modbus device.

A pymodbus server feeds six signals through a ``modbus_tcp`` driver; each signal has a
bad-quality and a high alarm, so an outage would raise twelve alarms if they were not
grouped. Stopping the server must raise exactly one alarm (``device.plc``) while its
members go to ``suppressed`` without ever being annunciated; the device coming back
clears it and the members return to normal, again without an annunciation. A signal
written by a local writer has a stale alarm: it is raised when the writes stop for
longer than its timeout (not before) and returns when a write comes.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from driver_peers import ModbusServer, wait_until
from test_run_e2e import start, stop

from petra.shm import Segment

N = 6
PLANT = """\
instance: {instance}
scan: {{period: 10ms, policy: other, wait: sleep}}
signals:
{signals}
  - {{name: local.v, type: float, writable: true}}
drivers:
  - kind: modbus_tcp
    name: plc
    host: 127.0.0.1
    port: {port}
    poll_period_s: 0.1
    timeouts: {{connect_s: 1, request_s: 0.5}}
    points:
{points}
alarms:
  dir: {dir}
  period_s: 50ms
  devices: {{on_delay_s: 0}}
  definitions:
{defs}
    - {{name: local.stale, type: stale, signal: local.v, timeout_s: 1.5s}}
"""


def _plant(instance: str, port: int, adir: Path) -> str:
    return PLANT.format(
        instance=instance, port=port, dir=adir,
        signals="\n".join(f"  - {{name: t{k}, type: float}}" for k in range(N)),
        points="\n".join(f"      - {{signal: t{k}, table: holding, address: {10 + k}}}"
                         for k in range(N)),
        defs="\n".join(f"    - {{name: t{k}.bad, type: bad_quality, signal: t{k}}}\n"
                       f"    - {{name: t{k}.high, type: high, signal: t{k}, limit: 1000}}"
                       for k in range(N)))


def _states(adir: Path) -> dict[str, str]:
    try:
        doc = json.loads((adir / "alarms.json").read_text())
    except (OSError, ValueError):
        return {}
    return {a["name"]: a["state"] for a in doc["alarms"]}


def _events(adir: Path, after: int) -> list[dict[str, Any]]:
    path = adir / "events.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    docs = [json.loads(x) for x in lines if x.strip()]
    return [d for d in docs if d["seq"] > after and d.get("event") == "transition"]


def _last_seq(adir: Path) -> int:
    lines = (adir / "events.jsonl").read_text().splitlines()
    return int(json.loads(lines[-1])["seq"]) if lines else 0


def test_a_device_outage_raises_one_alarm_and_stale_values_raise_theirs(
        tmp_path: Path) -> None:
    srv = ModbusServer({1: 50})
    port = srv.start()
    for k in range(N):
        srv.set(1, 3, 10 + k, [k + 1])
    adir = tmp_path / "alarms"
    inst = f"algrp{os.getpid()}"
    path = tmp_path / "plant.yaml"
    path.write_text(_plant(inst, port, adir))
    writing = threading.Event()
    writing.set()
    done = threading.Event()
    r = start(tmp_path, inst, path)

    def writer() -> None:
        with Segment.attach(inst) as seg:
            while not done.is_set():
                if writing.is_set():
                    seg.write("local.v", 1.0)
                done.wait(0.2)

    thread = threading.Thread(target=writer, daemon=True)
    try:
        thread.start()
        with Segment.attach(inst, readonly=True) as seg:
            wait_until(lambda: all(seg.read(f"t{k}").quality.name == "GOOD"
                                   and seg.get(f"t{k}") == k + 1 for k in range(N)),
                       timeout=30, what="the driver's values")
        wait_until(lambda: "device.plc" in _states(adir) or (adir / "alarms.json").exists(),
                   timeout=30, what="the alarm list")
        wait_until(lambda: _states(adir).get("device.plc", "normal") in ("normal",
                                                                        "rtn_unack"),
                   timeout=30, what="the device alarm to settle")
        time.sleep(0.5)
        base = _last_seq(adir)
        # ---- the device goes away: one alarm, the members grouped under it
        srv.stop()
        wait_until(lambda: _states(adir).get("device.plc") == "unack", timeout=20,
                   what="the device alarm")
        wait_until(lambda: all(_states(adir).get(f"t{k}.bad") == "suppressed"
                               for k in range(N)), timeout=10,
                   what="the members to be suppressed")
        time.sleep(1.0)  # members that were going to fire would have by now
        raised = [e["alarm"] for e in _events(adir, base) if e["to_state"] == "unack"]
        assert raised == ["device.plc"], raised
        states = _states(adir)
        assert all(states.get(f"t{k}.high", "normal") == "normal" for k in range(N))
        _stale(adir, base, writing)
        # ---- the device is back: it returns, the members never annunciate
        srv.start()
        wait_until(lambda: _states(adir).get("device.plc") == "rtn_unack", timeout=30,
                   what="the device alarm to return")
        wait_until(lambda: all(_states(adir).get(f"t{k}.bad", "normal") == "normal"
                               for k in range(N)), timeout=10, what="the members back")
        raised = [e["alarm"] for e in _events(adir, base) if e["to_state"] == "unack"]
        assert sorted(raised) == ["device.plc", "local.stale"], raised
    finally:
        done.set()
        thread.join(5)
        stop(r)
        srv.close()


def _stale(adir: Path, base: int, writing: threading.Event) -> None:
    """The local signal's stale alarm: raised only once its writes have stopped for
    its timeout, returned when they come again."""
    assert _states(adir).get("local.stale", "normal") in ("normal", "rtn_unack")
    writing.clear()
    t0 = time.monotonic()
    wait_until(lambda: _states(adir).get("local.stale") == "unack", timeout=10,
               what="the stale alarm")
    assert time.monotonic() - t0 >= 1.2  # 1.5 s timeout, less the last write's age
    ev = next(e for e in _events(adir, base)
              if e["alarm"] == "local.stale" and e["to_state"] == "unack")
    assert ev["value"] >= 1.5  # seconds since the last write
    writing.set()
    wait_until(lambda: _states(adir).get("local.stale") == "rtn_unack", timeout=10,
               what="the stale alarm to return")
