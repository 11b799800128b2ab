"""Where alarm figures show: the petra-top sampler and header line, /metrics, and the
supervisor's child plan."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.registry import Collector

from petra.config import load_plant_text
from petra.shm import HeartbeatHandle, Segment, SignalDef, SignalType
from petra.supervisor import plan_children
from petra.supervisor._health import alarm_metrics
from petra.top import Sampler, render_text
from petra.top._columns import fmt_alarms
from petra.types import AlarmCounter, counter_schema


def test_sampler_and_header_show_the_alarm_counters() -> None:
    seg = Segment.create(f"almtop-{uuid.uuid4().hex[:8]}", [SignalDef("x", SignalType.FLOAT)])
    try:
        assert Sampler(seg).sample().alarms is None
        hb = HeartbeatHandle(seg, "sink:alarms", os.getpid())
        for c, v in ((AlarmCounter.ACTIVE, 3), (AlarmCounter.UNACKED, 2),
                     (AlarmCounter.HIDDEN, 1), (AlarmCounter.PER_10MIN, 14),
                     (AlarmCounter.STANDING, 1), (AlarmCounter.CHATTERING, 2)):
            hb.set_counter(c, v)
        snap = Sampler(seg).sample()
        assert snap.to_json()["alarms"] == {"active": 3, "unacked": 2, "hidden": 1,
                                            "per_10min": 14, "standing": 1, "chattering": 2}
        line = next(x for x in render_text(snap).splitlines() if x.startswith("Alarms"))
        assert line.endswith("3 active  2 unacked  1 hidden  14 in 10 min  1 standing  "
                             "2 chattering")
        assert fmt_alarms(None) == "-"
        assert counter_schema("sink:alarms") is AlarmCounter
        hb.release()
    finally:
        seg.close()
        seg.unlink()


class _One(Collector):
    def __init__(self, status: dict[str, object]) -> None:
        self.status = status

    def collect(self):  # type: ignore[no-untyped-def]
        yield from alarm_metrics(self.status)


def test_metrics_from_the_status_file() -> None:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_One({"active": 3, "unacked": 2, "hidden": 1, "standing": 0,
                       "per_10min": 12, "flood": True, "chattering": ["a", "b"],
                       "mtta_s": 42.5, "notifications": {"sent": 7, "failed": 1},
                       "pending_jobs": 2, "pass_ms_last": 1.5, "pass_ms_max": 9.0}))
    text = generate_latest(reg).decode()
    for line in ("petra_alarms_active 3.0", "petra_alarms_unacknowledged 2.0",
                 "petra_alarms_flood 1.0", "petra_alarms_chattering 2.0",
                 "petra_alarms_mean_time_to_ack_seconds 42.5",
                 'petra_alarm_notifications_total{outcome="failed"} 1.0',
                 'petra_alarm_notifications_total{outcome="sent"} 7.0',
                 'petra_alarms_evaluation_seconds{stat="max"} 0.009'):
        assert line in text, line
    assert list(alarm_metrics(None)) == []


def test_the_supervisor_plans_an_alarm_child(tmp_path: Path) -> None:
    text = "instance: p\nsignals: [{name: x, type: float}]\n"
    plant = load_plant_text(text)
    assert "sink:alarms" not in [c.role for c in plan_children(plant, "p", tmp_path, "info")]
    plant = load_plant_text(text + "alarms: {definitions: [{name: a, type: bad_quality, "
                                   "signal: x}]}\n")
    (child,) = [c for c in plan_children(plant, "p", tmp_path / "p.yaml", "info")
                if c.role == "sink:alarms"]
    assert child.argv[-7:] == ("alarms", "run", str(tmp_path / "p.yaml"), "--instance", "p",
                               "--log-level", "info")
    assert child.stop_order == 0
