"""What the browser tests share: the plant they run, its users, waiting."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

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
