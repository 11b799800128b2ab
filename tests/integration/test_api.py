"""The API process over real HTTPS with a test CA: TLS, logins, tokens, lockout, writes
through the authorised path with their audit records, users, API keys, WebSocket.

One ``petra api`` process per module (a real process against a real segment); the
role matrix is in ``test_api_roles.py``, schemathesis in ``test_api_schema.py``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from api_peers import PASSWORD, LiveApi
from driver_peers import Certs, wait_until

from petra.security import verify_audit


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[LiveApi]:
    live = LiveApi(tmp_path_factory.mktemp("api"), certs=certs).start()
    yield live
    live.close()


# ----------------------------------------------------------------------------- TLS
def _handshake(api: LiveApi, ctx: ssl.SSLContext) -> str:
    with socket.create_connection(("127.0.0.1", api.port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        return str(tls.version())


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_tls_12_or_newer_only(api: LiveApi, certs: Certs) -> None:
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    assert _handshake(api, ctx) in ("TLSv1.2", "TLSv1.3")
    old = ssl.create_default_context(cafile=str(certs.ca))
    old.minimum_version = ssl.TLSVersion.TLSv1
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises(ssl.SSLError):
        _handshake(api, old)


def test_the_server_certificate_is_checked_by_clients(api: LiveApi) -> None:
    """A client that does not trust the test CA refuses the server: it is real TLS."""
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(api, ssl.create_default_context())


def test_plain_http_is_not_served_on_a_tls_port(api: LiveApi) -> None:
    with socket.create_connection(("127.0.0.1", api.port), timeout=10) as s:
        s.sendall(b"GET /api/v1/me HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(10)
        data = s.recv(100)
    assert not data.startswith(b"HTTP/1.1 200")


def test_an_optional_client_certificate_from_the_ca_is_accepted(api: LiveApi) -> None:
    ctx = api.ssl_context(client_cert=True)
    assert ctx is not None
    assert _handshake(api, ctx) in ("TLSv1.2", "TLSv1.3")


def test_required_client_certificates(tmp_path: Path, certs: Certs) -> None:
    live = LiveApi(tmp_path, certs=certs)
    live.plant.write_text(live.plant.read_text().replace("client_cert: optional",
                                                         "client_cert: required"))
    live.start()
    try:
        without = ssl.create_default_context(cafile=str(certs.ca))
        with pytest.raises((ssl.SSLError, ConnectionResetError)), \
                socket.create_connection(("127.0.0.1", live.port), timeout=10) as raw, \
                without.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"GET /api/v1/openapi.json HTTP/1.1\r\nHost: x\r\n\r\n")
            if not tls.recv(10):  # TLS 1.3 reports the refusal at the first read
                raise ConnectionResetError
        with_cert = live.ssl_context(client_cert=True)
        assert with_cert is not None
        assert _handshake(live, with_cert) in ("TLSv1.2", "TLSv1.3")
    finally:
        live.close()


# ----------------------------------------------------------------------------- login
def test_no_credentials_is_401_with_a_bearer_challenge(api: LiveApi) -> None:
    status, body, headers = api.request("GET", "/api/v1/signals")
    assert status == 401 and headers["WWW-Authenticate"] == "Bearer"
    assert body["status"] == 401 and "log in" in body["error"]


def test_login_and_me(api: LiveApi) -> None:
    tokens = api.login("operator")
    assert tokens["token_type"] == "Bearer" and tokens["role"] == "operator"
    status, me, headers = api.request("GET", "/api/v1/me", token=tokens["access_token"])
    assert status == 200 and me["user"] == "operator" and "signal.write" in me["permissions"]
    assert "user.manage" not in me["permissions"]
    assert headers["Cache-Control"] == "no-store"
    assert headers["Strict-Transport-Security"].startswith("max-age=")


def test_wrong_password_and_unknown_user_read_the_same(api: LiveApi) -> None:
    s1, b1, _ = api.request("POST", "/api/v1/auth/login",
                            {"username": "viewer", "password": "not the password"})
    s2, b2, _ = api.request("POST", "/api/v1/auth/login",
                            {"username": "nobody-here", "password": "not the password"})
    assert s1 == s2 == 401 and b1 == b2
    recs = [r for r in api.audit_records() if r["action"] == "login"
            and r["outcome"] == "failed"]
    assert recs[-2]["user"] == "viewer" and recs[-1]["user"].startswith("unknown:")
    assert "nobody-here" not in json.dumps(recs[-1])


def test_lockout_per_user_refuses_even_the_right_password(api: LiveApi) -> None:
    api.login("engineer")  # fine before
    for _ in range(3):  # user_failures: 3 in the test plant
        status, _, _ = api.request("POST", "/api/v1/auth/login",
                                   {"username": "engineer", "password": "wrong password!"})
        assert status == 401
    status, body, headers = api.request("POST", "/api/v1/auth/login",
                                        {"username": "engineer", "password": PASSWORD})
    assert status == 429 and int(headers["Retry-After"]) > 0, body
    assert api.audit_records()[-1]["outcome"] == "refused"
    # the other users are not affected
    assert api.login("viewer")["role"] == "viewer"


def test_expired_tampered_and_foreign_tokens_are_refused(api: LiveApi) -> None:
    good = api.mint("viewer", exp_in=60)
    assert api.request("GET", "/api/v1/me", token=good)[0] == 200
    expired = api.mint("viewer", exp_in=-1)
    status, body, _ = api.request("GET", "/api/v1/me", token=expired)
    assert status == 401 and "expired" in body["error"]
    head, payload, sig = good.split(".")
    tampered = f"{head}.{payload}.{sig[:-2]}{'AA' if sig[-2:] != 'AA' else 'BB'}"
    assert api.request("GET", "/api/v1/me", token=tampered)[0] == 401
    refresh = api.mint("viewer", exp_in=60, kind="refresh")
    assert api.request("GET", "/api/v1/me", token=refresh)[0] == 401
    def b64(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    unsigned = (b64({"alg": "none", "typ": "JWT"}) + "." + b64(
        {"sub": "admin", "gen": 1, "typ": "access", "exp": 2**40, "iat": 0, "jti": "x",
         "aud": f"petra-api:{api.instance}"}) + ".")
    assert api.request("GET", "/api/v1/me", token=unsigned)[0] == 401


def test_refresh_is_single_use(api: LiveApi) -> None:
    pair = api.login("viewer")
    status, new, _ = api.request("POST", "/api/v1/auth/refresh",
                                 {"refresh_token": pair["refresh_token"]})
    assert status == 200 and new["access_token"] != pair["access_token"]
    assert api.request("GET", "/api/v1/me", token=new["access_token"])[0] == 200
    again, body, _ = api.request("POST", "/api/v1/auth/refresh",
                                 {"refresh_token": pair["refresh_token"]})
    assert again == 401 and "already used" in body["error"]


# ----------------------------------------------------------------------------- writes
def test_operator_writes_within_limits_and_the_audit_has_before_and_after(api: LiveApi
                                                                          ) -> None:
    token = api.token("operator")
    api.seg.write("tank.level_sp", 2.5)
    status, body, _ = api.request("PUT", "/api/v1/signals/tank.level_sp", {"value": 3.25},
                                  token=token)
    assert status == 200 and body["before"] == 2.5 and body["after"] == 3.25
    assert api.seg.get("tank.level_sp") == 3.25
    rec = api.audit_records()[-1]
    assert rec["seq"] == body["audit_seq"]
    assert (rec["action"], rec["user"], rec["role"], rec["via"], rec["target"],
            rec["before"], rec["after"], rec["outcome"]) == (
        "signal.write", "operator", "operator", "api", "tank.level_sp", 2.5, 3.25, "ok")
    assert rec["source"] == "127.0.0.1"


@pytest.mark.parametrize(("name", "value", "status", "words"), [
    ("tank.level_sp", 5.5, 422, "outside its limits"),
    ("tank.level_sp", "NaN", 422, "not a finite number"),
    ("tank.level_sp", True, 422, "float"),
    ("plant.count", 1.5, 422, "int"),
    ("plant.start", 2, 422, "bool"),
    ("tank.level", 1.0, 403, "not writable"),
    ("no.such", 1, 404, "no signal"),
])
def test_refused_writes_change_nothing(api: LiveApi, name: str, value: Any, status: int,
                                       words: str) -> None:
    before = {s.name: api.seg.read(s.name) for s in api.seg.signals}
    got, body, _ = api.request("PUT", f"/api/v1/signals/{name}", {"value": value},
                               token=api.token("admin"))
    assert got == status and words in body["error"], body
    assert {s.name: api.seg.read(s.name) for s in api.seg.signals} == before


def test_nonfinite_values_where_the_signal_allows_them(api: LiveApi) -> None:
    status, body, _ = api.request("PUT", "/api/v1/signals/raw.nan_ok", {"value": "NaN"},
                                  token=api.token("operator"))
    assert status == 200 and body["after"] == "NaN"
    status, sig, _ = api.request("GET", "/api/v1/signals/raw.nan_ok",
                                 token=api.token("viewer"))
    assert sig["value"] == "NaN"


def test_viewer_write_is_refused_and_recorded(api: LiveApi) -> None:
    status, body, _ = api.request("PUT", "/api/v1/signals/plant.start", {"value": True},
                                  token=api.token("viewer"))
    assert status == 403 and "operator" in body["error"]
    assert api.seg.get("plant.start") is False


def test_signal_list_filters_and_pages(api: LiveApi) -> None:
    token = api.token("viewer")
    status, body, _ = api.request("GET", "/api/v1/signals?match=tank.*&writable=true",
                                  token=token)
    assert status == 200 and [s["name"] for s in body["signals"]] == ["tank.level_sp"]
    status, body, _ = api.request("GET", "/api/v1/signals?limit=2&offset=1", token=token)
    assert [s["name"] for s in body["signals"]] == ["tank.level_sp", "plant.start"]
    assert body["total"] == len(api.seg)
    assert api.request("GET", "/api/v1/signals?colour=red", token=token)[0] == 400
    assert api.request("GET", "/api/v1/signals?limit=0", token=token)[0] == 400


# ----------------------------------------------------------------------------- users
def test_api_keys_made_used_and_revoked(api: LiveApi) -> None:
    key = api.keys["machine"]
    status, me, _ = api.request("GET", "/api/v1/me", token=key)
    assert status == 200 and me["credential"] == "api_key" and me["role"] == "operator"
    admin = api.token("admin")
    status, made, _ = api.request("POST", "/api/v1/users/machine/keys", {"label": "scada"},
                                  token=admin)
    assert status == 201 and made["key"].startswith("petra_")
    assert api.request("GET", "/api/v1/me", token=made["key"])[0] == 200
    stored = api.users_file.read_text()
    assert made["key"].split("_", 2)[2] not in stored  # only the digest is kept
    assert api.request("DELETE", f"/api/v1/users/machine/keys/{made['id']}",
                       token=admin)[0] == 204
    assert api.request("GET", "/api/v1/me", token=made["key"])[0] == 401
    forged = made["key"][:-4] + "AAAA"
    assert api.request("GET", "/api/v1/me", token=forged)[0] == 401


def test_admin_manages_users_and_a_role_change_revokes_tokens(api: LiveApi) -> None:
    admin = api.token("admin")
    status, user, _ = api.request("POST", "/api/v1/users",
                                  {"name": "dora", "role": "viewer", "password": PASSWORD},
                                  token=admin)
    assert status == 201 and user["role"] == "viewer" and "password" not in user
    dora = api.login("dora")["access_token"]
    assert api.request("GET", "/api/v1/me", token=dora)[0] == 200
    status, user, _ = api.request("PATCH", "/api/v1/users/dora", {"role": "operator"},
                                  token=admin)
    assert status == 200 and user["role"] == "operator"
    assert api.request("GET", "/api/v1/me", token=dora)[0] == 401  # generation moved on
    assert api.request("POST", "/api/v1/users", {"name": "dora", "role": "viewer"},
                       token=admin)[0] == 409
    assert api.request("DELETE", "/api/v1/users/dora", token=admin)[0] == 204
    assert api.request("GET", "/api/v1/users/dora", token=admin)[0] == 404
    actions = [r["action"] for r in api.audit_records()[-4:]]
    assert actions[-1] == "user.del" and "user.change" in actions


def test_change_own_password(api: LiveApi) -> None:
    admin = api.token("admin")
    api.request("POST", "/api/v1/users", {"name": "erin", "role": "viewer",
                                          "password": PASSWORD}, token=admin)
    erin = api.login("erin")["access_token"]
    assert api.request("PUT", "/api/v1/me/password",
                       {"old_password": "wrong one!", "new_password": "a new long password"},
                       token=erin)[0] == 403
    assert api.request("PUT", "/api/v1/me/password",
                       {"old_password": PASSWORD, "new_password": "short"},
                       token=erin)[0] == 422
    assert api.request("PUT", "/api/v1/me/password",
                       {"old_password": PASSWORD, "new_password": "a new long password"},
                       token=erin)[0] == 204
    assert api.request("GET", "/api/v1/me", token=erin)[0] == 401
    assert api.login("erin", "a new long password")["user"] == "erin"


def test_audit_readable_by_admin_and_the_chain_verifies(api: LiveApi) -> None:
    status, body, _ = api.request("GET", "/api/v1/audit?after=0&limit=5",
                                  token=api.token("admin"))
    assert status == 200 and [r["seq"] for r in body["records"]] == [1, 2, 3, 4, 5]
    assert api.request("GET", "/api/v1/audit", token=api.token("operator"))[0] == 403
    status, report, _ = api.request("GET", "/api/v1/audit/verify", token=api.token("admin"))
    assert status == 200 and report["ok"] and report["problems"] == []
    assert verify_audit(api.audit_file).ok


def test_oversize_and_non_json_bodies(api: LiveApi) -> None:
    token = api.token("operator")
    big = json.dumps({"value": 1, "x": "a" * 70_000}).encode()
    assert api.request("PUT", "/api/v1/signals/plant.count", raw=big, token=token)[0] == 413
    assert api.request("PUT", "/api/v1/signals/plant.count", raw=b"value=1", token=token,
                       content_type="application/x-www-form-urlencoded")[0] == 415
    assert api.request("PUT", "/api/v1/signals/plant.count", raw=b"{", token=token)[0] == 400


# ----------------------------------------------------------------------------- websocket
async def _ws_session(api: LiveApi, n: int) -> list[list[dict[str, Any]]]:
    ctx = api.ssl_context()
    got: list[list[dict[str, Any]]] = [[] for _ in range(n)]
    async with aiohttp.ClientSession() as http:
        conns = []
        for i in range(n):
            ws = await http.ws_connect(f"{api.base}/api/v1/ws", ssl=ctx or False)
            await ws.send_json({"op": "auth", "token": api.token("viewer")})
            hello = await ws.receive_json(timeout=10)
            assert hello["type"] == "hello" and hello["role"] == "viewer"
            await ws.send_json({"op": "subscribe", "id": i, "signals": ["tank.*"]})
            sub = await ws.receive_json(timeout=10)
            assert sub["type"] == "subscribed" and sub["signals"] == 2
            snap = await ws.receive_json(timeout=10)
            assert set(snap["signals"]) == {"tank.level", "tank.level_sp"}
            conns.append(ws)
        for k in range(5):
            api.seg.write("tank.level", 10.0 + k)
            api.seg.write("valve.cmd", 50.0 + k)  # not subscribed
            await asyncio.sleep(0.1)
        for i, ws in enumerate(conns):
            while not any(c["signal"] == "tank.level" and c["value"] == 14.0
                          for msg in got[i] for c in msg["changes"]):
                msg = await ws.receive_json(timeout=10)
                if msg["type"] == "changes":
                    got[i].append(msg)
            await ws.close()
    return got


def test_websocket_subscribers_get_journal_changes_of_their_patterns(api: LiveApi) -> None:
    got = asyncio.run(_ws_session(api, 10))
    for msgs in got:
        values = [c["value"] for m in msgs for c in m["changes"] if c["signal"] == "tank.level"]
        assert values[-1] == 14.0 and values == sorted(values)
        assert all(c["signal"].startswith("tank.") for m in msgs for c in m["changes"])


async def _ws_bad_messages(api: LiveApi) -> list[dict[str, Any]]:
    replies = []
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{api.base}/api/v1/ws", ssl=api.ssl_context() or False,
                                   headers={"Authorization": f"Bearer {api.token('viewer')}"})
        assert (await ws.receive_json(timeout=10))["type"] == "hello"
        for text in ["{", "[]", '{"op": "write", "signal": "plant.start", "value": true}',
                     '{"op": "subscribe", "signals": []}', '{"op": "subscribe"}',
                     '{"op": "subscribe", "signals": ["a"], "extra": 1}',
                     '{"op": "ping", "id": {"x": 1}}']:
            await ws.send_str(text)
            replies.append(await ws.receive_json(timeout=10))
        await ws.send_str('{"op": "ping", "id": 7}')
        replies.append(await ws.receive_json(timeout=10))
        await ws.close()
    return replies


def test_websocket_bad_messages_get_an_error_and_the_connection_stays(api: LiveApi) -> None:
    before = api.seg.get("plant.start")
    replies = asyncio.run(_ws_bad_messages(api))
    assert [r["type"] for r in replies[:-1]] == ["error"] * 7
    assert all(r["status"] == 400 for r in replies[:-1])
    assert replies[-1] == {"type": "pong", "id": 7}
    assert api.seg.get("plant.start") == before


async def _ws_unauthenticated(api: LiveApi) -> tuple[int | None, Any]:
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{api.base}/api/v1/ws", ssl=api.ssl_context() or False)
        await ws.send_json({"op": "subscribe", "signals": ["*"]})
        first = await ws.receive(timeout=10)
        await ws.receive(timeout=10)
        return ws.close_code, first.data


def test_websocket_without_credentials_is_closed(api: LiveApi) -> None:
    code, first = asyncio.run(_ws_unauthenticated(api))
    assert code == 4401 and json.loads(first)["status"] == 401


def test_process_heartbeat_counts_requests(api: LiveApi) -> None:
    from petra.shm import read_heartbeats
    from petra.types import ApiCounter

    def beat() -> Any:
        return next((hb for hb in read_heartbeats(api.seg) if hb.role == "api"), None)

    hb = wait_until(beat, what="the api heartbeat")
    wait_until(lambda: (b := beat()) is not None and b.counters[ApiCounter.REQUESTS] > 10,
               what="request counter")
    assert hb.counters[ApiCounter.LOGINS] > 0 and hb.counters[ApiCounter.REFUSED] > 0
