"""The API as a child of ``petra run``: spawned, healthy in ``/healthz``, restarted
when killed; reload through it (engineer); ``petra write``, the API and a failed
login land in one audit chain that ``petra audit verify`` accepts, and that it
rejects once a line is edited."""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_peers import FAST, PASSWORD
from driver_peers import wait_until
from test_run_e2e import DEMO, Running, start, stop

from petra.security import AccessRole, UsersFile, add_user


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Running, Path]]:
    tmp = tmp_path_factory.mktemp("supervised")
    UsersFile(tmp / "users.json").update(lambda u: [
        add_user(u, role, AccessRole.parse(role), FAST.hash(PASSWORD))
        for role in ("viewer", "operator", "engineer")])
    plant = tmp / "plant.yaml"
    plant.write_text(DEMO.read_text() + "\napi:\n  listen: 127.0.0.1:0\n"
                     "  users_file: users.json\n  audit_file: audit/audit.log\n")
    r = start(tmp, f"sup-{os.getpid()}", plant)
    yield r, tmp
    stop(r)


def _health(r: Running) -> dict[str, Any]:
    with urllib.request.urlopen(r.url("/healthz"), timeout=10) as resp:
        data: dict[str, Any] = json.loads(resp.read())
    return data


def _api_port(r: Running) -> int:
    path = r.runtime / f"petra-{r.instance}.api.json"
    wait_until(path.exists, timeout=60, what="the api port file")
    return int(json.loads(path.read_text())["port"])


def _call(port: int, method: str, path: str, body: object = None, token: str = ""
          ) -> tuple[int, Any]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=None if body is None else json.dumps(body).encode())
    if body is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def _login(port: int, user: str) -> str:
    status, body = _call(port, "POST", "/api/v1/auth/login",
                         {"username": user, "password": PASSWORD})
    assert status == 200, body
    return str(body["access_token"])


def _api_child(r: Running) -> dict[str, Any] | None:
    return next((p for p in _health(r)["processes"] if p["role"] == "api"), None)


def test_the_api_is_a_child_in_healthz(plant: tuple[Running, Path]) -> None:
    r, _ = plant
    child = wait_until(lambda: (c := _api_child(r)) is not None and c["state"] == "running"
                       and c, timeout=60, what="the api child to run")
    assert child["pid"] > 0
    port = _api_port(r)
    status, st = _call(port, "GET", "/api/v1/status", token=_login(port, "viewer"))
    assert status == 200 and st["instance"] == r.instance
    roles = {p["role"] for p in st["processes"]}
    assert {"scan", "api", "supervisor"} <= roles
    assert st["health"]["status"] in ("ok", "degraded")


def test_one_audit_chain_for_api_cli_and_logins(plant: tuple[Running, Path]) -> None:
    r, tmp = plant
    port = _api_port(r)
    op = _login(port, "operator")
    assert _call(port, "PUT", "/api/v1/signals/tank.level_sp", {"value": 3.0}, op)[0] == 200
    out = r.petra("write", r.instance, "tank.level_sp=2.75")
    assert out.returncode == 0, out.stderr
    out = r.petra("write", r.instance, "tank.level_sp=9")
    assert out.returncode == 1
    _call(port, "POST", "/api/v1/auth/login", {"username": "operator", "password": "nope!"})
    audit = tmp / "audit" / "audit.log"
    recs = [json.loads(x) for x in audit.read_text().splitlines()]
    writes = [(x["via"], x["after"] if x["outcome"] == "ok" else x["requested"], x["outcome"])
              for x in recs if x["action"] == "signal.write"]
    assert writes[-3:] == [("api", 3.0, "ok"), ("cli", 2.75, "ok"), ("cli", 9, "refused")]
    assert recs[-1]["action"] == "login" and recs[-1]["outcome"] == "failed"
    cli = next(x for x in recs if x["via"] == "cli")
    assert cli["user"].startswith("local:") and cli["role"] == "operator"
    assert json.loads((r.runtime / f"petra-{r.instance}.json").read_text())[
        "audit_file"] == str(audit)
    ok = r.petra("audit", "verify", "--plant", str(r.plant))
    assert ok.returncode == 0 and "intact" in ok.stdout, ok.stderr
    copy = tmp / "copy.log"
    copy.write_text(audit.read_text().replace('"after":3.0', '"after":4.0'))
    (tmp / "copy.log.head").write_bytes((tmp / "audit" / "audit.log.head").read_bytes())
    bad = r.petra("audit", "verify", str(copy))
    assert bad.returncode == 1 and "edited" in bad.stderr


def test_reload_through_the_api_needs_an_engineer(plant: tuple[Running, Path]) -> None:
    r, tmp = plant
    port = _api_port(r)
    status, _ = _call(port, "POST", "/api/v1/reload", token=_login(port, "operator"))
    assert status == 403
    status, body = _call(port, "POST", "/api/v1/reload", token=_login(port, "engineer"))
    assert status == 200 and body == {"ok": True, "errors": []}
    rec = json.loads((tmp / "audit" / "audit.log").read_text().splitlines()[-1])
    assert (rec["action"], rec["user"], rec["outcome"]) == ("config.reload", "engineer", "ok")


def test_a_killed_api_is_restarted(plant: tuple[Running, Path]) -> None:
    r, _ = plant
    child = _api_child(r)
    assert child is not None
    os.kill(child["pid"], signal.SIGKILL)
    wait_until(lambda: (c := _api_child(r)) is not None and c["pid"] != child["pid"]
               and c["state"] == "running", timeout=60, what="the api to come back")
    port_file = r.runtime / f"petra-{r.instance}.api.json"
    wait_until(lambda: json.loads(port_file.read_text())["pid"] != child["pid"], timeout=60,
               what="the new api to listen")
    port = _api_port(r)
    assert _call(port, "GET", "/api/v1/me", token=_login(port, "viewer"))[0] == 200
