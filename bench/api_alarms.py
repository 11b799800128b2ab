"""Alarms through the API over HTTPS: how long an operator waits.

    python bench/api_alarms.py --json out.json [--reps 3] [--cycles 20]

A real ``petra api`` (TLS, loopback) and a real ``petra alarms run`` (period 50 ms)
serve a segment this script creates; an operator client in this process (aiohttp)
subscribes to alarm events on the WebSocket, then per cycle writes the level over its
limit, waits for the ``alarm_event`` (unack), acknowledges with ``POST
/api/v1/alarms/ack`` and writes the level back (normal again).

- ``alarm_event_ws_ms``: from the write over the limit to the WebSocket event (the
  alarm manager's evaluation period, its event-log fsync, the API's feed tick of
  ``ws_tick_s`` (50 ms) and the fan-out are all inside);
- ``alarm_ack_ms``: the ``POST /alarms/ack`` round trip (checks, spool file with
  fsync, the alarm manager's next pass and fsync, its answer file, the API's 20 ms
  poll of it).

Medians of the per-repetition medians (and the p95 of all samples) over ``--reps``.
Client, API and alarm manager share the machine's CPUs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, median, print_table, write_json
from api import make_certs

from petra.security import Argon2Cost, Passwords, UsersFile, add_user
from petra.shm import Segment, SignalDef, SignalType
from petra.types import AccessRole

PASSWORD = "bench password, long enough"


class Plant:
    def __init__(self, tmp: Path) -> None:
        self.instance = f"bencha{uuid.uuid4().hex[:8]}"
        self.seg = Segment.create(self.instance, [
            SignalDef("tank.level", SignalType.FLOAT, writable=True, initial=50.0)])
        ca, cert, key = make_certs(tmp)
        self.ca = ca
        fast = Passwords(Argon2Cost(time_cost=1, memory_kib=8192, parallelism=1))
        UsersFile(tmp / "users.json").update(
            lambda u: add_user(u, "op", AccessRole.OPERATOR, fast.hash(PASSWORD)))
        plant = tmp / "plant.yaml"
        plant.write_text(
            f"instance: {self.instance}\n"
            "signals:\n  - {name: tank.level, type: float, writable: true}\n"
            "api:\n  listen: 127.0.0.1:0\n  users_file: users.json\n"
            f"  audit_file: audit.log\n  tls: {{cert_file: {cert}, key_file: {key}}}\n"
            "alarms:\n  dir: alarms\n  period_s: 50ms\n  definitions:\n"
            "    - {name: lvl.high, type: high, signal: tank.level, limit: 80, deadband: 1}\n")
        env = {**os.environ, "PETRA_RUNTIME_DIR": str(tmp)}
        port_file = tmp / "port.json"
        self.procs = [
            subprocess.Popen([sys.executable, "-m", "petra", "api", str(plant), "--port-file",
                              str(port_file), "--log-level", "warning"], env=env),
            subprocess.Popen([sys.executable, "-m", "petra", "alarms", "run", str(plant),
                              "--instance", self.instance, "--log-level", "warning"],
                             env=env)]
        status = tmp / "alarms" / "status.json"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and status.exists()):
            if any(p.poll() is not None for p in self.procs) or time.monotonic() > deadline:
                raise SystemExit("petra api / alarms did not start")
            time.sleep(0.05)
        self.base = f"https://localhost:{json.loads(port_file.read_text())['port']}/api/v1"

    def ssl(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    def close(self) -> None:
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            p.wait(timeout=30)
        self.seg.unlink()
        self.seg.close()


async def _until(ws: aiohttp.ClientWebSocketResponse, to_state: str) -> None:
    while True:
        msg = await ws.receive_json(timeout=30)
        if msg.get("type") == "alarm_event" and msg.get("to_state") == to_state:
            return


async def run(plant: Plant, cycles: int) -> tuple[list[float], list[float]]:
    events: list[float] = []
    acks: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=plant.ssl())) as http:
        async with http.post(f"{plant.base}/auth/login",
                             json={"username": "op", "password": PASSWORD}) as r:
            token = (await r.json())["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        ws = await http.ws_connect(f"{plant.base}/ws", headers=auth)
        await ws.receive_json(timeout=10)  # hello
        await ws.send_json({"op": "subscribe_alarms"})
        await ws.receive_json(timeout=10)  # subscribed_alarms
        await ws.receive_json(timeout=10)  # alarms
        for _ in range(cycles):
            t0 = time.perf_counter()
            plant.seg.write("tank.level", 91.0)
            await _until(ws, "unack")
            events.append((time.perf_counter() - t0) * 1e3)
            t0 = time.perf_counter()
            async with http.post(f"{plant.base}/alarms/ack", headers=auth,
                                 json={"alarms": ["lvl.high"]}) as r:
                body = await r.json()
            acks.append((time.perf_counter() - t0) * 1e3)
            assert r.status == 200 and body["done"] == ["lvl.high"], body
            plant.seg.write("tank.level", 50.0)
            await _until(ws, "normal")
        await ws.close()
    return events, acks


def p95(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(0.95 * len(s)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", required=True, help="write the results here")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--cycles", type=int, default=20)
    args = ap.parse_args()
    ev_runs: list[list[float]] = []
    ack_runs: list[list[float]] = []
    with tempfile.TemporaryDirectory(prefix="petra-bench-api-alarms-") as d:
        plant = Plant(Path(d))
        try:
            for _ in range(args.reps):
                ev, ack = asyncio.run(run(plant, args.cycles))
                ev_runs.append(ev)
                ack_runs.append(ack)
        finally:
            plant.close()
    every_ev = [x for r in ev_runs for x in r]
    every_ack = [x for r in ack_runs for x in r]
    figures = {"alarm_event_ws_ms": median([median(r) for r in ev_runs]),
               "alarm_event_ws_p95_ms": p95(every_ev),
               "alarm_ack_ms": median([median(r) for r in ack_runs]),
               "alarm_ack_p95_ms": p95(every_ack)}
    print_table([(k, v) for k, v in figures.items()], ["figure", "value"])
    write_json(args.json, {
        "schema_version": 1, "bench": "api_alarms", "machine": machine_info(),
        "load_average": os.getloadavg(), "reps": args.reps, "cycles": args.cycles,
        **figures, "runs": {"alarm_event_ws_ms": ev_runs, "alarm_ack_ms": ack_runs},
        "setup": {"tls": True, "alarm_period_s": 0.05, "feed_tick_s": 0.05,
                  "fsync": True},
        "limits": "client, API and alarm manager share the machine's CPUs"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
