"""The instance lock, the state file and the proof ``petra reload`` relies on (issue 11,
item 6), with real processes holding real locks; and the one-line usage errors of the
``petra`` command line (item 8)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from petra.cli import main
from petra.errors import InstanceRunningError, InvalidNameError, PetraError
from petra.supervisor import InstanceLock, read_state, signal_supervisor, supervisor_pid
from petra.supervisor._instance import _holders, lock_path, state_path

HOLD = """
import sys, time
from petra.supervisor import InstanceLock
lock = InstanceLock(sys.argv[1])
lock.acquire()
lock.write_state(health_port=0)
print("held", flush=True)
time.sleep(120)
"""


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "run"
    monkeypatch.setenv("PETRA_RUNTIME_DIR", str(path))
    return path


@pytest.fixture
def name() -> Iterator[str]:
    inst = f"lock-{uuid.uuid4().hex[:10]}"
    yield inst
    lock_path(inst).unlink(missing_ok=True)


def holder(inst: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """A process that takes the lock of ``inst`` and keeps it (a stand-in supervisor)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, inst], stdout=subprocess.PIPE,
                            text=True, env=env)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def stranger() -> subprocess.Popen[bytes]:
    """A process SIGHUP would kill: it must never receive one from ``petra reload``."""
    return subprocess.Popen(["sleep", "60"])


def test_the_lock_is_global_across_runtime_directories(
        tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    proc = holder(name, {**os.environ, "PETRA_RUNTIME_DIR": str(tmp_path / "one")})
    try:
        monkeypatch.setenv("PETRA_RUNTIME_DIR", str(tmp_path / "two"))
        with pytest.raises(InstanceRunningError,
                           match=rf"already running \(supervisor pid {proc.pid}\)"):
            InstanceLock(name).acquire()
        assert supervisor_pid(name) == proc.pid
    finally:
        proc.kill()
        proc.wait()
    assert supervisor_pid(name) is None  # the kernel dropped the lock of the dead holder


def test_lock_taken_after_a_killed_holder(runtime: Path, name: str) -> None:
    proc = holder(name, dict(os.environ))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    lock = InstanceLock(name)
    lock.acquire()
    try:
        assert supervisor_pid(name) == os.getpid()
        assert lock_path(name).read_text() == f"{os.getpid()}\n"
    finally:
        lock.release()
    assert not lock_path(name).exists()


@pytest.mark.parametrize("bad", ["x/../../victim", "../x", "x\n", "", "a" * 49, ".hidden"])
def test_bad_names_are_refused_before_any_file_operation(
        bad: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "not" / "created"
    monkeypatch.setenv("PETRA_RUNTIME_DIR", str(run))
    victim = tmp_path / "victim"
    victim.write_text("precious")
    for call in (InstanceLock, read_state, state_path, lock_path, supervisor_pid):
        with pytest.raises(InvalidNameError):
            call(bad)
    assert not run.exists() and victim.read_text() == "precious"


def test_a_symlink_in_place_of_the_lock_is_refused(tmp_path: Path, name: str) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    lock_path(name).symlink_to(victim)
    with pytest.raises(PetraError, match="cannot open the lock"):
        InstanceLock(name).acquire()
    assert victim.read_text() == "precious"


def test_a_hard_link_in_place_of_the_lock_is_refused(name: str) -> None:
    other = lock_path(name).with_name(f"petra-test-{uuid.uuid4().hex[:8]}")
    other.write_text("precious")
    try:
        os.link(other, lock_path(name))
        with pytest.raises(PetraError, match="not a plain file"):
            InstanceLock(name).acquire()
        assert other.read_text() == "precious"
    finally:
        other.unlink()


def test_holders_parse_proc_locks() -> None:
    dev = os.makedev(0, 0x1b)
    text = ("1: FLOCK  ADVISORY  WRITE 19335 00:1b:1422 0 EOF\n"
            "1: -> FLOCK  ADVISORY  WRITE 400 00:1b:1422 0 EOF\n"
            "2: POSIX  ADVISORY  WRITE 77 fe:00:1422 0 EOF\n"
            "3: OFDLCK ADVISORY  READ  -1 00:1b:99 0 EOF\n"
            "garbage\n")
    assert _holders(dev, 1422, text) == [19335]
    assert _holders(dev, 99, text) == [-1]


# ----------------------------------------------------------------------------- state file

def test_read_state_reports_missing_and_corrupt_files(runtime: Path, name: str) -> None:
    with pytest.raises(PetraError, match="is not running under a supervisor"):
        read_state(name)
    runtime.mkdir(exist_ok=True)
    for junk in ("{", "[1, 2]", "\x00\xff", "null"):
        state_path(name).write_text(junk, errors="surrogateescape")
        with pytest.raises(PetraError, match="is corrupt"):
            read_state(name)
    state_path(name).unlink()
    os.mkfifo(state_path(name))
    with pytest.raises(PetraError, match="not a regular file"):
        read_state(name)


def test_write_state_replaces_atomically_and_ignores_planted_temp_files(
        runtime: Path, name: str, tmp_path: Path) -> None:
    runtime.mkdir(exist_ok=True)
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (runtime / f"petra-{name}.tmp").symlink_to(victim)  # the old fixed temp name
    lock = InstanceLock(name)
    lock.acquire()
    try:
        lock.write_state(health_port=5)
        assert read_state(name) == {"pid": os.getpid(), "instance": name, "health_port": 5}
    finally:
        lock.release()
    assert victim.read_text() == "precious"
    assert sorted(p.name for p in runtime.iterdir()) == [f"petra-{name}.tmp"]


# ----------------------------------------------------------------------------- reload

def test_reload_with_a_stale_state_file_signals_nobody(
        runtime: Path, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    victim = stranger()
    try:
        runtime.mkdir(exist_ok=True)
        state_path(name).write_text(json.dumps({"pid": victim.pid, "instance": name}))
        assert main(["reload", "--instance", name]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"petra reload: instance {name!r} is not running under a "
                              "supervisor (no process holds its lock")
        assert len(err.splitlines()) == 1
        time.sleep(0.2)
        assert victim.poll() is None, "the process named by the stale file got a signal"
    finally:
        victim.kill()
        victim.wait()


def test_signal_goes_to_the_lock_holder_not_the_state_file_pid(
        runtime: Path, name: str) -> None:
    victim = stranger()
    proc = holder(name, dict(os.environ))
    try:
        state_path(name).write_text(json.dumps({"pid": victim.pid, "instance": name}))
        assert signal_supervisor(name, signal.SIGTERM) == proc.pid
        assert proc.wait(timeout=10) == -signal.SIGTERM
        assert victim.poll() is None
        with pytest.raises(PetraError, match="is not running"):
            signal_supervisor(name, signal.SIGTERM)
    finally:
        for p in (victim, proc):
            p.kill()
            p.wait()


def test_reload_with_a_corrupt_state_file_is_a_message(
        runtime: Path, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    proc = holder(name, dict(os.environ))
    try:
        state_path(name).write_text("{not json")
        assert main(["reload", "--instance", name]) == 1
        err = capsys.readouterr().err
        assert "is corrupt" in err and f"pid {proc.pid}" in err
        assert len(err.splitlines()) == 1
        assert proc.poll() is None  # no signal sent without a readable state
    finally:
        proc.kill()
        proc.wait()


# ----------------------------------------------------------------------------- CLI

@pytest.mark.parametrize("argv, fragment", [
    (["run", "p.yaml", "--health", "bogus"], "argument --health: expected HOST:PORT"),
    (["run", "p.yaml", "--health", "127.0.0.1:99999"], "port 99999 is not 0..65535"),
    (["run", "p.yaml", "--health", "127.0.0.1:-1"], "expected HOST:PORT"),
    (["run", "p.yaml", "--health", ":80"], "expected HOST:PORT"),
    (["run", "p.yaml", "--log-level", "bogus"], "argument --log-level: invalid choice"),
    (["run", "p.yaml", "--instance", "../x"], "argument --instance: instance name '../x'"),
    (["run", "p.yaml", "--instance", "x\n"], "argument --instance: instance name 'x\\n'"),
    (["scan", "p.yaml", "--instance", "x/../../victim"], "argument --instance"),
    (["scan", "p.yaml", "--log-level", "loud"], "argument --log-level: invalid choice"),
    (["driver", "p.yaml", "d", "--instance", "../x"], "argument --instance"),
    (["sink", "p.yaml", "mqtt-out", "-i", "a b"], "argument --instance"),
    (["reload", "--instance", "../x"], "argument --instance"),
    (["segment", "info", "../x"], "argument instance"),
    (["check"], "the following arguments are required: plant"),
])
def test_usage_errors_are_one_line_and_exit_2(
        argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert fragment in err and "Traceback" not in err
    assert err.startswith(f"petra {argv[0]}: error: ")


def test_health_address_forms() -> None:
    from petra.cli._args import health_address

    assert health_address("127.0.0.1:0") == "127.0.0.1:0"
    assert health_address("[::1]:9120") == "::1:9120"
    assert health_address("localhost:09120") == "localhost:9120"
    assert health_address("off") == "off"


def test_run_with_a_missing_plant_is_a_usage_message(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(tmp_path / "nope.yaml")]) == 2
    err = capsys.readouterr().err
    assert err == f"petra run: cannot read {tmp_path / 'nope.yaml'}: No such file or directory\n"


def test_driver_with_bad_cpus_is_a_usage_message(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["driver", "p.yaml", "d", "--instance", "x", "--cpus", "1,a"]) == 2
    assert capsys.readouterr().err == (
        "petra driver: --cpus expects numbers such as 1 or 1,2, got '1,a'\n")
