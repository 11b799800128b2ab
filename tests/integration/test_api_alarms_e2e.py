"""Alarms through the HTTPS API of a plant run by ``petra run`` (scan, alarm manager and
API as children), with the local Twilio stand-in:

- a level crosses its limit -> the WebSocket pushes the alarm event -> SMS level 1 ->
  a viewer's ack is refused (403, audited), bad input changes nothing -> an operator's
  ack over HTTPS -> no level-2 notification after the escalation delay; the alarm
  process's audit record is the only one for the ack (no double log);
- acknowledgement by SMS reply: Twilio's webhook signed with the twilio package's
  ``RequestValidator`` acknowledges as the contact's user; a bad signature is a 403, an
  unknown number is refused and audited.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests
from api_peers import SMS_REPLY_PATH, make_users
from driver_peers import Certs, wait_until
from test_alarms_e2e import SID, TOKEN, Plant, stop_plant, write
from twilio.request_validator import RequestValidator
from twilio_standin import TwilioStandIn

from petra.config._alarms import ack_code

PUBLIC_URL = f"https://scada.example.com{SMS_REPLY_PATH}"
ALICE, BOB, STRANGER = "+491701111111", "+491702222222", "+491709999999"
L2_S = 5.0

PLANT = """instance: {instance}
scan: {{period: 20ms}}
signals:
  - {{name: tank.level, type: float, unit: "%", writable: true}}
  - {{name: tank.temp, type: float, unit: C, writable: true}}
api:
  listen: 127.0.0.1:0
  users_file: users.json
  audit_file: audit/audit.log
  tls: {{cert_file: {cert}, key_file: {key}}}
alarms:
  dir: {dir}
  period_s: 50ms
  definitions:
    - {{name: lvl.high, type: high, signal: tank.level, limit: 80, deadband: 1,
       priority: critical, area: tanks, message: "Tank level {{value:.0f}} %",
       shelve_max_s: 1h}}
    - {{name: temp.high, type: high, signal: tank.temp, limit: 60, priority: high,
       area: tanks}}
  notifications:
    twilio: {{account_sid: {sid}, auth_token_file: {token}, from: "+15005550006",
             base_url: "{base}", timeout_s: 5, sms_reply_url: "{public}"}}
    contacts:
      - {{name: alice, phone: "{alice}", user: operator}}
      - {{name: bob, phone: "{bob}"}}
    policies:
      - {{name: ops, levels: [{{contacts: [alice]}}, {{contacts: [bob], after_s: {l2}}}]}}
    rate_limit: {{per_contact: 1000, total: 10000}}
"""


class Api:
    """The plant's API over HTTPS (port from the supervisor's port file)."""

    def __init__(self, p: Plant, certs: Certs) -> None:
        path = p.runtime / f"petra-{p.instance}.api.json"
        wait_until(path.exists, timeout=60, what="the api port file")
        self.port = int(json.loads(path.read_text())["port"])
        self.base = f"https://localhost:{self.port}/api/v1"
        self.http = requests.Session()
        self.http.trust_env = False
        self.http.verify = str(certs.ca)
        self.ssl = ssl.create_default_context(cafile=str(certs.ca))
        self.tokens: dict[str, str] = {}

    def login(self, user: str) -> str:
        from api_peers import PASSWORD

        r = self.http.post(f"{self.base}/auth/login",
                           json={"username": user, "password": PASSWORD}, timeout=30)
        assert r.status_code == 200, r.text
        self.tokens[user] = r.json()["access_token"]
        return self.tokens[user]

    def call(self, method: str, path: str, user: str, body: dict[str, Any] | None = None
             ) -> tuple[int, Any]:
        r = self.http.request(method, self.base + path, json=body, timeout=30,
                              headers={"Authorization": f"Bearer {self.tokens[user]}"})
        return r.status_code, r.json()

    def sms(self, form: dict[str, str], signature: str) -> requests.Response:
        return self.http.post(self.base + "/alarms/twilio/sms", data=form, timeout=30,
                              headers={"X-Twilio-Signature": signature})


def start(tmp: Path, certs: Certs, base: str) -> Plant:
    instance = f"apialm-{os.getpid()}-{random.randrange(1 << 16):x}"
    token = tmp / "twilio.token"
    token.write_text(TOKEN + "\n")
    make_users(tmp / "users.json")
    plant = tmp / "plant.yaml"
    plant.write_text(PLANT.format(instance=instance, dir=tmp / "alarms", sid=SID, token=token,
                                  base=base, public=PUBLIC_URL, alice=ALICE, bob=BOB,
                                  l2=L2_S, cert=certs.server_cert, key=certs.server_key))
    runtime = tmp / "run"
    runtime.mkdir(exist_ok=True)
    log = tmp / "plant.log"
    proc = subprocess.Popen([sys.executable, "-m", "petra", "run", str(plant), "--instance",
                             instance], stdout=subprocess.DEVNULL, stderr=log.open("w"),
                            text=True, env={**os.environ, "PETRA_RUNTIME_DIR": str(runtime)})
    p = Plant(proc, instance, runtime, plant, tmp / "alarms", log)
    wait_until(lambda: proc.poll() is not None or p.status().get("passes", 0) > 2,
               timeout=90, what="alarm passes")
    assert proc.poll() is None, log.read_text()[-3000:]
    return p


@pytest.fixture
def running(tmp_path: Path, certs: Certs) -> Iterator[tuple[Plant, Api, TwilioStandIn]]:
    standin = TwilioStandIn()
    standin.start()
    p = start(tmp_path, certs, standin.base_url)
    try:
        api = Api(p, certs)
        for user in ("viewer", "operator", "engineer"):
            api.login(user)
        yield p, api, standin
    finally:
        stop_plant(p)
        standin.stop()
        if p.proc.poll() is None:
            p.proc.send_signal(signal.SIGKILL)


def audit(p: Plant) -> list[dict[str, Any]]:
    path = p.path.parent / "audit" / "audit.log"
    return [json.loads(x) for x in path.read_text().splitlines()]


async def _ws_sees_the_alarm_raised(api: Api, p: Plant) -> list[dict[str, Any]]:
    """Subscribe to alarm events, cross the limit, collect until lvl.high is raised."""
    got: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"wss://localhost:{api.port}/api/v1/ws", ssl=api.ssl,
                                   headers={"Authorization": f"Bearer {api.tokens['viewer']}"})
        assert (await ws.receive_json(timeout=10))["type"] == "hello"
        await ws.send_json({"op": "subscribe_alarms", "id": 1})
        sub = await ws.receive_json(timeout=10)
        assert sub["type"] == "subscribed_alarms" and sub["id"] == 1 and sub["alarms"]
        snap = await ws.receive_json(timeout=10)
        assert snap["type"] == "alarms" and isinstance(snap["alarms"], list)
        write(p, "tank.level", 91.0)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            msg = await ws.receive_json(timeout=20)
            got.append(msg)
            if msg.get("alarm") == "lvl.high" and msg.get("to_state") == "unack":
                break
        await ws.close()
    return got


def test_ack_over_the_api_stops_the_escalation(
        running: tuple[Plant, Api, TwilioStandIn]) -> None:
    p, api, standin = running
    write(p, "tank.level", 50.0)
    msgs = asyncio.run(_ws_sees_the_alarm_raised(api, p))
    raised = msgs[-1]
    assert raised["type"] == "alarm_event" and raised["to_state"] == "unack", msgs
    assert "put" not in raised and raised["seq"] > 0
    (sms,) = standin.wait_for(1, timeout=15)
    t_sms = time.monotonic()
    code = ack_code("lvl.high", 1)
    assert sms.form["To"] == ALICE
    assert sms.form["Body"] == f"[CRITICAL] Tank level 91 % (lvl.high #1) Reply ACK {code}"

    # a viewer may read but not acknowledge: 403, audited, nothing queued
    status, body = api.call("GET", "/alarms?state=unack", "viewer")
    assert status == 200 and [r["name"] for r in body["alarms"]] == ["lvl.high"]
    assert body["updated_ns"] > 0
    status, body = api.call("POST", "/alarms/ack", "viewer", {"alarms": ["lvl.high"]})
    assert status == 403 and "operator" in body["error"]
    refused = audit(p)[-1]
    assert (refused["user"], refused["action"], refused["outcome"]) == (
        "viewer", "alarm.ack", "refused")
    # bad input: a clear 4xx and no state change
    cases: list[tuple[dict[str, Any], int]] = [
        ({"alarms": ["lvl.high"], "reason": "r", "duration_s": 7200}, 422),
        ({"alarms": ["lvl.high"], "reason": "r", "duration_s": "NaN"}, 400),
        ({"alarms": ["lvl.high"], "reason": "r", "duration_s": 10, "oneshot": True}, 400),
        ({"alarms": ["nope"], "reason": "r", "duration_s": 10}, 404),
        ({"alarms": ["lvl.high"], "reason": "\x00", "duration_s": 10}, 400),
        ({"alarms": ["lvl.high"], "duration_s": 10}, 400)]
    for bad, want in cases:
        status, body = api.call("POST", "/alarms/shelve", "operator", bad)
        assert status == want, (bad, body)
    assert p.alarm("lvl.high")["state"] == "unack"

    # the operator acknowledges over HTTPS: level 2 never comes
    status, body = api.call("POST", "/alarms/ack", "operator",
                            {"alarms": ["lvl.high"], "comment": "on it"})
    assert status == 200 and body["ok"] and body["done"] == ["lvl.high"], body
    assert time.monotonic() - t_sms < L2_S, "the ack came too late to test the escalation"
    wait_until(lambda: p.alarm("lvl.high").get("state") == "acked",
               what="alarms.json (published at most twice a second)")
    assert p.alarm("lvl.high")["acked_by"] == "operator"
    time.sleep(max(0.0, L2_S + 2.0 - (time.monotonic() - t_sms)))
    assert [r.form["To"] for r in standin.snapshot()] == [ALICE]
    # one audit record for the ack, written by the alarm process (via api)
    acks = [r for r in audit(p) if r["action"] == "alarm.ack" and r["outcome"] == "ok"]
    assert len(acks) == 1 and acks[0]["user"] == "operator" and acks[0]["via"] == "api"
    assert acks[0]["request"] == body["id"]

    # the journal and metrics through the API
    status, ev = api.call("GET", "/alarms/events?alarm=lvl.high&after_seq=0&limit=1000",
                          "viewer")
    assert status == 200
    acked = [e for e in ev["events"] if e.get("to_state") == "acked"]
    assert acked and acked[0]["user"] == "operator" and acked[0]["via"] == "api"
    assert ev["next_seq"] >= acked[0]["seq"]
    status, again = api.call("GET", f"/alarms/events?after_seq={ev['next_seq']}&alarm=lvl.high",
                             "viewer")
    assert status == 200 and all(e["seq"] > ev["next_seq"] for e in again["events"])
    status, st = api.call("GET", "/alarms/status", "viewer")
    assert status == 200 and st["alarms"] == 2 and st["passes"] > 0
    # an engineer-only action is refused for the operator by the API (and audited)
    status, body = api.call("POST", "/alarms/out-of-service", "operator",
                            {"alarms": ["lvl.high"], "reason": "x"})
    assert status == 403 and "engineer" in body["error"]
    status, body = api.call("POST", "/alarms/ack", "operator", {"alarms": ["lvl.high"]})
    assert status == 409 and "acked" in body["error"] and body["id"]


def test_ack_by_sms_reply(running: tuple[Plant, Api, TwilioStandIn]) -> None:
    p, api, standin = running
    validator = RequestValidator(TOKEN)
    write(p, "tank.temp", 20.0)
    write(p, "tank.temp", 75.0)
    (sms,) = standin.wait_for(1, timeout=15)
    code = re.search(r"Reply ACK ([A-Z2-7]{6})$", sms.form["Body"])
    assert code and code.group(1) == ack_code("temp.high", 1)

    def signed(form: dict[str, str]) -> requests.Response:
        return api.sms(form, validator.compute_signature(PUBLIC_URL, form))

    form = {"From": ALICE, "To": "+15005550006", "Body": f" ack  {code.group(1).lower()} ",
            "MessageSid": "SM" + "0" * 32, "AccountSid": SID}
    # a forged request: 403 and nothing happens
    bad = api.sms(form, validator.compute_signature(PUBLIC_URL + "x", form))
    assert bad.status_code == 403
    unsigned = api.sms(form, "")
    assert unsigned.status_code == 403
    assert p.alarm("temp.high")["state"] == "unack"
    # an unknown number, properly signed: refused, audited, no reply
    stranger = {**form, "From": STRANGER}
    r = signed(stranger)
    assert r.status_code == 403 and "<Message>" not in r.text
    rec = audit(p)[-1]
    assert (rec["action"], rec["outcome"], rec["via"], rec["source"]) == (
        "alarm.ack", "refused", "sms", STRANGER)
    assert p.alarm("temp.high")["state"] == "unack"
    # a code that names no unacknowledged alarm: told so, nothing acknowledged
    r = signed({**form, "Body": "ACK AAAAAA"})
    assert r.status_code == 200 and "No unacknowledged alarm" in r.text
    # Alice's reply acknowledges as her user, via sms
    r = signed(form)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/xml")
    assert "<Message>Acknowledged temp.high #1.</Message>" in r.text
    wait_until(lambda: p.alarm("temp.high").get("state") == "acked", what="acked")
    assert p.alarm("temp.high")["acked_by"] == "operator"
    ok = [x for x in audit(p) if x["action"] == "alarm.ack" and x["outcome"] == "ok"]
    assert ok[-1]["via"] == "sms" and ok[-1]["source"] == ALICE
    assert ok[-1]["role"] == "operator"
    # the same reply again: nothing left to acknowledge (once the list says so)
    wait_until(lambda: "No unacknowledged alarm" in signed(form).text, what="list")
    r = signed(form)
    assert r.status_code == 200 and "No unacknowledged alarm" in r.text
    # a help text for anything else, escaped TwiML
    r = signed({**form, "Body": "<b>what & why</b>"})
    assert r.status_code == 200 and "<b>" not in r.text and "ACK" in r.text
