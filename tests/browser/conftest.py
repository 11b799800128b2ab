"""A real plant under ``petra run`` (scan, api, history, alarms) for the browser tests,
and a headless Chromium driven by Playwright.

The browser is Debian's ``chromium`` (``tools/test.sh`` installs it); Playwright's own
browser downloads are never used. Without a browser the tests FAIL with a message that
says what to install: a browser test that skips itself would hide a page nobody tested.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from petra.security import AccessRole, Argon2Cost, Passwords, UsersFile, add_user
from petra.shm import unlink_instance

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "demo-plant.yaml"
CHROMIUM = os.environ.get("PETRA_CHROMIUM", "/usr/bin/chromium")
PASSWORD = "correct horse battery staple"
ARTIFACTS = Path(os.environ.get("PETRA_BROWSER_ARTIFACTS",
                                ROOT / "tests" / "browser" / "artifacts"))
T = TypeVar("T")

EXTRA = """
api:
  listen: 127.0.0.1:{port}
  users_file: users.json
  token_secret_file: token.key
  token_ttl_s: 10          # the shortest allowed: every test lives through refreshes
  refresh_ttl_s: 600
  audit_file: audit/audit.log
history:
  dir: history
  wal: {fsync: interval, fsync_interval_s: 0.1}
  parquet: {max_file_age_s: 1}
drivers:
  - kind: modbus_tcp
    name: rtu1
    host: 127.0.0.1
    port: {dead}
    poll_period_s: 0.2
    timeouts: {connect_s: 0.5, request_s: 0.5}
    points:
      - {signal: remote.level, table: holding, address: 0}
alarms:
  dir: alarms
  period_s: 50ms
  fsync: false
  definitions:
    - {name: sp.high, type: high, signal: tank.level_sp, limit: 3.5, deadband: 0.1,
       priority: high, area: tanks, message: "Setpoint {value:.1f} m above 3.5 m"}
"""


def wait_for(what: str, fn: Callable[[], T | None], timeout: float = 60.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class Plant:
    proc: subprocess.Popen[str]
    instance: str
    dir: Path
    runtime: Path

    def api_file(self) -> dict[str, Any]:
        path = self.runtime / f"petra-{self.instance}.api.json"
        if not path.exists():
            return {}
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except ValueError:
            return {}
        return data

    @property
    def url(self) -> str:
        info = wait_for("the api port file", self.api_file)
        return f"http://127.0.0.1:{info['port']}"

    def api_pid(self) -> int:
        return int(wait_for("the api port file", self.api_file)["pid"])


@pytest.fixture(scope="session")
def plant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plant]:
    tmp = tmp_path_factory.mktemp("web")
    fast = Passwords(Argon2Cost(time_cost=1, memory_kib=8192, parallelism=1))
    UsersFile(tmp / "users.json").update(lambda u: [
        add_user(u, role, AccessRole.parse(role), fast.hash(PASSWORD))
        for role in ("viewer", "operator")])
    plant_file = tmp / "plant.yaml"
    (tmp / "token.key").write_text(secrets.token_hex(32))
    (tmp / "token.key").chmod(0o600)
    # A fixed port, not 0: the page must find the API again after the supervisor
    # restarts it (a browser reconnects to the origin it was loaded from). Taken from
    # the kernel and released just before the start: a small race on a test box.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # A device that is never there: a port bound and closed again, nobody listening.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    demo = DEMO.read_text().replace(
        "signals:\n", "signals:\n  - {name: remote.level, type: float, unit: m}\n", 1)
    plant_file.write_text(demo + EXTRA.replace("{port}", str(port)).replace(
        "{dead}", str(dead)))
    runtime = tmp / "run"
    runtime.mkdir()
    instance = f"web-{os.getpid()}"
    env = {**os.environ, "PETRA_RUNTIME_DIR": str(runtime)}
    log = tmp / "petra.log"
    proc = subprocess.Popen([sys.executable, "-m", "petra", "run", str(plant_file),
                             "--instance", instance, "--health", "127.0.0.1:0"],
                            stdout=subprocess.DEVNULL, stderr=log.open("w"), text=True, env=env)
    p = Plant(proc, instance, tmp, runtime)
    try:
        wait_for("the api", p.api_file, timeout=90)
        yield p
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                unlink_instance(instance)
        print(f"\npetra run log: {log}")


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    print(f"\nbrowser screenshots: {ARTIFACTS}")
    return ARTIFACTS


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not (shutil.which(CHROMIUM) or Path(CHROMIUM).is_file()):
        pytest.fail(f"no Chromium at {CHROMIUM}: install Debian's chromium package "
                    "(apt-get install chromium; tools/test.sh does) or set PETRA_CHROMIUM")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: pip install -e '.[test]'")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()
