"""A live ``petra api`` process for the API tests: a real segment, a users file with
one user per role, a plant file with an ``api:`` section, HTTPS with a test CA.

:class:`LiveApi` starts ``python -m petra api`` (a real process, bound to port 0, the
port read back from ``--port-file``: a readiness handshake, no sleep). Test users'
passwords are hashed at a low argon2id cost so logins stay quick here; the cost of
real hashes is measured in ``bench/api.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import jwt
from driver_peers import Certs, wait_until

from petra.security import Argon2Cost, Passwords, UsersFile, add_key, add_user
from petra.shm import Segment, SignalDef, SignalType
from petra.types import AccessRole

ROLES = ("viewer", "operator", "engineer", "admin")
PASSWORD = "correct horse battery staple"
FAST = Passwords(Argon2Cost(time_cost=1, memory_kib=8192, parallelism=1))
SECRET = b"t" * 48

SIGNALS = [
    SignalDef("tank.level", SignalType.FLOAT, unit="m", initial=1.0),
    SignalDef("tank.level_sp", SignalType.FLOAT, unit="m", writable=True, initial=2.5,
              minimum=0.0, maximum=5.0),
    SignalDef("plant.start", SignalType.BOOL, writable=True, initial=False),
    SignalDef("plant.count", SignalType.INT, writable=True, initial=0, minimum=0,
              maximum=1000),
    SignalDef("valve.cmd", SignalType.FLOAT, initial=0.0),
    SignalDef("raw.nan_ok", SignalType.FLOAT, writable=True, allow_nonfinite=True),
]


def make_users(path: Path) -> dict[str, str]:
    """One user per role (name = role), passwords PASSWORD; returns role -> API key
    of the operator-only machine user too (key 'machine')."""
    keys: dict[str, str] = {}

    def change(users: Any) -> None:
        for role in ROLES:
            add_user(users, role, AccessRole.parse(role), FAST.hash(PASSWORD))
        add_user(users, "machine", AccessRole.OPERATOR, None)
        keys["machine"] = add_key(users, "machine", "tests")[0]
        keys["admin"] = add_key(users, "admin", "tests")[0]

    UsersFile(path).update(change)
    return keys


class LiveApi:
    def __init__(self, tmp: Path, *, certs: Certs | None = None, extra: str = "",
                 signals: list[SignalDef] | None = None,
                 lockout: str = "{user_failures: 3, address_failures: 50, lockout_s: 60}"
                 ) -> None:
        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        self.instance = f"api{uuid.uuid4().hex[:10]}"
        self.seg = Segment.create(self.instance, signals or SIGNALS)
        self.users_file = tmp / "users.json"
        self.keys = make_users(self.users_file)
        self.audit_file = tmp / "audit" / "audit.log"
        (tmp / "secret").write_bytes(SECRET)
        tls = ""
        if certs is not None:
            tls = (f"  tls: {{cert_file: {certs.server_cert}, key_file: {certs.server_key}, "
                   f"client_ca_file: {certs.ca}, client_cert: optional}}\n")
        self.plant = tmp / "plant.yaml"
        self.plant.write_text(
            f"instance: {self.instance}\n"
            "signals:\n" + "".join(
                f"  - {{name: {s.name}, type: {s.type.name.lower()}}}\n"
                for s in (signals or SIGNALS)) +
            "api:\n  listen: 127.0.0.1:0\n  users_file: users.json\n"
            "  audit_file: audit/audit.log\n  token_secret_file: secret\n"
            f"  lockout: {lockout}\n"
            + tls + extra)
        self.port_file = tmp / "api.port.json"
        self.log = tmp / "api.log"
        self.certs = certs
        self.scheme = "https" if certs else "http"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self._tokens: dict[str, str] = {}

    def start(self) -> LiveApi:
        with contextlib.suppress(FileNotFoundError):
            self.port_file.unlink()
        env = {**os.environ, "PETRA_RUNTIME_DIR": str(self.tmp / "run")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "petra", "api", str(self.plant), "--port-file",
             str(self.port_file), "--log-level", "info"],
            stdout=subprocess.DEVNULL, stderr=self.log.open("ab"), env=env)

        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"petra api exited {self.proc.returncode}: "
                                     f"{self.log.read_text()[-2000:]}")
            return self.port_file.exists()

        wait_until(ready, timeout=60, what="petra api to listen")
        self.port = int(json.loads(self.port_file.read_text())["port"])
        return self

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def close(self) -> None:
        self.stop()
        with contextlib.suppress(Exception):
            self.seg.unlink()
        self.seg.close()

    @property
    def base(self) -> str:
        host = "localhost" if self.certs else "127.0.0.1"
        return f"{self.scheme}://{host}:{self.port}"

    def ssl_context(self, client_cert: bool = False) -> ssl.SSLContext | None:
        if self.certs is None:
            return None
        ctx = ssl.create_default_context(cafile=str(self.certs.ca))
        if client_cert:
            ctx.load_cert_chain(self.certs.client_cert, self.certs.client_key)
        return ctx

    def request(self, method: str, path: str, body: object = None, *,
                token: str | None = None, raw: bytes | None = None,
                content_type: str = "application/json",
                headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
        """(status, parsed JSON body or None, headers)."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", content_type)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=30, context=self.ssl_context()) as resp:
                payload = resp.read()
                status, hdrs = resp.status, dict(resp.headers)
        except urllib.error.HTTPError as exc:
            payload, status, hdrs = exc.read(), exc.code, dict(exc.headers)
        parsed = json.loads(payload) if payload else None
        return status, parsed, hdrs

    def login(self, user: str, password: str = PASSWORD) -> dict[str, Any]:
        status, body, _ = self.request("POST", "/api/v1/auth/login",
                                       {"username": user, "password": password})
        assert status == 200, (status, body)
        assert isinstance(body, dict)
        return body

    def token(self, role: str) -> str:
        if role not in self._tokens:
            self._tokens[role] = str(self.login(role)["access_token"])
        return self._tokens[role]

    def mint(self, user: str, *, exp_in: float, gen: int = 1, kind: str = "access") -> str:
        """A token signed with the API's key (the test knows it): for expiry tests."""
        now = int(time.time())
        return jwt.encode({"sub": user, "gen": gen, "typ": kind,
                           "aud": f"petra-api:{self.instance}", "iat": now - 100,
                           "exp": int(now + exp_in), "jti": uuid.uuid4().hex},
                          SECRET, algorithm="HS256")

    def audit_records(self) -> list[dict[str, Any]]:
        if not self.audit_file.exists():
            return []
        return [json.loads(line) for line in self.audit_file.read_text().splitlines()]


TWILIO_SID = "AC" + "0123456789abcdef" * 2
TWILIO_TOKEN = "tw-api-test-token-7781"
SMS_REPLY_PATH = "/api/v1/alarms/twilio/sms"


def alarms_extra(tmp: Path, *, wait_s: float = 0.2, reply_url: str = "") -> str:
    """Plant text that gives a :class:`LiveApi` an ``alarms:`` section (one alarm on
    tank.level, SMS replies configured) and a short ``api.alarm_wait_s``; no alarm
    process runs, so actions that pass the API's checks answer 503 (still queued)."""
    (tmp / "twilio.token").write_text(TWILIO_TOKEN + "\n")
    url = reply_url or f"https://petra.example.com{SMS_REPLY_PATH}"
    return (f"  alarm_wait_s: {wait_s}\n"
            "alarms:\n  dir: alarms\n  definitions:\n"
            "    - {name: lvl.high, type: high, signal: tank.level, limit: 4, area: tanks,"
            " shelve_max_s: 1h}\n"
            "  notifications:\n"
            f"    twilio: {{account_sid: {TWILIO_SID}, auth_token_file: twilio.token,"
            f" from: '+15005550006', sms_reply_url: '{url}'}}\n"
            "    contacts: [{name: alice, phone: '+491701111111', user: operator}]\n"
            "    policies: [{name: ops, levels: [{contacts: [alice]}]}]\n")


def start_alarm_manager(api: LiveApi) -> subprocess.Popen[bytes]:
    """``petra alarms run`` on the LiveApi's plant and segment (a real alarm process),
    ready once it has published its status."""
    status = api.tmp / "alarms" / "status.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "petra", "alarms", "run", str(api.plant), "--instance",
         api.instance],
        stdout=subprocess.DEVNULL, stderr=(api.tmp / "alarms.log").open("ab"),
        env={**os.environ, "PETRA_RUNTIME_DIR": str(api.tmp / "run")})

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"petra alarms exited {proc.returncode}: "
                                 f"{(api.tmp / 'alarms.log').read_text()[-2000:]}")
        try:
            return int(json.loads(status.read_text()).get("passes", 0)) > 1
        except (OSError, ValueError):
            return False

    wait_until(ready, timeout=60, what="the alarm manager's status")
    return proc


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
