"""Start-up that follows progress (issue 18): a real ``petra run``, a real scan child.

The scan's start-up is slowed or stalled with the scan's fault hook
(``PETRA_INJECT_FAULT=scan:slow-start:S`` beats progress while it waits,
``scan:stall-start:S`` waits without a beat). With ``--start-grace 2`` a fixed grace
would kill the slow start long before it ends; the supervisor must instead wait as long
as the beats come, and give up on the stalled one after a few attempts, marking it
FAILED with its reason on /healthz instead of restarting it for ever.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from driver_peers import wait_until

from petra.shm import Segment, read_heartbeats, read_stats, unlink_instance

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "demo-plant.yaml"


class Run:
    """``petra run DEMO`` with a fault in the scan's environment."""

    def __init__(self, tmp: Path, instance: str, fault: str, *extra: str) -> None:
        self.instance = instance
        self.runtime = tmp / "run"
        self.runtime.mkdir(exist_ok=True)
        self.log = tmp / "run.log"
        env = {**os.environ, "PETRA_RUNTIME_DIR": str(self.runtime),
               "PETRA_INJECT_FAULT": fault}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "petra", "run", str(DEMO), "--instance", instance,
             "--health", "127.0.0.1:0", *extra],
            stdout=subprocess.DEVNULL, stderr=self.log.open("w"), env=env)

    def state(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(
                (self.runtime / f"petra-{self.instance}.json").read_text())
        except (FileNotFoundError, ValueError):
            return None
        return data if data.get("pid") == self.proc.pid else None

    def health(self) -> dict[str, Any]:
        state = self.state()
        assert state is not None
        url = f"http://127.0.0.1:{state['health_port']}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                body: dict[str, Any] = json.loads(resp.read())
        except urllib.error.HTTPError as exc:  # 503 while not ok: the body still says why
            body = json.loads(exc.read())
        return body

    def scan(self) -> dict[str, Any]:
        procs = {p["role"]: p for p in self.health()["processes"]}
        scan: dict[str, Any] = procs["scan"]
        return scan

    def cycles(self) -> int:
        with Segment.attach(self.instance, readonly=True) as seg:
            return read_stats(seg).cycles

    def scan_beats(self) -> list[int]:
        with Segment.attach(self.instance, readonly=True) as seg:
            return [hb.pid for hb in read_heartbeats(seg) if hb.role == "scan"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                unlink_instance(self.instance)


def test_a_start_slower_than_the_grace_still_starts(tmp_path: Path) -> None:
    run = Run(tmp_path, f"slow-{os.getpid()}", "scan:slow-start:7", "--start-grace", "2")
    try:
        wait_until(lambda: run.state() is not None or run.proc.poll() is not None,
                   timeout=30, what="the supervisor's state file")
        assert run.proc.poll() is None, run.log.read_text()
        wait_until(lambda: run.cycles() > 0, timeout=60, what="the first scan cycle")
        log = run.log.read_text()
        assert "event=fault_injected fault=slow-start" in log  # the fault did slow it
        assert "event=child_hung" not in log, log
        scan = wait_until(lambda: (s := run.scan())["state"] == "running" and s,
                          timeout=20, what="the supervisor to see the scan running")
        assert scan["restarts"] == 0, scan
        wait_until(lambda: run.health()["status"] == "ok", timeout=20, what="status ok")
    finally:
        run.stop()


def test_a_start_that_stalls_is_failed_with_its_reason(tmp_path: Path) -> None:
    run = Run(tmp_path, f"stall-{os.getpid()}", "scan:stall-start:600", "--start-grace", "2")
    try:
        wait_until(lambda: run.state() is not None or run.proc.poll() is not None,
                   timeout=30, what="the supervisor's state file")
        assert run.proc.poll() is None, run.log.read_text()
        scan = wait_until(lambda: (s := run.scan())["state"] == "failed" and s,
                          timeout=90, what="the scan to be marked failed")
        assert "never became ready (3 starts in a row)" in scan["last_exit"], scan
        assert "no start-up progress for" in scan["last_exit"], scan
        assert scan["restarts"] == 2, scan
        body = run.health()
        assert body["status"] == "failed", body
        assert any("scan failed: never became ready" in r for r in body["reasons"]), body
        assert run.cycles() == 0
        assert run.scan_beats() == []  # no scan left running or holding a record
        state = run.state()
        assert state is not None and "never became ready" in state["failed"]["scan"], state
        with Segment.attach(run.instance, readonly=True) as seg:  # what petra-top shows
            sup = [hb for hb in read_heartbeats(seg) if hb.role == "supervisor"]
        assert sup and sup[0].state.name == "DEGRADED", sup
        top = subprocess.run(  # the failed child has no heartbeat: petra-top still lists it
            [sys.executable, "-m", "petra.top", "--once", "--json", "--instance",
             run.instance], capture_output=True, text=True, timeout=60, check=True,
            env={**os.environ, "PETRA_RUNTIME_DIR": str(run.runtime)})
        rows = {p["role"]: p for p in json.loads(top.stdout)["processes"]}
        assert rows["scan"]["state"] == "failed", rows
        assert "never became ready (3 starts in a row)" in rows["scan"]["why"], rows
        log = run.log.read_text()
        assert log.count("event=child_hung role=scan") == 3, log
        assert "event=child_failed role=scan" in log
        assert run.proc.poll() is None  # the supervisor stays up to report it
    finally:
        run.stop()
    assert run.proc.returncode == 0
