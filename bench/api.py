"""The API process over HTTPS: reads, WebSocket fan-out and login cost.

    python bench/api.py --json out.json [--reps 3] [--seconds 3]

A real ``petra api`` process (TLS with a throwaway CA made here, loopback) serves a
segment this script creates; clients run in this process (aiohttp), so on a 2-core
box client and server share the CPUs (stated in the JSON as ``limits``).

- ``api_reads_per_s``: authenticated ``GET /api/v1/signals/{name}`` over HTTPS
  keep-alive (a bearer token), 4 connections in parallel, for ``--seconds``.
- ``ws_updates_per_s``: changes delivered to 10 WebSocket subscribers together, all
  subscribed to 1,000 signals that a writer process changes round-robin as fast as it
  can; within one fan-out tick (``ws_tick_s``, 50 ms) only the latest value of a
  signal is sent, so this is at most signals x ticks/s x subscribers; the writer's
  own rate is reported beside it.
- ``login_ms``: one ``POST /api/v1/auth/login`` with the default argon2id cost
  (stated in ``argon2``), median of 9 over one keep-alive connection.
Medians over ``--reps`` repetitions.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import ipaddress
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, median, print_table, write_json

from petra.security import DEFAULT_COST, Passwords, UsersFile, add_user
from petra.shm import Segment, SignalDef, SignalType
from petra.types import AccessRole

PASSWORD = "bench password, long enough"
N_WS_SIGNALS = 1000
N_SUBSCRIBERS = 10
READ_CONNECTIONS = 4


def make_certs(d: Path) -> tuple[Path, Path, Path]:
    """(CA, server certificate, server key) for 127.0.0.1/localhost."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key, srv_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
        ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("bench CA")).issuer_name(name("bench CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    srv = (x509.CertificateBuilder().subject_name(name("127.0.0.1")).issuer_name(ca.subject)
           .public_key(srv_key.public_key()).serial_number(x509.random_serial_number())
           .not_valid_before(now - datetime.timedelta(minutes=5))
           .not_valid_after(now + datetime.timedelta(days=1))
           .add_extension(x509.SubjectAlternativeName([
               x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
               critical=False).sign(ca_key, hashes.SHA256()))
    paths = (d / "ca.pem", d / "server.pem", d / "server.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(srv.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(srv_key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return paths


class Server:
    def __init__(self, tmp: Path) -> None:
        self.instance = f"bench{uuid.uuid4().hex[:8]}"
        defs = [SignalDef("tank.level", SignalType.FLOAT, initial=1.0)] + [
            SignalDef(f"bench.s{i}", SignalType.FLOAT) for i in range(N_WS_SIGNALS)]
        self.seg = Segment.create(self.instance, defs, journal_capacity=1 << 20)
        ca, cert, key = make_certs(tmp)
        self.ca = ca
        UsersFile(tmp / "users.json").update(
            lambda u: add_user(u, "bench", AccessRole.VIEWER, Passwords().hash(PASSWORD)))
        plant = tmp / "plant.yaml"
        plant.write_text(f"instance: {self.instance}\napi:\n  listen: 127.0.0.1:0\n"
                         f"  users_file: users.json\n  audit_file: audit.log\n"
                         f"  tls: {{cert_file: {cert}, key_file: {key}}}\n"
                         "  lockout: {user_failures: 1000, address_failures: 100000}\n")
        self.port_file = tmp / "port.json"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "petra", "api", str(plant), "--port-file",
             str(self.port_file), "--log-level", "warning"],
            env={**os.environ, "PETRA_RUNTIME_DIR": str(tmp)})
        deadline = time.monotonic() + 60
        while not self.port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("petra api did not start")
            time.sleep(0.05)
        self.port = int(json.loads(self.port_file.read_text())["port"])
        self.base = f"https://localhost:{self.port}"

    def ssl(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        self.seg.unlink()
        self.seg.close()


async def _login(http: aiohttp.ClientSession, srv: Server) -> tuple[str, float]:
    t0 = time.perf_counter()
    async with http.post(f"{srv.base}/api/v1/auth/login",
                         json={"username": "bench", "password": PASSWORD}) as resp:
        body = await resp.json()
        assert resp.status == 200, body
    return str(body["access_token"]), (time.perf_counter() - t0) * 1e3


async def logins(srv: Server, n: int = 9) -> float:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=srv.ssl())) as http:
        await _login(http, srv)  # the connection and its handshake
        return median([(await _login(http, srv))[1] for _ in range(n)])


async def reads(srv: Server, seconds: float) -> float:
    conn = aiohttp.TCPConnector(ssl=srv.ssl(), limit=READ_CONNECTIONS)
    async with aiohttp.ClientSession(connector=conn) as http:
        token, _ = await _login(http, srv)
        headers = {"Authorization": f"Bearer {token}"}
        url = f"{srv.base}/api/v1/signals/tank.level"
        done = 0
        stop_at = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < stop_at:
                async with http.get(url, headers=headers) as resp:
                    await resp.read()
                    assert resp.status == 200
                done += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(READ_CONNECTIONS)))
        return done / (time.perf_counter() - t0)


def _writer(instance: str, seconds: float, out: Any) -> None:
    seg = Segment.attach(instance)
    idx = [seg.index(f"bench.s{i}") for i in range(N_WS_SIGNALS)]
    n, v = 0, 0.0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for i in idx:
            v += 1.0
            seg.write_index(i, v)
        n += len(idx)
    out.put(n / (time.perf_counter() - t0))
    seg.close()


async def websocket(srv: Server, seconds: float) -> tuple[float, float]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=srv.ssl())) as http:
        token, _ = await _login(http, srv)
        conns = []
        for _ in range(N_SUBSCRIBERS):
            ws = await http.ws_connect(f"{srv.base}/api/v1/ws",
                                       headers={"Authorization": f"Bearer {token}"})
            await ws.receive_json()  # hello
            await ws.send_json({"op": "subscribe", "signals": ["bench.*"]})
            await ws.receive_json()  # subscribed
            await ws.receive_json()  # snapshot
            conns.append(ws)
        counts = [0] * N_SUBSCRIBERS
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        writer = ctx.Process(target=_writer, args=(srv.instance, seconds, q))

        async def reader(k: int, ws: aiohttp.ClientWebSocketResponse) -> None:
            async for msg in ws:
                data = json.loads(msg.data)
                if data["type"] == "changes":
                    counts[k] += len(data["changes"])
                elif data["type"] == "resync":
                    counts[k] += len(data["signals"])

        tasks = [asyncio.create_task(reader(k, ws)) for k, ws in enumerate(conns)]
        writer.start()
        t0 = time.perf_counter()
        await asyncio.sleep(seconds)
        elapsed = time.perf_counter() - t0
        total = sum(counts)
        writer.join(30)
        write_rate = float(q.get(timeout=10))
        for ws in conns:
            await ws.close()
        for t in tasks:
            t.cancel()
        return total / elapsed, write_rate


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", required=True, help="write the results here")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    runs: dict[str, list[float]] = {"api_reads_per_s": [], "ws_updates_per_s": [],
                                    "ws_writer_changes_per_s": [], "login_ms": []}
    with tempfile.TemporaryDirectory(prefix="petra-bench-api-") as d:
        srv = Server(Path(d))
        try:
            for _ in range(args.reps):
                runs["login_ms"].append(asyncio.run(logins(srv)))
                runs["api_reads_per_s"].append(asyncio.run(reads(srv, args.seconds)))
                ws, wr = asyncio.run(websocket(srv, args.seconds))
                runs["ws_updates_per_s"].append(ws)
                runs["ws_writer_changes_per_s"].append(wr)
        finally:
            srv.close()
    figures = {k: median(v) for k, v in runs.items()}
    print_table([(k, figures[k], min(v), max(v)) for k, v in runs.items()],
                ["figure (median)", "value", "min", "max"])
    print(f"argon2: {DEFAULT_COST.describe()}")
    write_json(args.json, {
        "schema_version": 1, "bench": "api", "machine": machine_info(),
        "load_average": os.getloadavg(), "reps": args.reps, "seconds": args.seconds,
        **figures, "runs": runs,
        "argon2": {"type": "argon2id", "time_cost": DEFAULT_COST.time_cost,
                   "memory_kib": DEFAULT_COST.memory_kib,
                   "parallelism": DEFAULT_COST.parallelism},
        "setup": {"tls": True, "read_connections": READ_CONNECTIONS,
                  "ws_subscribers": N_SUBSCRIBERS, "ws_signals": N_WS_SIGNALS,
                  "ws_tick_s": 0.05},
        "limits": "client and server share the machine's CPUs; the writer is a third "
                  "process; ws updates are coalesced per signal per tick"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
