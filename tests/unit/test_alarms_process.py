"""The alarm process against a real segment, on a fake clock, pass by pass: a crossing
becomes an event, a notification job and a state signal; a request from the spool is
checked and answered; a new process object on the same directory (a restart) carries
on where the old one stopped."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alarm_helpers import NS, FakeClock

from petra.alarms._process import AlarmProcess
from petra.alarms._twilio import SendError
from petra.config import load_plant_text
from petra.config._alarms import list_file, spool_dir, status_file
from petra.io import RequestSpool
from petra.security import AuditLog, verify_audit
from petra.shm import Segment
from petra.types import AlarmCounter, Quality

PLANT = """instance: {instance}
signals:
  - {{name: tank.level, type: float, unit: "%"}}
  - {{name: pump.stopped, type: bool}}
alarms:
  dir: {dir}
  state_signals: true
  definitions:
    - {{name: lvl.high, type: high, signal: tank.level, limit: 80, deadband: 2,
       priority: critical, area: tanks, message: "Level {{value:.0f}} %"}}
    - {{name: lvl.low, type: low, signal: tank.level, limit: 10, priority: low,
       suppress_when: pump.stopped}}
  notifications:
    twilio: {{account_sid: AC0123456789abcdef0123456789abcdef, auth_token_env: NOPE,
             from: "+15005550006"}}
    contacts:
      - {{name: alice, phone: "+491701111111"}}
      - {{name: bob, phone: "+491702222222", channel: voice}}
    policies:
      - {{name: all, levels: [{{contacts: [alice]}}, {{contacts: [bob], after_s: 60}}]}}
"""


class FakeSender:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []
        self.fail: SendError | None = None

    def send(self, channel: str, to: str, text: str) -> str:
        if self.fail is not None:
            raise self.fail
        self.sent.append((channel, to, text))
        return f"SM{len(self.sent)}"


class Rig:
    """A segment, a plant and process objects made on demand (a restart = a new one)."""

    def __init__(self, tmp: Path) -> None:
        self.dir = tmp / "alarms"
        self.instance = f"alm{uuid.uuid4().hex[:8]}"
        self.plant = load_plant_text(PLANT.format(instance=self.instance, dir=self.dir))
        self.seg = Segment.create(self.instance, self.plant.signal_defs())
        self.clock = FakeClock()
        self.sender = FakeSender()
        self.audit = AuditLog(tmp / "audit" / "audit.log", instance=self.instance)
        self.proc = self.start()

    def start(self) -> AlarmProcess:
        proc = AlarmProcess(self.plant.config, self.seg, self.dir, sender=self.sender,
                            audit=self.audit, clock=self.clock.monotonic,
                            wall_ns=self.clock.wall_ns)
        asyncio.run(proc._connect())
        return proc

    def step(self, seconds: float = 0.1) -> None:
        """Advance the clock, run one pass, run what it queued to send."""
        self.clock.advance(seconds)
        self.proc.run_pass()
        q = self.proc._send_q  # the sender task's queue: run it inline here
        while not q.empty():
            job = q.get_nowait()
            try:
                sid = self.sender.send(job.channel, job.to, job.text)
                self.proc._completions.append((job.id, self.clock.wall, True, "", False, sid))
            except SendError as exc:
                self.proc._completions.append((job.id, self.clock.wall, False, exc.text,
                                               exc.retryable, ""))

    def set(self, name: str, value: float | bool, quality: Quality = Quality.GOOD) -> None:
        self.seg.write(name, value, quality)

    def state(self, alarm: str) -> str:
        return self.proc.engine.records[self.proc.engine.by_name[alarm]].state.value

    def close(self) -> None:
        self.proc.elog.close()
        self.seg.close()
        self.seg.unlink()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    try:
        yield r
    finally:
        r.close()


def events(rig: Rig) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (rig.dir / "events.jsonl").read_text().splitlines()]


def test_crossing_to_sms_escalation_and_ack_through_the_spool(rig: Rig) -> None:
    rig.set("tank.level", 50.0)
    rig.step()
    assert rig.state("lvl.high") == "normal"
    rig.set("tank.level", 91.0)
    rig.step()
    assert rig.state("lvl.high") == "unack"
    assert rig.sender.sent == [("sms", "+491701111111", "[CRITICAL] Level 91 % (lvl.high #1)")]
    assert rig.seg.get("alarm.lvl.high.active") is True
    assert rig.seg.get("alarm.lvl.high.unacked") is True
    for _ in range(5):
        rig.step(12.0)  # 60 s later: level 2 (bob, voice)
    assert rig.sender.sent[-1][:2] == ("voice", "+491702222222")
    spool = RequestSpool(spool_dir(rig.dir))
    rid = spool.submit({"op": "ack", "alarms": ["lvl.high"], "user": "bob",
                        "role": "operator", "via": "cli"})
    rig.step()
    assert spool.result(rid) == {"ok": True, "done": ["lvl.high"], "id": rid}
    assert rig.state("lvl.high") == "acked"
    (rec,) = rig.audit.read()
    assert (rec["action"], rec["target"], rec["outcome"], rec["user"], rec["role"],
            rec["via"], rec["request"]) == ("alarm.ack", "lvl.high", "ok", "bob", "operator",
                                            "cli", rid)
    assert rig.seg.get("alarm.lvl.high.unacked") is False
    assert not rig.proc.notifier.escalations  # type: ignore[union-attr]
    docs = events(rig)
    kinds = [(d["event"], d.get("status") or d.get("trigger") or d.get("op")) for d in docs]
    req = kinds.index(("request", "ack"))
    assert kinds[req + 1] == ("transition", "ack")  # the request, then what it did
    ack = docs[req + 1]
    assert (ack["user"], ack["role"], ack["via"], ack["request"]) == (
        "bob", "operator", "cli", rid)
    listing = json.loads(list_file(rig.dir).read_text())
    row = next(r for r in listing["alarms"] if r["name"] == "lvl.high")
    assert row["state"] == "acked" and row["acked_by"] == "bob" and row["unit"] == "%"


def test_refusals_are_answered_and_logged(rig: Rig) -> None:
    spool = RequestSpool(spool_dir(rig.dir))
    a = spool.submit({"op": "oos", "alarms": ["lvl.high"], "user": "o", "role": "operator",
                      "reason": "maint"})
    b = spool.submit({"op": "ack", "alarms": ["nope"], "user": "o", "role": "operator"})
    c = spool.submit({"op": "ack", "user": "o"})
    spool.ensure()
    junk = "00000000000000000001-1-deadbeef"
    (spool.incoming / f"{junk}.json").write_text("][")
    rig.step()
    assert "needs the engineer role" in spool.result(a)["error"]  # type: ignore[index]
    assert "unknown alarm 'nope'" in spool.result(b)["error"]  # type: ignore[index]
    assert "unknown role" in spool.result(c)["error"]  # type: ignore[index]
    assert spool.result(junk)["error"].startswith("bad request: invalid JSON")  # type: ignore[index]
    refused = [d for d in events(rig) if d["event"] == "request"]
    assert [d["ok"] for d in refused] == [False] * 4
    assert rig.state("lvl.high") == "normal"
    # the audit chain has each of them, refused, with who and why
    records = rig.audit.read(after_seq=0, limit=100)
    assert [(r["action"], r["outcome"], r["user"]) for r in records] == [
        ("alarm.request", "refused", ""), ("alarm.service", "refused", "o"),
        ("alarm.ack", "refused", "o"), ("alarm.ack", "refused", "o")]
    assert "needs the engineer role" in records[1]["reason"]
    assert verify_audit(rig.audit.path).ok


def test_expired_request_is_not_applied(rig: Rig) -> None:
    rig.set("tank.level", 95.0)
    rig.step()
    spool = RequestSpool(spool_dir(rig.dir))
    old = f"{rig.clock.wall - 400 * NS:020d}-1-0000abcd"  # older than 300 s
    spool.submit({"op": "ack", "all": True, "user": "u", "role": "operator"}, request_id=old)
    rig.step()
    assert "expired" in spool.result(old)["error"]  # type: ignore[index]
    assert rig.state("lvl.high") == "unack"


def test_restart_keeps_states_escalations_and_answers(rig: Rig) -> None:
    rig.set("tank.level", 95.0)
    rig.step()
    assert len(rig.sender.sent) == 1
    spool = RequestSpool(spool_dir(rig.dir))
    rid = spool.submit({"op": "shelve", "alarms": ["lvl.low"], "user": "u",
                        "role": "operator", "reason": "sensor work", "duration_s": 600})
    rig.step()
    assert rig.state("lvl.low") == "shelved"
    # the result file is lost and the request is back in the queue (killed mid-answer)
    spool.result(rid)
    (spool.incoming / f"{rid}.json").write_text(json.dumps(
        {"op": "shelve", "alarms": ["lvl.low"], "user": "u", "role": "operator",
         "reason": "sensor work", "duration_s": 600}))
    rig.proc.elog.close()  # no snapshot, no goodbye: as after kill -9
    rig.proc = rig.start()
    assert rig.state("lvl.high") == "unack" and rig.state("lvl.low") == "shelved"
    rig.step()
    assert spool.result(rid) == {"ok": True, "done": ["lvl.low"], "id": rid}
    assert sum(1 for d in events(rig) if d.get("trigger") == "shelve") == 1  # not twice
    assert len(rig.sender.sent) == 1  # no duplicate of what was sent
    for _ in range(6):
        rig.step(10.0)  # the pending escalation fires on its time after the restart
    assert [s[0] for s in rig.sender.sent] == ["sms", "voice"]
    occurrences = [d["occurrence"] for d in events(rig) if d.get("to_state") == "unack"]
    assert occurrences == [1]  # restored as held: no clear and raise again


def test_twilio_failure_is_counted_and_evaluation_goes_on(rig: Rig) -> None:
    rig.sender.fail = SendError(True, "HTTP 500 code 20500: down", 500, 20500)
    rig.set("tank.level", 95.0)
    rig.step()
    for _ in range(30):
        rig.step(10.0)
    n = rig.proc.notifier
    assert n is not None and n.counters["failed"] >= 1 and n.counters["retried"] >= 3
    rig.set("tank.level", 5.0)
    rig.step()
    assert rig.state("lvl.high") == "rtn_unack" and rig.state("lvl.low") == "unack"


def test_design_suppression_and_status(rig: Rig) -> None:
    rig.set("pump.stopped", True)
    rig.set("tank.level", 5.0)
    rig.step()
    assert rig.state("lvl.low") == "suppressed"
    rig.set("pump.stopped", False)
    rig.step()
    assert rig.state("lvl.low") == "unack"
    rig.proc._publish_status()
    doc = json.loads(status_file(rig.dir).read_text())
    assert doc["unacked"] == 1 and doc["per_10min"] == 1 and doc["alarms"] == 2
    assert rig.proc.tm[AlarmCounter.UNACKED] == 1
    assert rig.proc.tm[AlarmCounter.JOURNAL_POSITION] > 0


def test_suppression_and_condition_ending_together_raise_nothing(rig: Rig) -> None:
    rig.set("pump.stopped", True)
    rig.set("tank.level", 5.0)
    rig.step()
    assert rig.state("lvl.low") == "suppressed"
    rig.set("pump.stopped", False)  # the pump runs again and the level is back, at once
    rig.set("tank.level", 50.0)
    rig.step()
    assert rig.state("lvl.low") == "normal"
    assert not [e for e in events(rig) if e.get("alarm") == "lvl.low"
                and e.get("to_state") == "unack"]


def test_cli_acts_through_the_spool_and_reads_the_files(
        rig: Rig, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from petra.cli import main

    plant = tmp_path / "plant.yaml"
    plant.write_text(PLANT.format(instance=rig.instance, dir=rig.dir))
    rig.set("tank.level", 95.0)
    rig.step()
    halt = threading.Event()

    def serve() -> None:  # the alarm process, pass after pass, while the CLI waits
        while not halt.is_set():
            rig.step(0.05)
            time.sleep(0.01)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        base = ["--instance", rig.instance, "--user", "carol"]
        assert main(["alarms", "shelve", str(plant), "lvl.high", "--reason", "sensor",
                     "--for", "10min", *base]) == 0
        assert capsys.readouterr().out == "shelve: lvl.high\n"
        assert main(["alarms", "comment", str(plant), "lvl.high", "sensor swapped",
                     *base]) == 0
        assert main(["alarms", "shelve", str(plant), "lvl.low", "--reason", "r", "--for",
                     "9h", *base]) == 1
        assert "at most 28800 s" in capsys.readouterr().err
        assert main(["alarms", "oos", str(plant), "lvl.low", "--reason", "maint",
                     *base]) == 0
        assert main(["alarms", "oos", str(plant), "lvl.low", "--return", *base]) == 0
        capsys.readouterr()
    finally:
        halt.set()
        t.join(5)
    rig.proc._write_list(rig.clock.wall)
    assert main(["alarms", "list", str(plant), "--all", "--instance", rig.instance]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^lvl\.high\s+shelved\s+critical\s+tanks", out, re.M), out
    assert re.search(r"^lvl\.low\s+normal\s+low", out, re.M), out
    assert main(["alarms", "events", str(plant), "--json", "--last", "0",
                 "--instance", rig.instance]) == 0
    docs = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    comment = next(d for d in docs if d["event"] == "comment")
    assert (comment["user"], comment["reason"], comment["via"]) == (
        "carol", "sensor swapped", "cli")
    assert all("put" not in d for d in docs)
    rig.proc._publish_status()
    assert main(["alarms", "status", str(plant), "--instance", rig.instance]) == 0
    assert json.loads(capsys.readouterr().out)["hidden"] == 1
    assert main(["alarms", "ack", str(plant), "--instance", rig.instance]) == 1
    assert "ack needs alarm names" in capsys.readouterr().err


def test_hostile_requests_are_refused_and_logged_without_breaking_the_pass(rig: Rig) -> None:
    spool = RequestSpool(spool_dir(rig.dir))
    spool.ensure()
    deep = "00000000000000000002-1-00000001"
    (spool.incoming / f"{deep}.json").write_text("[" * 30_000 + "]" * 30_000)
    nan = spool.submit({"op": "shelve", "alarms": ["lvl.high"], "user": "u",
                        "role": "operator", "reason": "r", "duration_s": 1.0})
    # NaN is not JSON: written by hand, as a hostile client would
    (spool.incoming / f"{nan}.json").write_text(
        '{"op": "shelve", "alarms": ["lvl.high"], "user": "u", "role": "operator", '
        '"reason": "r", "duration_s": NaN, "text": "' + "x" * 5000 + '"}')
    big = spool.submit({"op": "ack", "alarms": ["nope"] * 3000, "user": "u" * 5000,
                        "role": "operator"})
    rig.step()
    assert "nested deeper" in spool.result(deep)["error"]  # type: ignore[index]
    assert "duration_s must be" in spool.result(nan)["error"]  # type: ignore[index]
    assert "longer than" in spool.result(big)["error"]  # type: ignore[index]
    lines = [d for d in events(rig) if d["event"] == "request"]
    assert [d["ok"] for d in lines] == [False, False, False]
    assert lines[1]["duration_s"] == "nan" and len(lines[1]["text"]) == 512
    rig.set("tank.level", 95.0)
    rig.step()
    assert rig.state("lvl.high") == "unack"  # the passes go on


class HangingSender:
    """A Twilio that takes seconds to answer (an outage with long timeouts)."""

    def __init__(self) -> None:
        self.calls = 0

    def send(self, channel: str, to: str, text: str) -> str:
        self.calls += 1
        time.sleep(2.0)
        return "SM1"


def test_a_slow_disk_and_a_hanging_twilio_do_not_hold_up_evaluation(rig: Rig) -> None:
    """The real session loop on the real clock, a flapping level (events every pass):
    every event-log write takes 0.5 s and every send 2 s; passes still come every
    period, and a request is answered only once its lines are on disk."""
    adir = rig.dir.parent / "slow"
    sender = HangingSender()
    proc = AlarmProcess(rig.plant.config, rig.seg, adir, sender=sender, audit=rig.audit)
    writes: list[float] = []

    async def scenario() -> tuple[int, int, dict[str, Any] | None, bool]:
        await proc._connect()
        write = proc.elog.write_chunk

        def slow_write(chunk: Any) -> None:
            time.sleep(0.5)
            write(chunk)
            writes.append(time.monotonic())

        proc.elog.write_chunk = slow_write  # type: ignore[method-assign]
        stop = asyncio.Event()
        session = asyncio.create_task(proc._session(stop))
        sending = asyncio.create_task(proc._send_loop(stop))
        await asyncio.sleep(0.3)

        async def flap() -> None:
            high = True
            while not stop.is_set():
                rig.set("tank.level", 95.0 if high else 50.0)  # events, jobs
                high = not high
                await asyncio.sleep(0.1)

        flapping = asyncio.create_task(flap())
        await asyncio.sleep(0.5)
        spool = RequestSpool(spool_dir(adir))
        rid = await asyncio.to_thread(spool.submit, {
            "op": "comment", "alarms": ["lvl.high"], "text": "seen", "user": "alice",
            "role": "operator"})
        passes0 = proc.passes
        await asyncio.sleep(1.5)
        passes = proc.passes - passes0
        result = await asyncio.to_thread(spool.wait, rid, 10.0)
        on_disk = rid in (adir / "events.jsonl").read_text()
        stop.set()
        await session
        await sending
        await flapping
        await proc._close()
        return passes, len(writes), result, on_disk

    passes, n_writes, result, on_disk = asyncio.run(scenario())
    assert passes >= 8, passes  # ~15 at 0.1 s; the writes alone would allow 3
    assert result is not None and result["ok"] and on_disk
    assert sender.calls >= 1
    assert n_writes >= 2


def test_mqtt_commands_reach_the_spool_queue_and_retained_ones_are_ignored(
        tmp_path: Path) -> None:
    from types import SimpleNamespace

    instance = f"almq{uuid.uuid4().hex[:8]}"
    text = PLANT.format(instance=instance, dir=tmp_path / "a") + (
        "mqtt:\n  broker: {host: 127.0.0.1, port: 1}\n"
        "  commands: {roles: {alice: operator}}\n")
    plant = load_plant_text(text)
    seg = Segment.create(instance, plant.signal_defs())
    try:
        proc = AlarmProcess(plant.config, seg, tmp_path / "a")
        assert proc.commands is not None
        topic = f"petra/{instance}/alarms/cmd/alice"
        body = json.dumps({"op": "ack", "all": True}).encode()
        proc._on_command(SimpleNamespace(topic=topic, payload=body, retain=True,
                                         properties=None))
        assert proc._submit_q.empty() and not proc._refusals and proc.mqtt_retained == 1
        proc._on_command(SimpleNamespace(topic=topic, payload=body, retain=False,
                                         properties=None))
        _rid, prep = proc._submit_q.get_nowait()
        assert prep.body["user"] == "mqtt:alice" and prep.body["role"] == "operator"
        proc._on_command(SimpleNamespace(topic=f"petra/{instance}/alarms/cmd/reply",
                                         payload=body, retain=False, properties=None))
        assert proc._submit_q.empty() and proc.mqtt_commands == 1  # our own reply topic
    finally:
        seg.close()
        seg.unlink()
