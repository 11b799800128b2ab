"""petra-top against a live segment written by another process.

A helper process (this file run as a script) plays a small plant: it creates a
segment, registers heartbeats for a scan and a driver, and every millisecond records
scan timing with the real ``StatsWriter`` and writes moving signal values. Meanwhile
``petra-top --once --json --instance X`` runs as a subprocess, twice, and the two
snapshots must show the plant moving: more cycles, a later journal head, changed
values, fresh heartbeats.

A second helper (``rough``) plays a plant that is hard on a monitor: wake-ups beyond
the histogram (17.2 s), an empty histogram at first and after a stats reset, floats going
NaN and infinite, a driver process killed and restarted every ~1.5 s (its heartbeat
record released and re-claimed with a restart counted, as the supervisor does), and
the whole instance replaced by a new segment half-way. The live TUI runs against it
for 10 s through textual's pilot, with keys pressed throughout: no exception.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from petra.errors import NoSuchSegmentError
from petra.shm import (
    HeartbeatHandle,
    ProcessState,
    Quality,
    Segment,
    SignalDef,
    SignalType,
    StatsWriter,
    add_restart,
    read_heartbeats,
    release_heartbeat,
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


# --------------------------------------------------------------------------- rough plant
ROUGH_SIGNALS = [
    SignalDef("flow", SignalType.FLOAT, unit="m3/s", owner="scan"),
    SignalDef("temp", SignalType.FLOAT, unit="degC", owner="driver:sim"),
    SignalDef("count", SignalType.INT, owner="scan"),
    SignalDef("run", SignalType.BOOL, owner="scan"),
    SignalDef("sp", SignalType.FLOAT, unit="m", writable=True, initial=2.5),
]


def rough_driver(instance: str) -> None:
    """A driver process: beats and writes until it is killed."""
    try:
        seg = Segment.attach(instance)
    except NoSuchSegmentError:
        return  # started just as the plant went away
    hb = HeartbeatHandle(seg, "driver:sim", os.getpid())
    n = 0
    while True:
        n += 1
        hb.beat(ProcessState.RUNNING)
        hb.set_counter(1, n)
        seg.write("temp", math.nan if n % 40 < 10 else 20.0 + n % 7)
        time.sleep(0.01)


def _start_driver(instance: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, __file__, "driver", instance])


def rough_plant(instance: str, seconds: float) -> None:  # noqa: PLR0915  # one scripted run
    """Everything a monitor must survive, on a schedule (see the module docstring)."""
    rng = random.Random(7)
    seg = Segment.create(instance, ROUGH_SIGNALS, heartbeats=8)
    scan = HeartbeatHandle(seg, "scan", os.getpid(), cpu=1)
    scan.beat(ProcessState.STARTING)
    driver = _start_driver(instance)
    driver_since = time.monotonic()
    restarts = 0
    print(READY, flush=True)
    start = time.monotonic()
    stats: StatsWriter | None = None
    replaced = False
    cycle = 0
    try:
        while time.monotonic() - start < seconds:
            t = time.monotonic() - start
            if stats is None and t > 0.8:  # an empty histogram first
                stats = StatsWriter(seg, 1_000_000)
            if 4.0 < t < 4.5 and stats is not None and cycle % 50 == 0:
                stats = StatsWriter(seg, 1_000_000)  # a stats reset: counters go back
            if not replaced and t > 6.0:
                # The instance is restarted: a new segment under the same name. The old
                # mapping stays valid for whoever holds it.
                driver.kill()
                driver.wait()
                seg.unlink()
                seg.close()
                seg = Segment.create(instance, ROUGH_SIGNALS, heartbeats=8)
                scan = HeartbeatHandle(seg, "scan", os.getpid(), cpu=1)
                stats = StatsWriter(seg, 1_000_000)
                driver, driver_since = _start_driver(instance), time.monotonic()
                replaced = True
            # Kill the driver only once it has registered (a loaded box starts it slowly),
            # so every restart is one petra-top can see.
            if time.monotonic() - driver_since > 1.5 and any(
                    hb.pid == driver.pid for hb in read_heartbeats(seg)):
                pid = driver.pid
                driver.send_signal(signal.SIGKILL)
                driver.wait()
                seg.repair_writer(pid)
                for hb in read_heartbeats(seg):
                    if hb.pid == pid:
                        release_heartbeat(seg, hb.record)
                driver, driver_since = _start_driver(instance), time.monotonic()
                restarts += 1
            for hb in read_heartbeats(seg):  # count the restart on the new record
                if hb.pid == driver.pid and hb.restarts < restarts:
                    add_restart(seg, hb.record)
            cycle += 1
            if stats is not None:
                # Mostly beyond the log-scale histogram's top (2^34 ns, 17.2 s: a
                # stats block cannot tell more); now and then a quick or a slow one.
                wake = rng.choice((20_000_000_000, 30_000_000_000, 30_000_000, 40_000))
                stats.record(wake, rng.randrange(5_000, 3_000_000),
                             overruns=int(wake > 1_000_000))
            phase = cycle % 100
            slot = t % 3.0  # 0.7 s each of NaN, inf, -inf, then moving values
            flow = (math.nan if slot < 0.7 else math.inf if slot < 1.4 else
                    -math.inf if slot < 2.1 else phase / 100)
            seg.write("flow", flow)
            seg.write("count", cycle)
            seg.write("run", phase < 50,
                      quality=Quality.BAD if phase > 80 else Quality.GOOD)
            scan.beat(ProcessState.RUNNING if phase < 90 else ProcessState.DEGRADED)
            time.sleep(0.005)
    finally:
        driver.kill()
        driver.wait()
        seg.unlink()
        seg.close()


@pytest.fixture
def rough_instance() -> Iterator[str]:
    instance = f"toprough-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen([sys.executable, __file__, "rough", instance, "60"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line == READY, f"rough plant did not start (got {line!r})"
        yield instance
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        unlink_instance(instance)


def test_tui_survives_a_rough_plant_for_ten_seconds(rough_instance: str) -> None:
    from textual.widgets import DataTable, Static

    from petra.top import InstanceSource
    from petra.top._app import TopApp

    source = InstanceSource(rough_instance)
    app = TopApp(source.sample, interval_s=0.1, present=source.present,
                 detail=source.detail)
    seen: dict[str, set[str]] = {"header": set(), "values": set(), "restarts": set()}

    def look() -> None:
        header = str(app.query_one("#header", Static).content)
        for token in (">17.18 s", "instance has stopped"):
            if token in header:
                seen["header"].add(token)
        table = app.query_one("#signals", DataTable)
        for i in range(table.row_count):
            seen["values"].add(str(table.get_row_at(i)[1]))
        procs = app.query_one("#processes", DataTable)
        for i in range(procs.row_count):
            row = [str(c) for c in procs.get_row_at(i)]
            if row[0] == "driver:sim":
                seen["restarts"].add(row[5])

    async def main() -> None:
        async with app.run_test(size=(150, 50)) as pilot:
            deadline = time.monotonic() + 10.0
            keys = ["a", "u", "r", "s", "d", "d", "down", "down", "up", "s", "s"]
            i = 0
            while time.monotonic() < deadline:
                if i % 3 == 0:
                    await pilot.press(keys[i // 3 % len(keys)])
                i += 1
                await pilot.pause(0.1)
                look()
                assert app.is_running
            await pilot.press("slash", *"fl", "enter")
            await pilot.pause(0.3)
            look()

    try:
        asyncio.run(main())  # an exception inside the app is raised here
    finally:
        source.close()
    assert ">17.18 s" in seen["header"]  # percentiles beyond the histogram, as text
    assert {"nan", "inf", "-inf"} <= seen["values"], sorted(seen["values"])
    assert seen["restarts"] - {"0"}, seen["restarts"]  # the driver came back, counted
    assert source.reattached >= 1  # the replaced instance was followed
    assert app.return_code in (None, 0)


if __name__ == "__main__":
    if sys.argv[1] == "rough":
        rough_plant(sys.argv[2], float(sys.argv[3]))
    elif sys.argv[1] == "driver":
        rough_driver(sys.argv[2])
    else:
        simulate(sys.argv[1], float(sys.argv[2]))
    sys.exit(0)
