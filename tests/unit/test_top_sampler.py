"""petra-top's sampler against a real segment made in the test.

The test plays the scan (``StatsWriter``), the processes (``HeartbeatHandle``) and the
writers; a fake clock, set relative to the timestamps the C core wrote, makes ages
and rates exact without sleeping.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from petra.errors import UnknownSignalError
from petra.shm import (
    HeartbeatHandle,
    ProcessState,
    Quality,
    Segment,
    SignalDef,
    SignalType,
    StatsWriter,
    Substatus,
    add_restart,
    read_heartbeats,
)
from petra.top import SINK_CURSOR_COUNTER, InstanceSource, Sampler, SignalMeta, Snapshot

MS = 1_000_000


@dataclass
class FakeClock:
    mono: int
    real: int

    def monotonic_ns(self) -> int:
        return self.mono

    def time_ns(self) -> int:
        return self.real

    def advance(self, ns: int) -> None:
        self.mono += ns
        self.real += ns


@pytest.fixture
def seg() -> Iterator[Segment]:
    s = Segment.create(f"toptest-{uuid.uuid4().hex[:8]}", [
        SignalDef("tank.level", SignalType.FLOAT, unit="m", owner="scan"),
        SignalDef("pump.run", SignalType.BOOL, owner="scan"),
        SignalDef("pump.starts", SignalType.INT, owner="driver:plc"),
        SignalDef("setpoint", SignalType.FLOAT, unit="m", writable=True, initial=2.5),
    ], journal_capacity=1 << 10, heartbeats=8)
    try:
        yield s
    finally:
        s.unlink()
        s.close()


def clock_for(seg: Segment) -> FakeClock:
    return FakeClock(mono=time.monotonic_ns(), real=seg.info().created_ns + 10 * MS)


def record(stats: StatsWriter, n: int, wake_ns: int, exec_ns: int = 3000) -> None:
    for _ in range(n):
        stats.record(wake_ns, exec_ns)


def test_scan_stats_and_percentiles(seg: Segment) -> None:
    stats = StatsWriter(seg, 1 * MS)
    # Counts chosen so no percentile's rank sits exactly on a bucket boundary.
    record(stats, 9100, 5_500, 2_000)
    record(stats, 750, 50_500, 4_000)
    record(stats, 145, 200_500, 8_000)
    record(stats, 4, 1_500_000, 8_000)
    stats.record(2_000_000, 400_000, overruns=1, skipped=1)
    snap = Sampler(seg, clock=clock_for(seg)).sample()
    sc = snap.scan
    assert sc.period_us == 1000.0
    assert sc.cycles == 10_000
    assert sc.overruns == 1
    assert sc.skipped == 1
    # Each percentile is the upper edge of its log-scale histogram bucket.
    assert (sc.wake_p50_us, sc.wake_p90_us, sc.wake_p99_us, sc.wake_p999_us) == (
        5.632, 5.632, 204.8, 204.8)
    assert sc.wake_max_us == 2000.0
    assert sc.exec_last_us == 400.0
    assert sc.exec_max_us == 400.0
    assert sc.exec_avg_us == pytest.approx((9100 * 2 + 750 * 4 + 149 * 8 + 400) / 10_000)
    assert sc.cycles_per_s is None  # a rate needs two samples
    out = snap.to_json()["scan"]
    assert out["wake_us"] == {"p50": 5.632, "p90": 5.632, "p99": 204.8, "p999": 204.8,
                              "avg": pytest.approx(sc.wake_avg_us), "last": 2000.0,
                              "max": 2000.0}
    assert out["exec_us"]["max"] == 400.0


def test_overflow_percentile_is_null_in_json(seg: Segment) -> None:
    stats = StatsWriter(seg, 1 * MS)
    record(stats, 10, 20_000_000_000)  # 20 s: beyond the histogram's 17.2 s
    snap = Sampler(seg, clock=clock_for(seg)).sample()
    assert snap.scan.wake_p50_us == float("inf")
    text = json.dumps(snap.to_json(), allow_nan=False)
    assert json.loads(text)["scan"]["wake_us"]["p50"] is None


def test_rates_history_and_stats_restart(seg: Segment) -> None:
    clock = clock_for(seg)
    sampler = Sampler(seg, clock=clock, history=4)
    first = sampler.sample()
    assert first.scan.history == ()  # the scan has not started
    assert first.journal.rate_per_s is None
    stats = StatsWriter(seg, 1 * MS)
    record(stats, 100, 5_200)
    for i in range(10):
        seg.write("tank.level", float(i))
    clock.advance(500 * MS)
    snap = sampler.sample()
    assert snap.scan.history == (5.376,)
    assert snap.scan.cycles_per_s == pytest.approx(200.0)
    assert snap.journal.rate_per_s == pytest.approx(20.0)
    record(stats, 500, 80_900)
    clock.advance(500 * MS)
    snap = sampler.sample()
    assert snap.scan.history == (5.376, 81.92)  # the interval's p99, not the whole run's
    assert snap.scan.wake_p99_us == 81.92
    assert snap.scan.cycles_per_s == pytest.approx(1000.0)
    assert snap.journal.rate_per_s == 0.0
    clock.advance(500 * MS)
    assert sampler.sample().scan.history == (5.376, 81.92, 0.0)  # no cycles in between
    stats = StatsWriter(seg, 2 * MS)  # the scan restarted: counters start again
    record(stats, 3, 10_100)
    clock.advance(500 * MS)
    snap = sampler.sample()
    assert snap.scan.cycles == 3
    assert snap.scan.period_us == 2000.0
    assert snap.scan.cycles_per_s is None
    assert snap.scan.history == (5.376, 81.92, 0.0, 10.24)  # the new run's p99
    clock.advance(500 * MS)
    assert sampler.sample().scan.history == (81.92, 0.0, 10.24, 0.0)  # bounded length


def test_signals_values_quality_age(seg: Segment) -> None:
    clock = clock_for(seg)
    t0 = clock.real
    seg.write("tank.level", 1.25, source_ts_ns=t0 - 1500 * MS)
    seg.write("pump.run", True, quality=Quality.UNCERTAIN, source_ts_ns=t0 - 20 * MS)
    seg.write("pump.starts", -7, quality=Quality.BAD, source_ts_ns=t0, substatus=2)
    snap = Sampler(seg, clock=clock).sample()
    by_name = {s.name: s for s in snap.signals}
    assert [s.name for s in snap.signals] == ["tank.level", "pump.run", "pump.starts",
                                              "setpoint"]
    lvl = by_name["tank.level"]
    assert (lvl.value, lvl.quality, lvl.unit, lvl.type, lvl.owner) == (
        1.25, "good", "m", "float", "scan")
    assert lvl.age_ms == pytest.approx(1500.0)
    assert by_name["pump.run"].value is True
    assert by_name["pump.run"].quality == "uncertain"
    assert by_name["pump.run"].age_ms == pytest.approx(20.0)
    assert by_name["pump.starts"].value == -7
    assert by_name["pump.starts"].quality == "bad"
    assert by_name["pump.starts"].substatus == "not_connected"  # read from the slot
    assert by_name["setpoint"].value == 2.5
    js = snap.to_json()["signals"]
    assert js["tank.level"] == {"value": 1.25, "quality": "good", "substatus": "none",
                                "age_ms": pytest.approx(1500.0),
                                "unit": "m", "type": "float", "owner": "scan",
                                "writable": False}
    assert js["setpoint"]["writable"] is True
    seg.write("tank.level", float("nan"))
    assert json.loads(json.dumps(Sampler(seg, clock=clock).sample().to_json(),
                                 allow_nan=False))["signals"]["tank.level"]["value"] is None


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=30)
    return child.pid


def test_processes(seg: Segment) -> None:
    clock = clock_for(seg)
    scan = HeartbeatHandle(seg, "scan", os.getpid(), cpu=1)
    scan.beat(ProcessState.RUNNING)
    drv = HeartbeatHandle(seg, "driver:plc", _dead_pid(), cpu=0)
    drv.beat(ProcessState.DEGRADED)
    drv.set_counter(0, 3)
    drv.set_counter(2, 99)
    add_restart(seg, drv.record)
    add_restart(seg, drv.record)
    beats = {hb.role: hb for hb in read_heartbeats(seg)}
    clock.mono = beats["scan"].last_beat_ns + 250 * MS
    sampler = Sampler(seg, clock=clock)
    snap = sampler.sample()
    procs = {p.role: p for p in snap.processes}
    me = procs["scan"]
    assert (me.pid, me.state, me.cpu, me.alive, me.restarts) == (os.getpid(), "running", 1,
                                                                  True, 0)
    assert me.heartbeat_age_ms == pytest.approx(250.0)
    assert me.rss_bytes is not None and me.rss_bytes > 1 << 20
    assert me.cpu_percent is None  # psutil needs a previous call
    gone = procs["driver:plc"]
    assert (gone.alive, gone.state, gone.restarts, gone.cpu_percent, gone.rss_bytes) == (
        False, "degraded", 2, None, None)
    assert gone.counters[:3] == (3, 0, 99)
    clock.advance(100 * MS)
    again = {p.role: p for p in sampler.sample().processes}
    assert again["scan"].cpu_percent is not None and again["scan"].cpu_percent >= 0.0
    rows = Sampler(seg, clock=clock).sample().to_json()["processes"]
    assert {r["role"] for r in rows} == {"scan", "driver:plc"}
    assert set(rows[0]) >= {"role", "pid", "state", "restarts", "cpu_percent", "rss_bytes",
                            "heartbeat_age_ms"}
    scan.release()
    assert [p.role for p in Sampler(seg, clock=clock).sample().processes] == ["driver:plc"]


def test_failed_children_show_with_the_supervisors_reason(seg: Segment) -> None:
    """A child left FAILED has no heartbeat; the supervisor's reason makes it a row (and
    the state file is read again only after FAILED_REFRESH_S)."""
    clock = clock_for(seg)
    scan = HeartbeatHandle(seg, "scan", os.getpid(), cpu=1)
    scan.beat(ProcessState.RUNNING)
    told = {"driver:plc": "never became ready (3 starts in a row); last: exit status 1",
            "scan": "a stale entry for a role that runs again"}
    reads: list[int] = []

    def failed() -> dict[str, str]:
        reads.append(1)
        return dict(told)

    sampler = Sampler(seg, clock=clock, failed=failed)
    snap = sampler.sample()
    procs = {p.role: p for p in snap.processes}
    assert procs["scan"].state == "running" and procs["scan"].why == ""
    row = procs["driver:plc"]
    assert (row.state, row.record, row.why) == ("failed", -1, told["driver:plc"])
    out = json.loads(json.dumps(snap.to_json(), allow_nan=False))  # strict JSON
    (j,) = [r for r in out["processes"] if r["role"] == "driver:plc"]
    assert (j["state"], j["why"], j["heartbeat_age_ms"]) == ("failed", told["driver:plc"],
                                                              None)
    told.clear()
    clock.advance(500 * MS)
    assert "driver:plc" in {p.role for p in sampler.sample().processes}  # not re-read yet
    clock.advance(600 * MS)
    assert [p.role for p in sampler.sample().processes] == ["scan"]
    assert len(reads) == 2
    scan.release()


def test_consumer_lag_from_sink_heartbeat(seg: Segment) -> None:
    for i in range(30):
        seg.write("pump.starts", i)
    head = seg.info().journal_head
    sink = HeartbeatHandle(seg, "sink:mqtt", os.getpid())
    sink.set_counter(SINK_CURSOR_COUNTER, head - 5)
    HeartbeatHandle(seg, "driver:x", os.getpid()).set_counter(SINK_CURSOR_COUNTER, 1)
    snap: Snapshot = Sampler(seg, clock=clock_for(seg)).sample()
    assert snap.journal.head == head
    assert [(c.role, c.lag) for c in snap.journal.consumers] == [("sink:mqtt", 5)]
    j = snap.to_json()["journal"]
    assert j["lag"] == 5
    assert j["capacity"] == 1 << 10


def test_attach_read_only_by_name(seg: Segment) -> None:
    seg.write("tank.level", 3.5)
    with Sampler.attach(seg.instance) as sampler:
        assert sampler.segment.readonly
        snap = sampler.sample()
    assert snap.instance == seg.instance
    assert {s.name: s.value for s in snap.signals}["tank.level"] == 3.5
    assert snap.uptime_s >= 0.0


def test_empty_segment() -> None:
    s = Segment.create(f"toptest-{uuid.uuid4().hex[:8]}", [], heartbeats=1)
    try:
        snap = Sampler(s).sample()
        assert snap.signals == ()
        assert snap.processes == ()
        assert snap.scan.cycles == 0
        json.dumps(snap.to_json(), allow_nan=False)
    finally:
        s.unlink()
        s.close()


def test_cpu_affinity_from_the_os(seg: Segment) -> None:
    HeartbeatHandle(seg, "scan", os.getpid(), cpu=0).beat(ProcessState.RUNNING)
    HeartbeatHandle(seg, "driver:plc", _dead_pid(), cpu=0).beat(ProcessState.RUNNING)
    procs = {p.role: p for p in Sampler(seg, clock=clock_for(seg)).sample().processes}
    mine = tuple(sorted(os.sched_getaffinity(0)))
    assert procs["scan"].affinity == mine
    assert procs["scan"].pinned == (len(mine) < (os.cpu_count() or 1))
    assert procs["driver:plc"].affinity is None and procs["driver:plc"].pinned is None
    if len(mine) > 1:  # pin a child to one CPU: the column must say which
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            os.sched_setaffinity(child.pid, {mine[-1]})
            HeartbeatHandle(seg, "sink:x", child.pid).beat(ProcessState.RUNNING)
            procs = {p.role: p for p in Sampler(seg, clock=clock_for(seg)).sample().processes}
            assert procs["sink:x"].affinity == (mine[-1],) and procs["sink:x"].pinned
            assert procs["sink:x"].to_json()["affinity"] == [mine[-1]]
        finally:
            child.kill()
            child.wait()


def test_detail_reads_one_slot_in_full(seg: Segment) -> None:
    clock = clock_for(seg)
    drv = HeartbeatHandle(seg, "driver:plc", os.getpid())
    drv.beat(ProcessState.RUNNING)
    seg.write("pump.starts", 7, quality=Quality.BAD, substatus=Substatus.NOT_CONNECTED,
              source_ts_ns=clock.real - 2000 * MS)
    meta = {"setpoint": SignalMeta(description="Level setpoint", minimum=0.0, maximum=5.0)}
    sampler = Sampler(seg, clock=clock, meta=meta)
    d = sampler.detail("pump.starts")
    assert (d.name, d.type, d.owner, d.writable) == ("pump.starts", "int", "driver:plc", False)
    assert (d.value, d.quality, d.substatus) == (7, "bad", "not_connected")
    assert d.source_age_ms == pytest.approx(2000.0)
    assert d.writer_pid == os.getpid() and d.writer_role == "driver:plc"
    sp = sampler.detail("setpoint")
    assert sp.writable and sp.description == "Level setpoint"
    assert (sp.minimum, sp.maximum) == (0.0, 5.0)
    assert sp.to_json()["min"] == 0.0
    drv.release()
    # no heartbeat names the pid any more: it is this test process itself
    assert sampler.detail("pump.starts").writer_role == "this process"
    # written by a process that has exited (a `petra write`): its pid, no role
    code = ("import os, sys; from petra.shm import Segment\n"
            "with Segment.attach(sys.argv[1]) as s: s.write('pump.starts', 8)\n"
            "print(os.getpid())")
    other = subprocess.run([sys.executable, "-c", code, seg.instance],
                           capture_output=True, text=True, check=True, timeout=60)
    gone = sampler.detail("pump.starts")
    assert (gone.value, gone.writer_pid, gone.writer_role) == (8, int(other.stdout), None)
    with pytest.raises(UnknownSignalError):
        sampler.detail("nope")


def test_source_follows_a_restarted_instance() -> None:
    name = f"toptest-{uuid.uuid4().hex[:8]}"
    first = Segment.create(name, [SignalDef("a", SignalType.FLOAT)], heartbeats=2)
    second: Segment | None = None
    try:
        first.write("a", 1.0)
        source = InstanceSource(name)
        assert source.present()
        assert source.sample().signals[0].value == 1.0
        first.unlink()  # the instance stopped: the old mapping stays readable
        assert not source.present()
        assert source.sample().signals[0].value == 1.0
        assert source.reattached == 0
        second = Segment.create(name, [SignalDef("a", SignalType.FLOAT),
                                       SignalDef("b", SignalType.BOOL)], heartbeats=2)
        second.write("a", 2.0)
        snap = source.sample()  # the new instance, followed
        assert source.reattached == 1 and source.present()
        assert [(s.name, s.value) for s in snap.signals] == [("a", 2.0), ("b", False)]
        assert source.detail("b").type == "bool"
        source.close()
    finally:
        first.close()
        if second is not None:
            second.unlink()
            second.close()
