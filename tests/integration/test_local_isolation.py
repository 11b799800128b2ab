"""A shell user against a running plant (issue 11, items 6 and 7), with a real supervisor:
a second ``petra run`` from another runtime directory, ``--instance`` path tricks, a
stale state file, and a ``petra/`` folder in the directory ``petra run`` is typed in.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from driver_peers import wait_until

from petra.errors import PetraError
from petra.shm import Segment, list_instances, read_heartbeats, read_stats, unlink_instance

PETRA = Path(sys.executable).with_name("petra")  # the installed entry point
PLANT = """\
instance: {instance}
scan: {{period: 20ms}}
signals:
  - {{name: level, type: float, writable: true}}
"""


@dataclass
class Plant:
    proc: subprocess.Popen[bytes]
    instance: str
    runtime: Path
    log: Path

    def cycles(self) -> int:
        with Segment.attach(self.instance, readonly=True) as seg:
            return read_stats(seg).cycles

    def pids(self) -> dict[str, int]:
        with Segment.attach(self.instance, readonly=True) as seg:
            return {hb.role: hb.pid for hb in read_heartbeats(seg)}


def start(tmp_path: Path, instance: str, cwd: Path, runtime: Path) -> Plant:
    plant = tmp_path / "plant.yaml"
    plant.write_text(PLANT.format(instance=instance))
    log = tmp_path / f"{instance}-{runtime.name}.log"
    proc = subprocess.Popen(
        [str(PETRA), "run", os.path.relpath(plant, cwd), "--health", "127.0.0.1:0"],
        cwd=cwd, stdout=subprocess.DEVNULL, stderr=log.open("w"),
        env={**os.environ, "PETRA_RUNTIME_DIR": str(runtime)})
    p = Plant(proc, instance, runtime, log)
    state = runtime / f"petra-{instance}.json"

    def ready() -> bool:
        if proc.poll() is not None:
            return True
        try:
            return json.loads(state.read_text())["pid"] == proc.pid and p.cycles() > 0
        except (OSError, ValueError, KeyError, PetraError):  # not there yet: look again
            return False

    try:
        wait_until(ready, what="the plant's first cycle", timeout=30.0)
        assert proc.poll() is None, log.read_text()
    except BaseException:
        stop(p)  # a plant that never came up must not outlive the test
        raise
    return p


def stop(p: Plant) -> None:
    if p.proc.poll() is None:
        p.proc.send_signal(signal.SIGTERM)
        try:
            p.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.proc.kill()
            p.proc.wait()
    if p.instance in list_instances():
        unlink_instance(p.instance)


@pytest.fixture
def instance() -> Iterator[str]:
    name = f"iso-{uuid.uuid4().hex[:8]}"
    yield name
    if name in list_instances():
        unlink_instance(name)
    Path(f"/dev/shm/petra-lock.{name}").unlink(missing_ok=True)  # left by the kill -9 test


def test_children_ignore_a_petra_folder_in_the_callers_directory(
        tmp_path: Path, instance: str) -> None:
    trap = tmp_path / "cwd"
    (trap / "petra").mkdir(parents=True)
    marker = tmp_path / "shadowed"
    (trap / "petra" / "__init__.py").write_text(
        f"open({str(marker)!r}, 'a').write('imported\\n')\nraise SystemExit(3)\n")
    (trap / "petra" / "__main__.py").write_text("raise SystemExit(3)\n")
    p = start(tmp_path, instance, trap, tmp_path / "run")
    try:
        scan = p.pids()["scan"]
        assert os.readlink(f"/proc/{scan}/cwd") == "/"
        argv = Path(f"/proc/{scan}/cmdline").read_bytes().split(b"\0")
        assert argv[1:4] == [b"-I", b"-m", b"petra"]
        first = p.cycles()
        wait_until(lambda: p.cycles() > first + 5, what="cycles to go on")
        assert not marker.exists(), "a child imported the caller's petra/ folder"
    finally:
        stop(p)
    assert p.proc.returncode == 0, p.log.read_text()


def test_a_second_run_from_another_runtime_directory_is_refused(
        tmp_path: Path, instance: str) -> None:
    p = start(tmp_path, instance, tmp_path, tmp_path / "one")
    try:
        with Segment.attach(instance, readonly=True) as seg:
            created = seg.info().created_ns
        scan = p.pids()["scan"]
        r = subprocess.run(
            [str(PETRA), "run", str(tmp_path / "plant.yaml"), "--health", "127.0.0.1:0"],
            capture_output=True, text=True, timeout=60, check=False,
            env={**os.environ, "PETRA_RUNTIME_DIR": str(tmp_path / "two")})
        assert r.returncode == 1
        assert (f"instance {instance!r} is already running (supervisor pid {p.proc.pid})"
                in r.stderr)
        with Segment.attach(instance, readonly=True) as seg:
            assert seg.info().created_ns == created  # the live segment was left alone
        assert p.pids()["scan"] == scan
        first = p.cycles()
        wait_until(lambda: p.cycles() > first, what="the first plant to go on")
        assert not (tmp_path / "two" / f"petra-{instance}.json").exists()
    finally:
        stop(p)


def test_instance_path_traversal_touches_no_file(tmp_path: Path) -> None:
    runtime = tmp_path / "a" / "b" / "run"
    runtime.mkdir(parents=True)
    victim = tmp_path / "a" / "victim"
    victim.write_text("precious")
    for name in ("x/../../victim", "../victim", "x/../../victim.lock"):
        r = subprocess.run(
            [str(PETRA), "run", str(tmp_path / "plant.yaml"), "--instance", name],
            capture_output=True, text=True, timeout=60, check=False,
            env={**os.environ, "PETRA_RUNTIME_DIR": str(runtime)})
        assert r.returncode == 2
        assert len(r.stderr.splitlines()) == 1 and "argument --instance" in r.stderr
    assert victim.read_text() == "precious"
    assert list(runtime.iterdir()) == []


def test_reload_after_kill_9_is_a_message_and_signals_nobody(
        tmp_path: Path, instance: str) -> None:
    p = start(tmp_path, instance, tmp_path, tmp_path / "run")
    p.proc.send_signal(signal.SIGKILL)
    p.proc.wait()
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        state = p.runtime / f"petra-{instance}.json"
        data = json.loads(state.read_text())  # the stale file a kill -9 leaves
        data["pid"] = stranger.pid            # ... naming a reused pid
        state.write_text(json.dumps(data))
        deadline = time.monotonic() + 20  # the children die with their supervisor
        while time.monotonic() < deadline and p.pids().get("scan") and os.path.exists(
                f"/proc/{p.pids()['scan']}"):
            time.sleep(0.1)
        r = subprocess.run([str(PETRA), "reload", "--instance", instance],
                           capture_output=True, text=True, timeout=60, check=False,
                           env={**os.environ, "PETRA_RUNTIME_DIR": str(p.runtime)})
        assert r.returncode == 1
        assert "is not running under a supervisor" in r.stderr
        assert "Traceback" not in r.stderr and len(r.stderr.splitlines()) == 1
        time.sleep(0.2)
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()
        stop(p)
