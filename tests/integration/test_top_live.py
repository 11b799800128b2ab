"""petra-top against a live segment written by another process.

A helper process (this file run as a script) plays a small plant: it creates a
segment, registers heartbeats for a scan and a driver, and every millisecond records
scan timing with the real ``StatsWriter`` and writes moving signal values. Meanwhile
``petra-top --once --json --instance X`` runs as a subprocess, twice, and the two
snapshots must show the plant moving: more cycles, a later journal head, changed
values, fresh heartbeats.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from petra.shm import (
    HeartbeatHandle,
    ProcessState,
    Quality,
    Segment,
    SignalDef,
    SignalType,
    StatsWriter,
    unlink_instance,
)

PERIOD_NS = 1_000_000
READY = "ready"


def simulate(instance: str, seconds: float) -> None:
    """Run a fake scan for at most ``seconds`` (the parent normally kills it first)."""
    seg = Segment.create(instance, [
        SignalDef("tank.level", SignalType.FLOAT, unit="m", owner="scan"),
        SignalDef("pump.run", SignalType.BOOL, owner="scan"),
        SignalDef("pump.starts", SignalType.INT, owner="driver:sim"),
        SignalDef("valve.cmd", SignalType.FLOAT, unit="%", owner="api", writable=True),
    ])
    try:
        stats = StatsWriter(seg, PERIOD_NS)
        scan = HeartbeatHandle(seg, "scan", os.getpid(), cpu=1)
        driver = HeartbeatHandle(seg, "driver:sim", os.getpid(), cpu=0)
        scan.beat(ProcessState.RUNNING)
        driver.beat(ProcessState.RUNNING)
        seg.write("valve.cmd", 42.0)
        print(READY, flush=True)
        deadline = time.monotonic() + seconds
        next_ns = time.monotonic_ns()
        cycle = 0
        while time.monotonic() < deadline:
            next_ns += PERIOD_NS
            delay = next_ns - time.monotonic_ns()
            if delay > 0:
                time.sleep(delay / 1e9)
            woke = time.monotonic_ns()
            t0 = woke
            cycle += 1
            seg.write("tank.level", 1.0 + (cycle % 1000) / 1000.0)
            seg.write("pump.run", cycle % 200 < 100)
            if cycle % 100 == 0:
                seg.write("pump.starts", cycle // 100, quality=Quality.GOOD)
            stats.record(max(0, woke - next_ns), time.monotonic_ns() - t0)
            scan.beat(ProcessState.RUNNING)
            if cycle % 10 == 0:
                driver.set_counter(0, 1)
                driver.set_counter(1, cycle)
                driver.beat(ProcessState.RUNNING)
    finally:
        seg.unlink()
        seg.close()


@pytest.fixture
def live_instance() -> Iterator[str]:
    instance = f"toplive-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen([sys.executable, __file__, instance, "60"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()  # readiness handshake, not a sleep
        assert line == READY, f"simulator did not start (got {line!r})"
        yield instance
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        unlink_instance(instance)


def top_json(instance: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "petra.top", "--once", "--json", "--instance", instance,
         "--window", "0.2"],
        capture_output=True, text=True, timeout=30, check=True)
    data: dict[str, Any] = json.loads(out.stdout)
    return data


def test_two_snapshots_show_the_plant_moving(live_instance: str) -> None:
    first = top_json(live_instance)
    second = top_json(live_instance)
    for snap in (first, second):
        assert snap["instance"] == live_instance
        assert snap["scan"]["period_us"] == 1000.0
        assert set(snap["scan"]["exec_us"]) >= {"last", "avg", "max"}
        assert set(snap["scan"]["wake_us"]) >= {"p50", "p90", "p99", "p999", "max"}
        roles = {p["role"]: p for p in snap["processes"]}
        assert set(roles) == {"scan", "driver:sim"}
        assert roles["scan"]["state"] == "running"
        assert roles["scan"]["rss_bytes"] > 0
        assert set(snap["signals"]) == {"tank.level", "pump.run", "pump.starts", "valve.cmd"}
        assert snap["signals"]["tank.level"]["unit"] == "m"
        assert snap["signals"]["tank.level"]["quality"] == "good"
        assert snap["journal"]["rate_per_s"] > 0
        assert snap["scan"]["cycles_per_s"] > 0
    assert second["scan"]["cycles"] > first["scan"]["cycles"]
    assert second["journal"]["head"] > first["journal"]["head"]
    assert second["taken_ns"] > first["taken_ns"]
    counters = {p["role"]: p["counters"] for p in second["processes"]}
    assert counters["driver:sim"][1] > 0
    # The level is rewritten every cycle: its age stays small while the plant runs,
    # whereas valve.cmd was written once at start and only ages.
    assert second["signals"]["valve.cmd"]["age_ms"] > first["signals"]["valve.cmd"]["age_ms"]
    assert second["signals"]["valve.cmd"]["value"] == 42.0


def test_text_once_and_instance_listing(live_instance: str) -> None:
    listing = subprocess.run([sys.executable, "-m", "petra.top", "--list"],
                             capture_output=True, text=True, timeout=30, check=True)
    assert live_instance in listing.stdout.split()
    out = subprocess.run(
        [sys.executable, "-m", "petra.top", "--once", "--instance", live_instance,
         "--filter", "tank*", "--window", "0.1"],
        capture_output=True, text=True, timeout=30, check=True)
    assert "tank.level" in out.stdout
    assert "pump.run" not in out.stdout
    assert "driver:sim" in out.stdout


def test_unknown_instance_fails_clearly() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "petra.top", "--once", "--json", "--instance", "nope-xyz"],
        capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode == 1
    assert "no segment for instance 'nope-xyz'" in out.stderr


if __name__ == "__main__":
    simulate(sys.argv[1], float(sys.argv[2]))
    sys.exit(0)
