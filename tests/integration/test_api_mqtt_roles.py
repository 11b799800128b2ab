"""MQTT commands under roles, on a real Mosquitto with password auth, TLS and an ACL.

The broker lets each user publish commands only on ``petra/<instance>/cmd/<its own
name>`` (Mosquitto's ``pattern write ... %u``); ``mqtt.commands.roles`` maps those
names to roles. An operator's set lands and is audited as ``mqtt:<user>`` with the
value before and after; a viewer may read but its set is refused (and audited); a
user with no role, the plain command topic without a ``'*'`` role, and one user
publishing under another's name change nothing.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from driver_peers import Certs, Mosquitto, _chown_mosquitto, driver_process, wait_until
from paho.mqtt.enums import CallbackAPIVersion

from petra.config import MqttConfig
from petra.security import plant_audit_log, verify_audit
from petra.shm import Segment, SignalDef, SignalType
from petra.types import ConnState

USERS = {"petra": "sink-password-1", "alice": "alice-password", "bob": "bob-password",
         "mallory": "mallory-password"}


def _broker(certs: Certs) -> Mosquitto:
    broker = Mosquitto(users=USERS, certs=certs)
    acl = broker.dir / "acl"
    acl.write_text("pattern write petra/+/cmd/%u\npattern read petra/+/cmd/reply/%u\n"
                   "user petra\ntopic readwrite #\n")
    _chown_mosquitto(acl)
    broker.conf.write_text(broker.conf.read_text() + f"acl_file {acl}\n")
    broker.start()
    return broker


class Client:
    """A paho client logged in as one broker user, over TLS, collecting its replies."""

    def __init__(self, broker: Mosquitto, certs: Certs, user: str, reply_topic: str) -> None:
        self.replies: list[dict[str, Any]] = []
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2,
                             client_id=f"{user}-{uuid.uuid4().hex[:6]}")
        self.c.username_pw_set(user, USERS[user])
        self.c.tls_set(ca_certs=str(certs.ca))
        ready = threading.Event()
        self.c.on_connect = lambda *a: ready.set()
        self.c.on_subscribe = lambda *a: ready.set()
        self.c.on_message = lambda c, u, m: self.replies.append(json.loads(m.payload))
        self.c.connect("127.0.0.1", broker.port)
        self.c.loop_start()
        assert ready.wait(10)
        ready.clear()
        self.c.subscribe(reply_topic, qos=1)
        assert ready.wait(10)

    def send(self, topic: str, req: dict[str, Any]) -> str:
        rid = uuid.uuid4().hex
        self.c.publish(topic, json.dumps({**req, "id": rid}), qos=1).wait_for_publish(5)
        return rid

    def answer(self, rid: str) -> dict[str, Any]:
        def got() -> dict[str, Any] | None:
            return next((r for r in self.replies if r.get("id") == rid), None)
        found: dict[str, Any] = wait_until(got, 15, f"the reply to {rid}")
        return found

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def test_commands_act_with_the_role_of_their_broker_user(tmp_path: Path, certs: Certs,
                                                         make_segment: Any) -> None:
    seg: Segment = make_segment([
        SignalDef("sp", SignalType.FLOAT, writable=True, minimum=0, maximum=10, initial=1.0),
        SignalDef("pv", SignalType.FLOAT, initial=3.5)])
    inst = seg.instance
    cmd = f"petra/{inst}/cmd"
    broker = _broker(certs)
    pw = tmp_path / "sink.pw"
    pw.write_text(USERS["petra"])
    cfg = MqttConfig.model_validate({
        "broker": {"port": broker.port, "username": "petra", "password_file": str(pw),
                   "tls": {"ca_file": str(certs.ca)}},
        "retry": {"initial_delay_s": 0.2, "max_delay_s": 0.5},
        "commands": {"roles": {"alice": "operator", "bob": "viewer"}}})
    clients: list[Client] = []
    try:
        with driver_process(cfg, seg) as sink:
            sink.wait_state(ConnState.UP)
            alice, bob, mallory = (Client(broker, certs, u, f"{cmd}/reply/{u}")
                                   for u in ("alice", "bob", "mallory"))
            clients += [alice, bob, mallory]

            def alice_sets(v: float) -> bool:
                alice.send(f"{cmd}/alice", {"op": "set", "signal": "sp", "value": v,
                                            "reply_to": f"{cmd}/reply/alice"})
                time.sleep(0.2)
                return bool(seg.get("sp") == v)
            wait_until(lambda: alice_sets(2.0), 20, "the sink to take alice's set")
            r = alice.answer(alice.send(f"{cmd}/alice", {"op": "set", "signal": "sp",
                                                         "value": 4.5,
                                                         "reply_to": f"{cmd}/reply/alice"}))
            assert r["ok"] and r["value"] == 4.5 and seg.get("sp") == 4.5

            r = bob.answer(bob.send(f"{cmd}/bob", {"op": "get", "signal": "pv",
                                                   "reply_to": f"{cmd}/reply/bob"}))
            assert r["ok"] and r["value"] == 3.5
            r = bob.answer(bob.send(f"{cmd}/bob", {"op": "set", "signal": "sp", "value": 9,
                                                   "reply_to": f"{cmd}/reply/bob"}))
            assert not r["ok"] and "viewer" in r["error"] and "signal.write" in r["error"]
            assert seg.get("sp") == 4.5

            r = mallory.answer(mallory.send(f"{cmd}/mallory", {
                "op": "get", "signal": "pv", "reply_to": f"{cmd}/reply/mallory"}))
            assert not r["ok"] and "no role" in r["error"]

            # bob under alice's name, and the plain topic: the broker drops the first
            # (ACL), the sink refuses the second (no '*' role); neither writes
            bob.send(f"{cmd}/alice", {"op": "set", "signal": "sp", "value": 7})
            bob.send(cmd, {"op": "set", "signal": "sp", "value": 8})
            alice.answer(alice.send(f"{cmd}/alice", {"op": "get", "signal": "sp",
                                                     "reply_to": f"{cmd}/reply/alice"}))
            time.sleep(0.5)
            assert seg.get("sp") == 4.5
    finally:
        for c in clients:
            c.close()
        broker.remove()
    audit = plant_audit_log(None, None, inst)
    mine = [r for r in audit.read(0, 100_000) if r["instance"] == inst]
    writes = [(r["user"], r["role"], r["via"], r["outcome"], r.get("after"))
              for r in mine if r["action"] == "signal.write"]
    assert ("mqtt:alice", "operator", "mqtt", "ok", 4.5) in writes
    assert ("mqtt:bob", "viewer", "mqtt", "refused", None) in writes
    assert not any(w[4] in (7, 8, 9) for w in writes)
    ok = next(r for r in mine if r["action"] == "signal.write" and r.get("after") == 4.5)
    assert ok["before"] == 2.0 and ok["target"] == "sp"
    assert verify_audit(audit.path).ok
