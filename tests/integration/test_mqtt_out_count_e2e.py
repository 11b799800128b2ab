"""Issue 10: MQTT out over a two-minute run, every message counted against the journal.

A real ``petra run`` polls a Modbus device every 50 ms (so most journal entries repeat
the value before them) while the test changes the device: values that change and
values set to what they already were, a value outside its signal's limits (BAD with
OUT_OF_RANGE, raw value kept), and device outages (BAD with NOT_CONNECTED; on a value
already OUT_OF_RANGE only the substatus changes) after which the device comes back
with its registers at zero. A subscriber on the real Mosquitto keeps every message.

Independently, the test follows the change journal through the public API, as any
outside program would (``Segment.attach`` + ``JournalConsumer``), and reduces it per
signal to its sequence of distinct (value, quality, substatus) states. The assertion is
exact: per signal, the states published after the start of the window are that
sequence, in order, nothing missing (0 lost) and nothing twice (0 duplicates); the only
repeats are the configured heartbeats of one signal, none early and none missing.

The run lasts ``PETRA_MQTT_COUNT_SECONDS`` (default 105 s of changes; about two
minutes with the start-up), part of the normal suite.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from driver_peers import ModbusServer, Mosquitto, wait_until
from test_run_e2e import Running, start, stop

from petra.shm import JournalConsumer, Segment
from petra.types import Quality, Substatus

RUN_S = float(os.environ.get("PETRA_MQTT_COUNT_SECONDS", "105"))
HEARTBEAT_S = 5.0
OUTAGE_EVERY_S = 25.0
OUTAGE_S = 2.5
QUIET_S = 3.0  # nothing changes on the device for this long before the count ends
HOLDING, COIL = 3, 1
FLOATS = [f"s{i}" for i in range(8)]
SIGNALS = [*FLOATS, "lim", "b", "const"]
ADDR = {**{n: i for i, n in enumerate(FLOATS)}, "lim": 8, "const": 9}

PLANT = """\
instance: {instance}
scan: {{period: 10ms, policy: other, wait: sleep}}
signals:
{signals}
  - {{name: lim, type: float, max: 100}}
  - {{name: b, type: bool}}
  - {{name: const, type: float}}
drivers:
  - kind: modbus_tcp
    name: plc
    host: 127.0.0.1
    port: {mb_port}
    poll_period_s: 0.05
    timeouts: {{connect_s: 1, request_s: 0.5}}
    points:
{points}
      - {{signal: lim, table: holding, address: 8}}
      - {{signal: const, table: holding, address: 9}}
      - {{signal: b, table: coil, address: 5}}
mqtt:
  broker: {{host: 127.0.0.1, port: {port}}}
  topic_prefix: "c"
  publish:
    - {{signals: ["s*", lim, b], qos: 1}}
    - {{signals: [const], qos: 1, heartbeat_s: {hb}}}
"""

State = tuple[Any, str, str]  # value, quality name, substatus name


@dataclass
class Subscriber:
    """Every message on c/#, with its arrival time (monotonic)."""

    client: Any
    messages: list[tuple[float, str, State]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        subscribed = threading.Event()
        self.client.on_message = self._on
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.subscribe("c/#", 1)
        assert subscribed.wait(10)

    def _on(self, client: Any, userdata: Any, msg: Any) -> None:
        if msg.topic == "c/status":
            return
        m = json.loads(msg.payload)
        with self.lock:
            self.messages.append((time.monotonic(), msg.topic[2:],
                                  (m["value"], m["quality"], m["substatus"])))

    def snapshot(self) -> list[tuple[float, str, State]]:
        with self.lock:
            return list(self.messages)


class JournalStates:
    """Follows the journal from outside and keeps each signal's distinct states.

    The journal entry has no substatus; for an entry that is not GOOD it is read from
    the slot (as every consumer does), which is exact while the slot still holds that
    entry's value and quality. Device events are seconds apart here, so when the slot
    has already moved on, the entry repeats the state before it (a poll) and keeps
    that state's substatus; such entries are counted in ``moved``."""

    def __init__(self, seg: Segment) -> None:
        self.seg = seg
        self.slots = {seg.index(n): n for n in SIGNALS}
        self.consumer = JournalConsumer(seg)
        self.consumer.resync()
        self.states: dict[str, list[State]] = {}
        for slot, name in self.slots.items():
            s = seg.read_index(slot)
            self.states[name] = [(s.value, s.quality.name, s.substatus.name)]
        self.entries = 0
        self.moved = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._follow, daemon=True)

    def _follow(self) -> None:
        while not self._stop.is_set():
            self.read()
            time.sleep(0.002)
        self.read()

    def read(self) -> None:
        while len(batch := self.consumer.read()) > 0:
            values = batch.decoded()
            for slot, q, v in zip(batch.slot.tolist(), batch.quality.tolist(), values,
                                  strict=True):
                name = self.slots.get(slot)
                if name is None:
                    continue
                self.entries += 1
                quality = Quality(q).name
                last = self.states[name][-1]
                if q == Quality.GOOD:
                    sub = Substatus.NONE.name
                else:
                    now = self.seg.read_index(slot)
                    if (now.value, now.quality) == (v, Quality(q)):
                        sub = now.substatus.name
                    else:
                        self.moved += 1
                        assert (v, quality) == last[:2], \
                            f"{name}: a state change already overwritten: {v!r} {quality}"
                        sub = last[2]
                state = (v, quality, sub)
                if state != last:
                    self.states[name].append(state)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(10)


@pytest.fixture
def running(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[tuple[Running, ModbusServer]]:
    srv = ModbusServer({1: 50})
    mb_port = srv.start()
    path = tmp_path / "plant.yaml"
    inst = f"mc{os.getpid()}"
    path.write_text(PLANT.format(
        instance=inst, mb_port=mb_port, port=mosquitto.port, hb=HEARTBEAT_S,
        signals="\n".join(f"  - {{name: {n}, type: float}}" for n in FLOATS),
        points="\n".join(f"      - {{signal: {n}, table: holding, address: {ADDR[n]}}}"
                         for n in FLOATS)))
    r = start(tmp_path, inst, path)
    try:
        yield r, srv
    finally:
        stop(r)
        srv.close()


def set_device(srv: ModbusServer, rng: random.Random, values: dict[str, int]) -> None:
    """One step of the schedule: mostly a new value, sometimes the same one again."""
    name = rng.choice([*FLOATS, "lim", "b"])
    if name == "b":
        srv.set(1, COIL, 5, [rng.random() < 0.5])
        return
    if name == "lim":
        new = rng.choice([40, 60, 200])  # 200 is beyond max: BAD, OUT_OF_RANGE
    else:
        new = values[name] if rng.random() < 0.3 else rng.randrange(0, 1000)
    values[name] = new
    srv.set(1, HOLDING, ADDR[name], [new])


def drive_device(srv: ModbusServer, t_start: float) -> tuple[int, int]:
    """The schedule: a device step every 0.1-0.4 s and an outage every
    ``OUTAGE_EVERY_S``, until ``QUIET_S`` before the end. Returns (steps, outages)."""
    rng = random.Random(10)
    values = {n: 0 for n in ADDR}
    values["const"] = 7
    steps = outages = 0
    next_outage = t_start + OUTAGE_EVERY_S / 2
    end_changes = t_start + RUN_S - QUIET_S
    while (now := time.monotonic()) < end_changes:
        if now >= next_outage and now + OUTAGE_S + 1 < end_changes:
            if outages % 2 == 0:  # BAD OUT_OF_RANGE -> BAD NOT_CONNECTED: substatus only
                values["lim"] = 200
                srv.set(1, HOLDING, ADDR["lim"], [200])
                time.sleep(0.5)
            srv.stop()
            time.sleep(OUTAGE_S)
            srv.start()  # a restarted device: registers back at zero
            outages += 1
            for name, v in values.items():
                if name != "const" and rng.random() < 0.5:
                    srv.set(1, HOLDING, ADDR[name], [v])
            srv.set(1, HOLDING, ADDR["const"], [values["const"]])
            next_outage = time.monotonic() + OUTAGE_EVERY_S
            continue
        set_device(srv, rng, values)
        steps += 1
        time.sleep(rng.uniform(0.1, 0.4))
    return steps, outages


def check_signal(name: str, msgs: list[tuple[float, State]], want: list[State],
                 t_start: float, t_end: float) -> tuple[int, int]:
    """One signal's messages against its journal states; returns (changes, heartbeats).
    ``want[0]`` is the state published last before the window."""
    last_at = before = max(at for at, _ in msgs if at <= t_start)
    seen = [want[0]]
    hb_gaps = []
    for at, state in msgs:
        if at <= t_start:
            continue
        if state == seen[-1]:
            assert name == "const", f"{name}: published twice: {state} at {at - t_start:.2f} s"
            hb_gaps.append(at - last_at)
        else:
            seen.append(state)
        last_at = at
    assert seen == want, (f"{name}: published states differ from the journal's\n"
                          f"published: {seen}\njournal:   {want}")
    if name == "const":
        # heartbeats: none early (that would be a duplicate), none missing (a long gap);
        # arrival times carry the delivery's jitter, hence the slack on a loaded box
        assert hb_gaps, "no heartbeat in the whole run"
        assert all(g >= HEARTBEAT_S - 1.0 for g in hb_gaps), hb_gaps
        times = [before] + [at for at, _ in msgs if at > t_start] + [t_end]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert max(gaps) < HEARTBEAT_S + 3.0, f"a heartbeat missing: gaps {gaps}"
    return len(seen) - 1, len(hb_gaps)


def test_mqtt_out_publishes_every_change_once_over_two_minutes(
        running: tuple[Running, ModbusServer], mosquitto: Mosquitto) -> None:
    r, srv = running
    sub = Subscriber(mosquitto.client())
    srv.set(1, HOLDING, ADDR["const"], [7])
    with Segment.attach(r.instance, readonly=True) as seg:
        wait_until(lambda: all(seg.read(n).quality == Quality.GOOD for n in SIGNALS)
                   and seg.read("const").value == 7.0
                   and {t for _, t, _ in sub.snapshot()} >= set(SIGNALS)
                   and sub.snapshot()[-1][0] < time.monotonic() - 1.0, timeout=30,
                   what="a settled plant: every signal GOOD and published, 1 s quiet")
        journal = JournalStates(seg)
        journal.start()
        t_start = time.monotonic()
        before = sub.snapshot()
        baseline = {n: [s for _, t, s in before if t == n][-1] for n in SIGNALS}
        assert baseline == {n: journal.states[n][0] for n in SIGNALS}, \
            "the last published states are the slots' states"
        steps, outages = drive_device(srv, t_start)
        time.sleep(max(0.0, t_start + RUN_S - time.monotonic()))
        t_end = time.monotonic()
        journal.stop()
        assert journal.consumer.lost == 0, "the test's own journal reader fell behind"
        # every state the journal holds has been published by now (QUIET_S of calm)
        got = [m for m in sub.snapshot() if m[0] <= t_end]

    changes = heartbeats = 0
    report = []
    for name in SIGNALS:
        c, h = check_signal(name, [(at, s) for at, t, s in got if t == name],
                            journal.states[name], t_start, t_end)
        changes += c
        heartbeats += h
        report.append(f"  {name:6} changes={c:4} heartbeats={h}")
    in_window = sum(1 for at, _, _ in got if at > t_start)
    expected = sum(len(journal.states[n]) - 1 for n in SIGNALS)
    print(f"\nmqtt-out count over {t_end - t_start:.0f} s: journal entries={journal.entries} "
          f"(unchanged polls {journal.entries - expected}), changes={expected}, "
          f"messages={in_window} (changes {changes} + heartbeats {heartbeats}), "
          f"device steps={steps}, outages={outages}, entries read after their slot "
          f"moved on={journal.moved}")
    print("\n".join(report))
    assert changes == expected
    assert in_window == expected + heartbeats, "a message neither a change nor a heartbeat"
    assert outages >= int(RUN_S // OUTAGE_EVERY_S) - 1
    lim = journal.states["lim"]
    assert any(a[:2] == b[:2] and a[2] != b[2] for a, b in itertools.pairwise(lim)), \
        f"no substatus-only change happened: {lim}"
    assert journal.entries > 3 * expected, "most polls repeat the value before them"
