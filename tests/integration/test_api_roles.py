"""Every role against every endpoint, from a table that must name every route.

``EXPECTED`` is written here by hand, independently of ``petra/api/_rules.py``: the
lowest role that may call each (method, path), or ``None`` for public routes. The test
takes the routes from the real application: a route missing from this table fails the
test, so a new endpoint cannot ship without someone deciding who may call it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_peers import PASSWORD, ROLES, LiveApi, alarms_extra

from petra.api import build_app, make_context, served_routes
from petra.config import load_plant

EXPECTED: dict[tuple[str, str], str | None] = {
    ("GET", "/api/v1/openapi.json"): None,
    ("POST", "/api/v1/auth/login"): None,
    ("POST", "/api/v1/auth/refresh"): None,
    ("POST", "/api/v1/auth/logout"): "viewer",
    ("GET", "/api/v1/me"): "viewer",
    ("PUT", "/api/v1/me/password"): "viewer",
    ("GET", "/api/v1/signals"): "viewer",
    ("GET", "/api/v1/signals/{name}"): "viewer",
    ("PUT", "/api/v1/signals/{name}"): "operator",
    ("GET", "/api/v1/status"): "viewer",
    ("POST", "/api/v1/reload"): "engineer",
    ("GET", "/api/v1/users"): "admin",
    ("POST", "/api/v1/users"): "admin",
    ("GET", "/api/v1/users/{name}"): "admin",
    ("PATCH", "/api/v1/users/{name}"): "admin",
    ("DELETE", "/api/v1/users/{name}"): "admin",
    ("POST", "/api/v1/users/{name}/keys"): "admin",
    ("DELETE", "/api/v1/users/{name}/keys/{key_id}"): "admin",
    ("GET", "/api/v1/audit"): "admin",
    ("GET", "/api/v1/audit/verify"): "admin",
    ("GET", "/api/v1/ws"): "viewer",
    ("GET", "/api/v1/alarms"): "viewer",
    ("GET", "/api/v1/alarms/events"): "viewer",
    ("GET", "/api/v1/alarms/status"): "viewer",
    ("POST", "/api/v1/alarms/ack"): "operator",
    ("POST", "/api/v1/alarms/reset"): "operator",
    ("POST", "/api/v1/alarms/comment"): "operator",
    ("POST", "/api/v1/alarms/shelve"): "operator",
    ("POST", "/api/v1/alarms/unshelve"): "operator",
    ("POST", "/api/v1/alarms/out-of-service"): "engineer",
    ("POST", "/api/v1/alarms/return-to-service"): "engineer",
    # Twilio's webhook: no bearer; its signature is checked (test_api_alarms_e2e.py)
    ("POST", "/api/v1/alarms/twilio/sms"): None,
    ("GET", "/api/v1/history"): "viewer",
}

# A request per route that a permitted caller may send without changing anything
# that matters: unknown users, a too-short new password, a value already held.
PARAMS = {"name": "tank.level_sp", "key_id": "000000000000"}
USER_PARAMS = {"name": "ghost", "key_id": "000000000000"}
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/api/v1/auth/login"): {"username": "viewer", "password": PASSWORD},
    ("POST", "/api/v1/auth/logout"): {"refresh_token": "not-a-token"},
    ("PUT", "/api/v1/me/password"): {"old_password": "x", "new_password": "short"},
    ("PUT", "/api/v1/signals/{name}"): {"value": 2.5},
    ("POST", "/api/v1/users"): {"name": "matrix", "role": "viewer"},
    ("PATCH", "/api/v1/users/{name}"): {"role": "viewer"},
    ("POST", "/api/v1/users/{name}/keys"): {"label": "x"},
    ("POST", "/api/v1/alarms/ack"): {"alarms": ["none.such"]},
    ("POST", "/api/v1/alarms/reset"): {"alarms": ["none.such"]},
    ("POST", "/api/v1/alarms/comment"): {"alarms": ["none.such"], "text": "x"},
    ("POST", "/api/v1/alarms/shelve"): {"alarms": ["none.such"], "reason": "x",
                                        "duration_s": 1},
    ("POST", "/api/v1/alarms/unshelve"): {"alarms": ["none.such"]},
    ("POST", "/api/v1/alarms/out-of-service"): {"alarms": ["none.such"], "reason": "x"},
    ("POST", "/api/v1/alarms/return-to-service"): {"alarms": ["none.such"]},
}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    tmp = tmp_path_factory.mktemp("roles")
    live = LiveApi(tmp, extra=alarms_extra(tmp)).start()
    yield live
    live.close()


def _app_routes(api: LiveApi) -> set[tuple[str, str]]:
    plant = load_plant(api.plant)
    assert plant.config.api is not None
    ctx = make_context(plant.config.api, api.seg, api.instance, api.plant.parent)
    return set(served_routes(build_app(ctx)))


def test_every_route_of_the_app_is_in_the_table(api: LiveApi) -> None:
    routes = _app_routes(api)
    assert routes - set(EXPECTED) == set(), "a route without an expected role: add it"
    assert set(EXPECTED) - routes == set(), "the table names a route the app lacks"


def _path(route: str) -> str:
    params = USER_PARAMS if route.startswith("/api/v1/users") else PARAMS
    return route.format(**params)


CASES = [(m, p, who) for (m, p) in EXPECTED for who in (None, *ROLES)]


@pytest.mark.parametrize(("method", "route", "who"), CASES,
                         ids=[f"{m} {p} as {w or 'anonymous'}" for m, p, w in CASES])
def test_role_matrix(api: LiveApi, method: str, route: str, who: str | None) -> None:
    need = EXPECTED[(method, route)]
    token = api.token(who) if who else None
    body_out = BODIES.get((method, route))
    if route == "/api/v1/auth/refresh":  # a refresh token is spent by its use
        body_out = {"refresh_token": api.login("viewer")["refresh_token"]}
    status, body, _ = api.request(method, _path(route), body_out, token=token)
    if need is None:
        assert status not in (401, 403), (status, body)
    elif who is None:
        # a WebSocket may carry its credentials in its first message: the upgrade is
        # not refused up front, but a plain GET is not an upgrade
        assert status == (400 if route.endswith("/ws") else 401), (status, body)
    elif ROLES.index(who) < ROLES.index(need):
        assert status == 403 and need in body["error"], (status, body)
    else:
        assert status not in (401, 403), (status, body)
    if method == "PUT" and route == "/api/v1/signals/{name}" and status == 200:
        assert api.seg.get("tank.level_sp") == 2.5
    if route.startswith("/api/v1/alarms/") and method == "POST" and need is not None \
            and who is not None and ROLES.index(who) >= ROLES.index(need):
        assert status == 404 and "none.such" in body["error"], (status, body)  # checked


def test_an_alarm_action_refused_for_role_is_audited(api: LiveApi) -> None:
    status, _, _ = api.request("POST", "/api/v1/alarms/out-of-service",
                               {"alarms": ["lvl.high"], "reason": "x"},
                               token=api.token("operator"))
    assert status == 403
    rec = api.audit_records()[-1]
    assert (rec["user"], rec["role"], rec["action"], rec["outcome"]) == (
        "operator", "operator", "alarm.service", "refused")
    assert "engineer" in rec["reason"]
    assert not (api.tmp / "alarms" / "actions" / "incoming").exists()


def test_forbidden_calls_change_nothing(api: LiveApi, tmp_path: Path) -> None:
    users_before = api.users_file.read_bytes()
    for (method, route), need in EXPECTED.items():
        if need != "admin" or method == "GET":
            continue
        status, _, _ = api.request(method, _path(route), BODIES.get((method, route)),
                                   token=api.token("engineer"))
        assert status == 403
    assert api.users_file.read_bytes() == users_before
