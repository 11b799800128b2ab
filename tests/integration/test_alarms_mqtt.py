"""Alarm events and states on MQTT (a real Mosquitto): every event on the events topic,
each alarm's state retained, and all states published again after the broker comes
back without its retained messages."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

from driver_peers import Mosquitto, wait_until

from petra.config import load_plant_text
from petra.shm import Segment

PLANT = """instance: {instance}
signals:
  - {{name: tank.level, type: float}}
mqtt:
  broker: {{host: 127.0.0.1, port: {port}, keepalive_s: 5}}
  retry: {{initial_delay_s: 0.2, max_delay_s: 0.5}}
alarms:
  dir: {dir}
  period_s: 50ms
  definitions:
    - {{name: lvl.high, type: high, signal: tank.level, limit: 80, priority: high}}
    - {{name: lvl.low, type: low, signal: tank.level, limit: -10}}
"""


class Inbox:
    def __init__(self, broker: Mosquitto, topic: str) -> None:
        self.msgs: list[tuple[str, dict[str, Any], bool]] = []
        self.lock = threading.Lock()
        self.client = broker.client()
        self.client.on_message = self._on
        self.client.subscribe(topic, qos=1)

    def _on(self, client: Any, userdata: Any, msg: Any) -> None:
        with self.lock:
            self.msgs.append((msg.topic, json.loads(msg.payload), bool(msg.retain)))

    def get(self) -> list[tuple[str, dict[str, Any], bool]]:
        with self.lock:
            return list(self.msgs)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_events_and_retained_states(tmp_path: Path, mosquitto: Mosquitto) -> None:
    instance = f"almq-{uuid.uuid4().hex[:8]}"
    text = PLANT.format(instance=instance, port=mosquitto.port, dir=tmp_path / "alarms")
    path = tmp_path / "plant.yaml"
    path.write_text(text)
    seg = Segment.create(instance, load_plant_text(text).signal_defs())
    prefix = f"petra/{instance}/alarms"
    events = Inbox(mosquitto, f"{prefix}/events")
    proc = subprocess.Popen([sys.executable, "-m", "petra", "alarms", "run", str(path),
                             "--instance", instance, "--log-level", "warning"],
                            stdin=subprocess.DEVNULL)
    inboxes = [events]
    try:
        wait_until((tmp_path / "alarms" / "status.json").exists, 30, "the manager")
        wait_until(lambda: json.loads((tmp_path / "alarms" / "status.json").read_text())
                   ["mqtt"]["connected"], 30, "the MQTT link")
        seg.write("tank.level", 95.0)
        wait_until(lambda: any(m[1].get("to_state") == "unack" for m in events.get()), 15,
                   "the event")
        ev = next(m[1] for m in events.get() if m[1].get("to_state") == "unack")
        assert ev["alarm"] == "lvl.high" and ev["from_state"] == "normal"
        assert ev["trigger"] == "activate" and ev["occurrence"] == 1 and "put" not in ev
        states = Inbox(mosquitto, f"{prefix}/state/#")  # joins late: retained
        inboxes.append(states)
        wait_until(lambda: {m[0] for m in states.get()} >= {
            f"{prefix}/state/lvl.high", f"{prefix}/state/lvl.low"}, 15, "retained states")
        got = {m[0].rsplit("/", 1)[1]: m for m in states.get()}
        assert got["lvl.high"][1]["state"] == "unack" and got["lvl.high"][2] is True
        assert got["lvl.low"][1]["state"] == "normal"
        # the broker restarts without its retained messages: all states come back
        mosquitto.stop()
        mosquitto.start()
        wait_until(lambda: json.loads((tmp_path / "alarms" / "status.json").read_text())
                   ["mqtt"]["connected"], 30, "the link to come back")
        fresh = Inbox(mosquitto, f"{prefix}/state/#")
        inboxes.append(fresh)
        wait_until(lambda: {m[0] for m in fresh.get()} >= {
            f"{prefix}/state/lvl.high", f"{prefix}/state/lvl.low"}, 15, "states again")
        assert {m[1]["state"] for m in fresh.get() if m[0].endswith("lvl.high")} == {"unack"}
    finally:
        for box in inboxes:
            box.close()
        proc.terminate()
        proc.wait(15)
        seg.close()
        seg.unlink()
