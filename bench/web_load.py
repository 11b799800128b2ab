"""The API process under the web page's load: 10 browsers' worth of WebSocket clients
while the plant changes 10,000 signals a second.

    python bench/web_load.py --json out.json [--reps 3] [--seconds 10] [--rate 10000]

A real ``petra api`` process (TLS, loopback) serves a segment of 10,000 float signals
that this script creates. A writer process changes them round-robin at ``--rate``
changes/s, paced every 10 ms (what a plant's scan and drivers do, not a flat-out
loop). Ten clients connect as the page does: one WebSocket each, the first-message
``auth``, ``subscribe ["*"]`` (the Signals page subscribes to every signal), and
read every message. Over ``--seconds`` the script samples the API process:

- ``api_cpu_percent``: CPU time of the API process over the window / wall time (100 =
  one core);
- ``api_rss_mb``, ``api_pss_mb`` and ``api_uss_mb``: resident, proportional and unique
  set size at the end (PSS counts the shared segment, journal included, by the API's
  share of it; USS is the API's own memory); ``api_pss_idle_mb`` before the clients
  connect;
- ``changes_per_s_per_client``: changes delivered to each client (coalesced per signal
  per ``ws_tick_s`` tick, so at most the rate written);
- ``resyncs``: slow-client resyncs (a client that could not keep up).

The budget (docs/operations.md, "The web page"): at this load the API process uses
<= 25 % of one core and <= 128 MB PSS (``api_pss_idle_mb``, taken once before the
first run, is its baseline without clients). Medians over ``--reps``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, median, print_table, write_json
from api import make_certs

from petra.security import Argon2Cost, Passwords, UsersFile, add_user
from petra.shm import Segment, SignalDef, SignalType
from petra.types import AccessRole

PASSWORD = "bench password, long enough"
N_SIGNALS = 10_000
N_CLIENTS = 10
PACE_S = 0.01
BUDGET_CPU_PERCENT = 25.0
BUDGET_PSS_MB = 128.0


class Server:
    def __init__(self, tmp: Path) -> None:
        self.instance = f"bweb{uuid.uuid4().hex[:8]}"
        defs = [SignalDef(f"plant.s{i:05d}", SignalType.FLOAT) for i in range(N_SIGNALS)]
        self.seg = Segment.create(self.instance, defs, journal_capacity=1 << 20)
        ca, cert, key = make_certs(tmp)
        self.ca = ca
        fast = Passwords(Argon2Cost(time_cost=1, memory_kib=8192, parallelism=1))
        UsersFile(tmp / "users.json").update(
            lambda u: add_user(u, "bench", AccessRole.VIEWER, fast.hash(PASSWORD)))
        plant = tmp / "plant.yaml"
        plant.write_text(f"instance: {self.instance}\napi:\n  listen: 127.0.0.1:0\n"
                         f"  users_file: users.json\n  audit_file: audit.log\n"
                         f"  tls: {{cert_file: {cert}, key_file: {key}}}\n"
                         "  ws_max_clients: 64\n")
        port_file = tmp / "port.json"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "petra", "api", str(plant), "--port-file",
             str(port_file), "--log-level", "warning"],
            env={**os.environ, "PETRA_RUNTIME_DIR": str(tmp)})
        deadline = time.monotonic() + 60
        while not port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("petra api did not start")
            time.sleep(0.05)
        info = json.loads(port_file.read_text())
        self.port = int(info["port"])
        self.ps = psutil.Process(int(info["pid"]))
        self.base = f"https://localhost:{self.port}"

    def ssl(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        self.seg.unlink()
        self.seg.close()


def _writer(instance: str, rate: float, seconds: float, out: Any) -> None:
    """Change ``rate`` signals a second, round-robin, in slices every 10 ms."""
    seg = Segment.attach(instance)
    per_slice = max(1, round(rate * PACE_S))
    i, n, v = 0, 0, 0.0
    out.put("started")  # a spawned child takes a second or two to import
    t0 = time.perf_counter()
    nxt = t0
    while time.perf_counter() - t0 < seconds:
        for _ in range(per_slice):
            v += 1.0
            seg.write_index(i, v)
            i = (i + 1) % N_SIGNALS
        n += per_slice
        nxt += PACE_S
        time.sleep(max(0.0, nxt - time.perf_counter()))
    out.put(n / (time.perf_counter() - t0))
    seg.close()


async def one_run(srv: Server, rate: float, seconds: float) -> dict[str, float]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=srv.ssl())) as http:
        async with http.post(f"{srv.base}/api/v1/auth/login",
                             json={"username": "bench", "password": PASSWORD}) as resp:
            token = (await resp.json())["access_token"]
        conns = []
        for _ in range(N_CLIENTS):
            ws = await http.ws_connect(f"{srv.base}/api/v1/ws", max_msg_size=0)
            await ws.send_json({"op": "auth", "token": token})
            assert (await ws.receive_json())["type"] == "hello"
            await ws.send_json({"op": "subscribe", "id": 1, "signals": ["*"]})
            assert (await ws.receive_json())["type"] == "subscribed"
            assert (await ws.receive_json())["type"] == "snapshot"
            conns.append(ws)
        counts = [0] * N_CLIENTS
        resyncs = [0]

        async def reader(k: int, ws: aiohttp.ClientWebSocketResponse) -> None:
            # Counted, not parsed: ten parsing clients in one Python process would be
            # the bottleneck and measure themselves, not the API.
            async for msg in ws:
                text = msg.data
                if text.startswith('{"type": "changes"'):
                    counts[k] += text.count('"signal": ')
                elif text.startswith('{"type": "resync"'):
                    resyncs[0] += 1

        tasks = [asyncio.create_task(reader(k, ws)) for k, ws in enumerate(conns)]
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        writer = ctx.Process(target=_writer, args=(srv.instance, rate, seconds + 2.0, q))
        writer.start()
        assert await asyncio.to_thread(q.get, True, 60) == "started"
        await asyncio.sleep(1.0)  # the first ticks
        base = list(counts)
        cpu0 = srv.ps.cpu_times()
        t0 = time.perf_counter()
        await asyncio.sleep(seconds)
        elapsed = time.perf_counter() - t0
        cpu1 = srv.ps.cpu_times()
        mem = srv.ps.memory_full_info()
        got = [c - b for c, b in zip(counts, base, strict=True)]
        writer.join(30)
        written = float(q.get(timeout=10))
        for ws in conns:
            await ws.close()
        for t in tasks:
            t.cancel()
        cpu = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / elapsed * 100
        return {"api_cpu_percent": cpu, "api_rss_mb": mem.rss / 2**20,
                "api_pss_mb": getattr(mem, "pss", 0) / 2**20,
                "api_uss_mb": getattr(mem, "uss", 0) / 2**20,
                "changes_per_s_per_client": median([g / elapsed for g in got]),
                "writer_changes_per_s": written, "resyncs": float(resyncs[0])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", required=True, help="write the results here")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=10_000.0, help="changes per second")
    args = ap.parse_args()
    runs: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="petra-bench-web-") as d:
        srv = Server(Path(d))
        try:
            time.sleep(1.0)  # settled after start-up
            idle_pss = getattr(srv.ps.memory_full_info(), "pss", 0) / 2**20
            for _ in range(args.reps):
                for k, v in asyncio.run(one_run(srv, args.rate, args.seconds)).items():
                    runs.setdefault(k, []).append(v)
        finally:
            srv.close()
    figures = {k: median(v) for k, v in runs.items()}
    print_table([(k, figures[k], min(v), max(v)) for k, v in runs.items()],
                ["figure (median)", "value", "min", "max"])
    within = (figures["api_cpu_percent"] <= BUDGET_CPU_PERCENT
              and figures["api_pss_mb"] <= BUDGET_PSS_MB)
    print(f"API idle (before any client): {idle_pss:.1f} MB PSS")
    print(f"budget: <= {BUDGET_CPU_PERCENT:.0f} % of a core, <= {BUDGET_PSS_MB:.0f} MB PSS: "
          f"{'within' if within else 'OVER'}")
    write_json(args.json, {
        "schema_version": 1, "bench": "web_load", "machine": machine_info(),
        "load_average": os.getloadavg(), "reps": args.reps, "seconds": args.seconds,
        **figures, "api_pss_idle_mb": idle_pss, "runs": runs, "within_budget": within,
        "budget": {"api_cpu_percent": BUDGET_CPU_PERCENT, "api_pss_mb": BUDGET_PSS_MB},
        "setup": {"tls": True, "clients": N_CLIENTS, "signals": N_SIGNALS,
                  "rate": args.rate, "subscription": ["*"], "ws_tick_s": 0.05},
        "limits": "clients, writer and API share the machine's CPUs"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
