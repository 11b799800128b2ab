"""``petra run`` as a user runs it: a real supervisor, scan child and segment."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from driver_peers import wait_until as _wait_until

from petra.shm import Segment, list_instances, read_heartbeats, read_stats, unlink_instance

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "demo-plant.yaml"

# process start-up waits get the longer default these tests always had
wait_until = functools.partial(_wait_until, timeout=20.0)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill 0; it is dead for our purposes
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@dataclass
class Running:
    proc: subprocess.Popen[str]
    instance: str
    runtime: Path
    plant: Path
    log: Path

    def state(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(
            (self.runtime / f"petra-{self.instance}.json").read_text())
        return data

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.state()['health_port']}{path}"

    def petra(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "petra", *args], capture_output=True,
                              text=True, timeout=timeout, env=self.env(), check=False)

    def env(self) -> dict[str, str]:
        return {**os.environ, "PETRA_RUNTIME_DIR": str(self.runtime)}

    def cycles(self) -> int:
        with Segment.attach(self.instance, readonly=True) as seg:
            return read_stats(seg).cycles

    def scan_pid(self) -> int:
        with Segment.attach(self.instance, readonly=True) as seg:
            for hb in read_heartbeats(seg):
                if hb.role == "scan":
                    return hb.pid
        return 0


def start(tmp_path: Path, instance: str, plant: Path = DEMO) -> Running:
    runtime = tmp_path / "run"
    runtime.mkdir(exist_ok=True)
    log = tmp_path / f"{instance}.log"
    env = {**os.environ, "PETRA_RUNTIME_DIR": str(runtime)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "petra", "run", str(plant), "--instance", instance,
         "--health", "127.0.0.1:0"], stdout=subprocess.DEVNULL,
        stderr=log.open("w"), text=True, env=env)
    r = Running(proc, instance, runtime, plant, log)
    state = runtime / f"petra-{instance}.json"

    def ours() -> bool:
        try:
            return bool(json.loads(state.read_text())["pid"] == proc.pid)
        except (FileNotFoundError, ValueError):
            return False

    wait_until(lambda: ours() or proc.poll() is not None, what="the supervisor's state file")
    assert proc.poll() is None, log.read_text()
    wait_until(lambda: r.cycles() > 0, what="the first scan cycle")
    return r


def stop(r: Running) -> None:
    if r.proc.poll() is None:
        r.proc.send_signal(signal.SIGTERM)
        try:
            r.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            r.proc.kill()
            r.proc.wait()
            unlink_instance(r.instance)  # a killed supervisor cannot clean up


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    tmp = tmp_path_factory.mktemp("demo")
    plant = tmp / "plant.yaml"
    plant.write_text(DEMO.read_text())
    r = start(tmp, f"e2e-{os.getpid()}", plant)
    yield r
    stop(r)


def top_json(r: Running) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "petra.top", "--once", "--json",
                          "--instance", r.instance], capture_output=True, text=True,
                         timeout=60, check=True)
    data: dict[str, Any] = json.loads(out.stdout)
    return data


def test_plant_runs_and_petra_top_sees_it_move(demo: Running) -> None:
    with Segment.attach(demo.instance) as seg:
        seg.write("plant.start", True)
        wait_until(lambda: seg.get("plant.running"), what="the start/stop latch")
        seg.write("plant.start", False)
    first = top_json(demo)
    wait_until(lambda: top_json(demo)["signals"]["run.seconds"]["value"] >
             first["signals"]["run.seconds"]["value"], what="run.seconds to count")
    second = top_json(demo)
    assert second["instance"] == demo.instance
    assert second["scan"]["period_us"] == 10_000
    assert second["scan"]["cycles"] > first["scan"]["cycles"]
    assert second["signals"]["plant.running"]["value"] is True
    assert second["signals"]["plant.running"]["quality"] == "good"
    roles = {p["role"] for p in second["processes"]}
    assert {"supervisor", "scan"} <= roles


def test_health_and_metrics_answer(demo: Running) -> None:
    with urllib.request.urlopen(demo.url("/healthz"), timeout=10) as resp:
        body = json.loads(resp.read())
        assert resp.status == 200
    assert body["status"] == "ok", body
    with urllib.request.urlopen(demo.url("/metrics"), timeout=10) as resp:
        text = resp.read().decode()
    assert "petra_scan_cycles_total" in text
    assert 'petra_process_up{role="scan"} 1.0' in text
    assert "petra_scan_wakeup_latency_seconds" in text


def test_killed_scan_is_restarted_and_the_plant_continues(demo: Running) -> None:
    pid = wait_until(demo.scan_pid, what="the scan's heartbeat")
    os.kill(pid, signal.SIGKILL)
    new_pid = wait_until(lambda: (p := demo.scan_pid()) and p != pid and p, timeout=30,
                       what="a new scan process")
    assert new_pid != pid
    before = demo.cycles()
    wait_until(lambda: demo.cycles() > before + 10, what="cycles after the restart")
    procs = {p["role"]: p for p in top_json(demo)["processes"]}
    assert procs["scan"]["restarts"] == 1
    log = demo.log.read_text()
    assert "event=child_exited role=scan" in log and "SIGKILL" in log


def test_reload_valid_then_invalid(demo: Running) -> None:
    text = demo.plant.read_text()
    demo.plant.write_text(text.replace("params: {high: 4.5, low: 4.3}",
                                       "params: {high: 4.6, low: 4.3}"))
    ok = demo.petra("reload", "--instance", demo.instance)
    assert ok.returncode == 0, ok.stderr
    assert "reloaded" in ok.stdout
    demo.plant.write_text(text.replace("type: PID", "type: PIDD"))
    bad = demo.petra("reload", "--instance", demo.instance)
    assert bad.returncode == 1
    assert "PIDD" in bad.stderr and "plant.yaml:" in bad.stderr
    before = demo.cycles()
    wait_until(lambda: demo.cycles() > before + 5, what="the plant to keep running")
    demo.plant.write_text(text)


def test_second_supervisor_for_the_same_instance_is_refused(demo: Running) -> None:
    out = demo.petra("run", str(demo.plant), "--instance", demo.instance, "--health", "off",
                     timeout=60)
    assert out.returncode == 1
    assert "already running" in out.stderr


def test_sigterm_leaves_no_segment_and_no_process(tmp_path: Path) -> None:
    r = start(tmp_path, f"e2e-stop-{os.getpid()}")
    scan = wait_until(r.scan_pid, what="the scan")
    stop(r)
    assert r.proc.returncode == 0, r.log.read_text()
    assert r.instance not in list_instances()
    assert not alive(scan)
    assert not (r.runtime / f"petra-{r.instance}.json").exists()
    assert "event=plant_stopped" in r.log.read_text()


def test_stale_segment_of_a_killed_supervisor_is_replaced(tmp_path: Path) -> None:
    r = start(tmp_path, f"e2e-stale-{os.getpid()}")
    scan = wait_until(r.scan_pid, what="the scan")
    r.proc.kill()  # SIGKILL: no cleanup at all
    r.proc.wait()
    wait_until(lambda: not alive(scan), what="the orphaned scan to follow its parent")
    assert r.instance in list_instances()  # the stale segment is still there
    r2 = start(tmp_path, r.instance)
    try:
        assert "event=stale_segment_replaced" in r2.log.read_text()
    finally:
        stop(r2)
    assert r.instance not in list_instances()


def test_systemd_ready_watchdog_and_stopping(tmp_path: Path) -> None:
    import socket

    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(20)
    instance = f"e2e-notify-{os.getpid()}"
    runtime = tmp_path / "run"
    runtime.mkdir()
    env = {**os.environ, "PETRA_RUNTIME_DIR": str(runtime), "NOTIFY_SOCKET": str(sock_path),
           "WATCHDOG_USEC": "200000"}
    proc = subprocess.Popen([sys.executable, "-m", "petra", "run", str(DEMO), "--instance",
                             instance, "--health", "off"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        messages: list[str] = []
        while not any(m.startswith("WATCHDOG=1") for m in messages):
            messages.append(sock.recv(4096).decode())
        assert messages[0].startswith("READY=1"), messages
        assert f"STATUS={instance}: running" in messages[0]
        proc.send_signal(signal.SIGTERM)
        while not messages[-1].startswith("STOPPING=1"):
            messages.append(sock.recv(4096).decode())
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            unlink_instance(instance)  # a killed supervisor cannot clean up
        sock.close()
