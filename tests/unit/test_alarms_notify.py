"""Notifications on a fake clock: escalation levels and rounds, on-call schedules in
time zones, quiet hours, rate limits, de-duplication, retries, and continuing after a
restart from the logged state."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from petra.alarms import Event, EventLog, Notifier
from petra.alarms._log import fold
from petra.alarms._schedule import in_window, quiet_until
from petra.config._alarms import NotificationsConfig

NS = 1_000_000_000
BERLIN = ZoneInfo("Europe/Berlin")


def at(text: str, tz: ZoneInfo = BERLIN) -> int:
    """``"2026-03-02 09:00"`` (local) -> ns."""
    return int(datetime.fromisoformat(text).replace(tzinfo=tz).timestamp() * NS)


def config(**over: Any) -> NotificationsConfig:
    doc: dict[str, Any] = {
        "twilio": {"account_sid": "AC" + "0" * 32, "auth_token_env": "T",
                   "from": "+15005550006"},
        "contacts": [
            {"name": "alice", "phone": "+491701111111", "timezone": "Europe/Berlin"},
            {"name": "bob", "phone": "+491702222222", "channel": "voice",
             "timezone": "Europe/Berlin",
             "on_call": [{"days": ["mon", "tue", "wed", "thu", "fri"],
                          "start": "08:00", "end": "18:00"}]},
            {"name": "carol", "phone": "+14155550100", "timezone": "America/New_York"},
        ],
        "policies": [
            {"name": "crit", "priorities": ["critical", "high"],
             "levels": [{"contacts": ["alice"]},
                        {"contacts": ["bob"], "after_s": "5min"},
                        {"contacts": ["carol"], "after_s": "15min"}]},
            {"name": "rest", "levels": [{"contacts": ["alice"], "after_s": 60}],
             "repeat_s": 600, "max_rounds": 2, "stop_on_return": True},
        ],
        "retry": {"attempts": 3, "initial_s": 2, "max_s": 5},
        "rate_limit": {"per_contact": 3, "total": 100, "window_s": 3600},
        "dedup_window_s": 600,
    }
    doc.update(over)
    return NotificationsConfig.model_validate(doc)


def raised(t: int, alarm: str = "tank.high", occ: int = 1, priority: str = "critical",
           frm: str = "normal") -> Event:
    return Event(time_ns=t, alarm=alarm, event="transition", trigger="activate",
                 from_state=frm, to_state="unack", priority=priority, occurrence=occ,
                 message="Tank level 93 %")


def moved(t: int, to: str, trigger: str, alarm: str = "tank.high", user: str = "") -> Event:
    return Event(time_ns=t, alarm=alarm, event="transition", trigger=trigger,
                 from_state="unack", to_state=to, user=user)


def send_all(n: Notifier, t: int, ok: bool = True, **kw: Any) -> list[tuple[str, str]]:
    jobs = n.take_ready(t, 100)
    for j in jobs:
        n.done(j.id, t, ok=ok, **kw)
    return [(j.contact, j.channel) for j in jobs]


def test_escalation_levels_until_acknowledged() -> None:
    n = Notifier(config(), instance="demo")
    t = at("2026-03-02 09:00")  # a Monday: bob is on call
    n.on_event(raised(t), True, t, equipment="T-1")
    n.tick(t)
    jobs = n.take_ready(t, 10)
    assert [(j.contact, j.to, j.text) for j in jobs] == [
        ("alice", "+491701111111", "[CRITICAL] Tank level 93 % (tank.high #1)")]
    n.done(jobs[0].id, t, ok=True, sid="SM1")
    n.tick(t + 299 * NS)
    assert n.take_ready(t + 299 * NS, 10) == []
    n.tick(t + 300 * NS)
    assert send_all(n, t + 300 * NS) == [("bob", "voice")]
    n.on_event(moved(t + 400 * NS, "acked", "ack", user="bob"), True, t + 400 * NS)
    n.tick(t + 900 * NS)
    assert n.take_ready(t + 900 * NS, 10) == [] and not n.escalations
    lines = n.drain()
    assert [x["status"] for x in lines] == [
        "escalation_started", "queued", "escalation_level", "sending", "sent",
        "queued", "escalation_level", "sending", "sent", "escalation_stopped"]
    assert lines[-1]["reason"] == "ack by bob"
    assert n.counters["sent"] == 2


def test_nobody_on_call_passes_to_the_next_level_at_once() -> None:
    n = Notifier(config())
    t = at("2026-03-07 09:00")  # Saturday: bob is off
    n.on_event(raised(t), True, t)
    n.tick(t)
    send_all(n, t)
    n.tick(t + 300 * NS)
    assert send_all(n, t + 300 * NS) == [("carol", "sms")]  # level 3 now, not at 15 min
    assert n.counters["off_call"] == 1


def test_rounds_repeat_and_stop_on_return() -> None:
    n = Notifier(config())
    t = at("2026-03-02 12:00")
    n.on_event(raised(t, priority="low"), True, t)
    n.tick(t + 60 * NS)
    assert send_all(n, t + 60 * NS) == [("alice", "sms")]
    n.tick(t + 660 * NS)  # round 2: the first level again 600 s after the last
    assert send_all(n, t + 660 * NS) == [("alice", "sms")]
    n.tick(t + 2000 * NS)
    assert not n.escalations  # max_rounds 2
    n.on_event(raised(t + 3000 * NS, priority="low", occ=2), True, t + 3000 * NS)
    n.on_event(moved(t + 3001 * NS, "rtn_unack", "clear"), True, t + 3001 * NS)
    assert not n.escalations  # stop_on_return


def test_quiet_hours_hold_low_priorities_in_the_contacts_zone() -> None:
    n = Notifier(config(quiet_hours={"start": "22:00", "end": "07:00",
                                     "priorities": ["low"]}))
    t = at("2026-03-02 23:30")
    n.on_event(raised(t, priority="low"), True, t)
    n.tick(t + 60 * NS)
    assert n.take_ready(t + 60 * NS, 10) == []
    job = next(iter(n.jobs.values()))
    assert job.due_ns == at("2026-03-03 07:00") and n.counters["quiet_deferred"] == 1
    assert send_all(n, at("2026-03-03 07:00")) == [("alice", "sms")]
    # critical is never held
    n.on_event(raised(t, alarm="b"), True, t)
    n.tick(t)
    assert send_all(n, t) == [("alice", "sms")]


def test_rate_limit_per_contact_waits_for_a_free_slot() -> None:
    n = Notifier(config(dedup_window_s=0))
    t = at("2026-03-02 10:00")
    for k in range(5):
        n.on_event(raised(t + k * NS, alarm=f"a{k}"), True, t + k * NS)
        n.tick(t + k * NS)
    assert len(send_all(n, t + 10 * NS)) == 3
    assert n.counters["rate_limited"] == 2
    waiting = sorted(j.due_ns for j in n.jobs.values())
    assert waiting == [t + 3610 * NS] * 2  # alice's first slot frees after the window
    assert send_all(n, t + 3609 * NS) == []
    assert len(send_all(n, t + 3610 * NS)) == 2


def test_dedup_a_flapping_alarm_texts_once_per_window() -> None:
    n = Notifier(config())
    t = at("2026-03-02 10:00")
    for occ in range(1, 4):
        n.on_event(raised(t, occ=occ), True, t)
        n.tick(t)
        send_all(n, t)
        n.on_event(moved(t + NS, "rtn_unack", "clear"), True, t + NS)
        n.on_event(Event(time_ns=t + 2 * NS, alarm="tank.high", event="transition",
                         trigger="ack", from_state="rtn_unack", to_state="normal"),
                   True, t + 2 * NS)
        t += 60 * NS
    assert n.counters["sent"] == 1 and n.counters["deduplicated"] == 2
    t += 600 * NS
    n.on_event(raised(t, occ=9), True, t)
    n.tick(t)
    assert send_all(n, t) == [("alice", "sms")]


def test_retries_with_backoff_then_a_counted_failure() -> None:
    n = Notifier(config())
    t = at("2026-03-02 10:00")
    n.on_event(raised(t), True, t)
    n.tick(t)
    (job,) = n.take_ready(t, 10)
    n.done(job.id, t, ok=False, error="HTTP 500", retryable=True)
    assert n.jobs[job.id].due_ns == t + 2 * NS
    assert n.take_ready(t + NS, 10) == []
    (job,) = n.take_ready(t + 2 * NS, 10)
    n.done(job.id, t + 2 * NS, ok=False, error="HTTP 503", retryable=True)
    assert n.jobs[job.id].due_ns == t + 6 * NS  # 4 s
    (job,) = n.take_ready(t + 6 * NS, 10)
    n.done(job.id, t + 6 * NS, ok=False, error="HTTP 500", retryable=True)
    assert job.id not in n.jobs and n.counters["failed"] == 1 and n.counters["retried"] == 2
    # a 400 does not get better by asking again
    n.on_event(raised(t, alarm="b"), True, t)
    n.tick(t)
    (job,) = n.take_ready(t, 10)
    n.done(job.id, t, ok=False, error="HTTP 400 code 21211", retryable=False)
    assert n.counters["failed"] == 2 and n.counters["retried"] == 2
    assert n.drain()[-1]["permanent"] is True


def test_restart_continues_from_the_logged_state(tmp_path: Any) -> None:
    cfg = config()
    n = Notifier(cfg)
    t = at("2026-03-02 09:00")
    n.on_event(raised(t), True, t)
    n.tick(t)
    (job,) = n.take_ready(t, 10)  # "sending" when the process dies
    log = EventLog(tmp_path)
    log.open()
    for doc in n.drain():
        log.append(doc)
    log.flush()
    log.close()
    rep = EventLog(tmp_path).open()
    again = Notifier(cfg)
    again.load(rep.state)
    (resent,) = again.take_ready(t + NS, 10)  # at least once: sent again
    assert resent.id == job.id and resent.attempts == 2
    again.done(resent.id, t + NS, ok=True)
    again.tick(t + 300 * NS)  # the escalation goes on to level 2 on time
    assert send_all(again, t + 300 * NS) == [("bob", "voice")]
    state: dict[str, dict[str, Any]] = {}
    for doc in again.drain():
        fold(state, doc.get("put"))
    assert "tank.high" in state["esc"]


@pytest.mark.parametrize(("when", "days", "start", "end", "inside"), [
    ("2026-03-02 08:00", ["mon"], "08:00", "18:00", True),
    ("2026-03-02 18:00", ["mon"], "08:00", "18:00", False),
    ("2026-03-02 23:00", ["mon"], "22:00", "06:00", True),
    ("2026-03-03 05:59", ["mon"], "22:00", "06:00", True),  # Tuesday, from Monday's window
    ("2026-03-03 23:00", ["mon"], "22:00", "06:00", False),
    ("2026-03-29 02:30", ["sun"], "00:00", "00:00", True),  # DST night: whole day
])
def test_windows(when: str, days: list[str], start: str, end: str, inside: bool) -> None:
    dt = datetime.fromisoformat(when).replace(tzinfo=BERLIN)
    assert in_window(dt, days, start, end) is inside


def test_quiet_until_across_a_dst_change() -> None:
    t = at("2026-03-28 23:00")  # the night clocks go forward in Berlin
    end = quiet_until(t, "Europe/Berlin", "22:00", "07:00")
    assert end == at("2026-03-29 07:00")
    assert (end - t) / NS == 7 * 3600  # 8 wall hours, 7 real ones
    assert quiet_until(at("2026-03-29 12:00"), "Europe/Berlin", "22:00", "07:00") is None
