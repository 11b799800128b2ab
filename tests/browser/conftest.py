"""A real plant under ``petra run`` (scan, api, history, alarms, a dead Modbus device)
for the browser tests, and a headless Chromium driven by Playwright.

The browser is Debian's ``chromium`` (``tools/test.sh`` installs it); Playwright's own
browser downloads are never used. Without a browser the tests FAIL with a message that
says what to install: a browser test that skips itself would hide a page nobody tested.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from petra.security import AccessRole, Argon2Cost, Passwords, UsersFile, add_user
from petra.shm import unlink_instance

from .web_peers import ARTIFACTS, CHROMIUM, DEMO, EXTRA, PASSWORD, Plant, wait_for


@pytest.fixture(scope="module")  # stopped after the module: no load on later tests
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
        wait_for("the api", p.api_file, timeout=180)  # a loaded box starts slowly
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


@pytest.fixture(scope="module")  # closed after the module: Playwright's sync API keeps
def browser() -> Iterator[Any]:  # an event loop running that later asyncio.run() refuses
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
