"""MQTT alarm commands on a real Mosquitto with password auth, TLS and an ACL.

The broker lets each user publish alarm commands only on
``petra/<instance>/alarms/cmd/<its own name>`` (``pattern write ... %u``) and read
replies only below ``.../alarms/cmd/reply/<its own name>``; ``mqtt.commands.roles``
maps broker users to roles, as for signal commands. ``petra alarms run`` runs as its own
process. An operator acknowledges (answer on the MQTT 5 response topic with the
correlation data), a viewer and a user without a role are refused, malformed and
hostile payloads are answered with an error and leave the process working; every
request is in the event log and the audit log.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from driver_peers import Certs, Mosquitto, _chown_mosquitto, wait_until
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from petra.config import load_plant_text
from petra.security import plant_audit_log, verify_audit
from petra.shm import Segment

USERS = {"petra": "alarm-password-1", "alice": "alice-password", "bob": "bob-password",
         "mallory": "mallory-password"}

PLANT = """instance: {instance}
signals:
  - {{name: tank.level, type: float}}
mqtt:
  broker: {{host: 127.0.0.1, port: {port}, keepalive_s: 5, username: petra,
           password_file: {pw}, tls: {{ca_file: {ca}}}}}
  retry: {{initial_delay_s: 0.2, max_delay_s: 0.5}}
  commands: {{roles: {{alice: operator, bob: viewer}}}}
alarms:
  dir: {dir}
  period_s: 50ms
  definitions:
    - {{name: lvl.high, type: high, signal: tank.level, limit: 80, priority: high,
       area: tanks}}
    - {{name: lvl.low, type: low, signal: tank.level, limit: -10, area: tanks}}
"""


def _broker(certs: Certs) -> Mosquitto:
    broker = Mosquitto(users=USERS, certs=certs)
    acl = broker.dir / "acl"
    acl.write_text("pattern write petra/+/alarms/cmd/%u\n"
                   "pattern read petra/+/alarms/cmd/reply/%u/#\n"
                   "user petra\ntopic readwrite #\n")
    _chown_mosquitto(acl)
    broker.conf.write_text(broker.conf.read_text() + f"acl_file {acl}\n")
    broker.start()
    return broker


class Client:
    """An MQTT 5 client logged in as one broker user over TLS, collecting replies."""

    def __init__(self, broker: Mosquitto, certs: Certs, user: str, replies: str) -> None:
        self.lock = threading.Lock()
        self.replies: list[tuple[dict[str, Any], bytes | None]] = []
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                             client_id=f"{user}-{uuid.uuid4().hex[:6]}")
        self.c.username_pw_set(user, USERS[user])
        self.c.tls_set(ca_certs=str(certs.ca))
        ready = threading.Event()
        self.c.on_connect = lambda *a: ready.set()
        self.c.on_subscribe = lambda *a: ready.set()
        self.c.on_message = self._on
        self.c.connect("127.0.0.1", broker.port)
        self.c.loop_start()
        assert ready.wait(10)
        ready.clear()
        self.c.subscribe(replies, qos=1)
        assert ready.wait(10)

    def _on(self, client: Any, userdata: Any, msg: Any) -> None:
        corr = getattr(msg.properties, "CorrelationData", None)
        with self.lock:
            self.replies.append((json.loads(msg.payload), corr))

    def send(self, topic: str, payload: bytes | dict[str, Any], *,
             response_topic: str | None = None, correlation: bytes | None = None) -> str:
        rid = uuid.uuid4().hex
        data = payload if isinstance(payload, bytes) else json.dumps({**payload, "id": rid})
        props = None
        if response_topic is not None:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]  # paho
            props.ResponseTopic = response_topic
            if correlation is not None:
                props.CorrelationData = correlation
        self.c.publish(topic, data, qos=1, properties=props).wait_for_publish(5)
        return rid

    def answer(self, match: Any, what: str) -> tuple[dict[str, Any], bytes | None]:
        def got() -> tuple[dict[str, Any], bytes | None] | None:
            with self.lock:
                return next((r for r in self.replies if match(r)), None)
        found: tuple[dict[str, Any], bytes | None] = wait_until(got, 20, what)
        return found

    def by_id(self, rid: str) -> dict[str, Any]:
        return self.answer(lambda r: r[0].get("id") == rid, f"the reply to {rid}")[0]

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def _status(adir: Path) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = json.loads((adir / "status.json").read_text())
        return doc
    except (OSError, ValueError):
        return {}


def _state(adir: Path, alarm: str) -> str:
    try:
        doc = json.loads((adir / "alarms.json").read_text())
    except (OSError, ValueError):
        return "?"
    return next((a["state"] for a in doc["alarms"] if a["name"] == alarm), "normal")


def test_alarm_commands_under_broker_roles(tmp_path: Path, certs: Certs) -> None:
    instance = f"almcmd-{uuid.uuid4().hex[:8]}"
    broker = _broker(certs)
    pw = tmp_path / "petra.pw"
    pw.write_text(USERS["petra"])
    adir = tmp_path / "alarms"
    text = PLANT.format(instance=instance, port=broker.port, pw=pw, ca=certs.ca, dir=adir)
    path = tmp_path / "plant.yaml"
    path.write_text(text)
    seg = Segment.create(instance, load_plant_text(text).signal_defs())
    cmd = f"petra/{instance}/alarms/cmd"
    proc = subprocess.Popen([sys.executable, "-m", "petra", "alarms", "run", str(path),
                             "--instance", instance, "--log-level", "warning"],
                            stdin=subprocess.DEVNULL)
    clients: list[Client] = []
    try:
        wait_until(lambda: (_status(adir).get("mqtt") or {}).get("connected"), 30,
                   "the alarm manager's MQTT link")
        alice, bob, mallory = (Client(broker, certs, u, f"{cmd}/reply/{u}/#")
                               for u in ("alice", "bob", "mallory"))
        clients += [alice, bob, mallory]
        seg.write("tank.level", 95.0)
        wait_until(lambda: _state(adir, "lvl.high") == "unack", 15, "the alarm")

        # a viewer may not acknowledge: refused on its reply_to, nothing changes
        r = bob.by_id(bob.send(f"{cmd}/bob", {"op": "ack", "alarms": ["lvl.high"],
                                              "reply_to": f"{cmd}/reply/bob"}))
        assert not r["ok"] and "viewer" in r["error"] and "alarm.ack" in r["error"]
        assert r["request"]  # it went through the spool and the log
        # a broker user without a role, and the plain topic without a '*' role
        r = mallory.by_id(mallory.send(f"{cmd}/mallory", {
            "op": "ack", "all": True, "reply_to": f"{cmd}/reply/mallory"}))
        assert not r["ok"] and "no role" in r["error"]
        assert _state(adir, "lvl.high") == "unack"

        # an operator acknowledges over MQTT 5: response topic and correlation data
        rid = alice.send(f"{cmd}/alice", {"op": "ack", "alarms": ["lvl.high"]},
                         response_topic=f"{cmd}/reply/alice/x", correlation=b"\x00corr-1")
        r, corr = alice.answer(lambda m: m[0].get("id") == rid, "alice's ack")
        assert r["ok"] and r["done"] == ["lvl.high"] and corr == b"\x00corr-1"
        wait_until(lambda: _state(adir, "lvl.high") == "acked", 10, "acked")
        # a response topic outside the reply topics is refused (answered on the plain
        # reply topic, which only the service user reads; the event log has it)
        alice.send(f"{cmd}/alice", {"op": "ack", "all": True},
                   response_topic=f"petra/{instance}/elsewhere")

        _hostile(alice, cmd)
        # ... and the process still works: shelve, then unshelve
        r = alice.by_id(alice.send(f"{cmd}/alice", {
            "op": "shelve", "alarms": ["lvl.low"], "reason": "maintenance",
            "duration_s": 600, "reply_to": f"{cmd}/reply/alice"}))
        assert r["ok"] and r["done"] == ["lvl.low"]
        assert _state_eventually(adir, "lvl.low", "shelved")
        assert proc.poll() is None
        st = _status(adir)
        assert st["mqtt"]["command_errors"] == 0 and st["mqtt"]["commands_refused"] >= 10
    finally:
        for c in clients:
            c.close()
        proc.terminate()
        proc.wait(15)
        seg.close()
        seg.unlink()
        broker.remove()
    _check_logs(adir, instance)


def _state_eventually(adir: Path, alarm: str, state: str) -> bool:
    wait_until(lambda: _state(adir, alarm) == state, 10, f"{alarm} {state}")
    return True


def _hostile(alice: Client, cmd: str) -> None:
    """Hostile and malformed payloads: each answered with an error on its MQTT 5
    response topic, with its correlation data."""
    # hostile and malformed payloads: each answered with an error (on the default
    # reply topic, which alice cannot read: she gets them with response topics)
    bad: list[bytes] = [b"not json", b"\xff\xfe\x00", b"[" * 100_000, b"[1, 2]",
                        b'{"op": "ack", "alarms": ' + b"[" * 40 + b"]" * 40 + b"}",
                        b'{"op": "shelve", "alarms": ["lvl.high"], "reason": "x", '
                        b'"duration_s": 1e999999}',
                        b'{"op": "shelve", "alarms": ["lvl.high"], "reason": "x", '
                        b'"duration_s": NaN}',
                        b'{"op": "ack", "alarms": ["lvl.high"], "id": ' + b"9" * 60 + b"}",
                        b'{"op": "ack", "alarms": ["nope"]}',
                        b'{"op": "explode"}', b'{"op": "ack", "alarms": [1, 2]}',
                        b'{"op": "ack", "alarms": ["lvl.high"], "id": {"x": 1}}']
    for k, payload in enumerate(bad):
        alice.send(f"{cmd}/alice", payload, response_topic=f"{cmd}/reply/alice/bad",
                   correlation=f"bad-{k}".encode())
    for k in range(len(bad)):
        r, _ = alice.answer(lambda m, k=k: m[1] == f"bad-{k}".encode(), f"bad reply {k}")
        assert r["ok"] is False and r["error"], (k, r)


def _check_logs(adir: Path, instance: str) -> None:
    """Every request, allowed or refused, is in the event log and the audit chain."""
    events = [json.loads(line) for f in sorted(adir.glob("events*.jsonl"))
              for line in f.read_text().splitlines() if line.strip()]
    reqs = [e for e in events if e.get("event") == "request"]
    assert any(e.get("user") == "mqtt:alice" and e.get("via") == "mqtt" and e["ok"]
               and e.get("op") == "ack" for e in reqs)
    assert any(e.get("user") == "mqtt:mallory" and not e["ok"] for e in reqs)
    assert any(e.get("error", "").startswith("the response topic") for e in reqs)
    audit = plant_audit_log(None, None, instance)
    mine = [r for r in audit.read(0, 100_000) if r["instance"] == instance]
    acks = {(r["user"], r["role"], r["via"], r["outcome"]) for r in mine
            if r["action"] == "alarm.ack"}
    assert ("mqtt:alice", "operator", "mqtt", "ok") in acks
    assert ("mqtt:bob", "viewer", "mqtt", "refused") in acks
    assert any(r["user"] == "mqtt:mallory" and r["outcome"] == "refused" for r in mine)
    assert verify_audit(audit.path).ok
