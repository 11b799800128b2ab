"""Issue 10, warm restart and retain, end to end through ``petra run``.

One plant holds every stateful built-in. The test drives its inputs as an operator
would (writes to the segment), reads its outputs as an outsider (``Segment.attach``
read-only), then:

1. kills the scan child with SIGKILL: the supervisor's restart resumes every block
   from the retain area (timers keep their elapsed time, counters their count,
   latches, the PID integral, ramps, lags, averages, generators, the tank, the delay
   line and the edge detectors their memory) from its first cycles on;
2. kills every process and removes both shared-memory objects (a power loss): the
   next start restores the ``retain: true`` blocks from the retain file.

Each block is wired so that a cold start would be visible: a value that would fall
back to zero or jump to its input, or a latch that a spurious first-scan edge (or a
DELAY's initial value) would set.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from driver_peers import wait_until
from test_run_e2e import Running, start, stop

from petra.shm import (
    JournalConsumer,
    Segment,
    read_heartbeats,
    unlink_instance,
    unlink_retain,
)

PLANT = """\
instance: {instance}
scan: {{period: 10ms, policy: other, wait: sleep}}
retain: {{all: true, interval: 0.3s, dir: {dir}}}
signals:
  - {{name: run, type: bool, writable: true}}
  - {{name: tof.in, type: bool, writable: true}}
  - {{name: tp.in, type: bool, writable: true}}
  - {{name: cu, type: bool, writable: true}}
  - {{name: cd, type: bool, writable: true}}
  - {{name: ld, type: bool, writable: true}}
  - {{name: s, type: bool, writable: true}}
  - {{name: rclk, type: bool, writable: true}}
  - {{name: fclk, type: bool, writable: true}}
  - {{name: clear, type: bool, writable: true}}
  - {{name: h, type: float, writable: true}}
  - {{name: x, type: float, writable: true}}
  - {{name: a, type: float, writable: true}}
  - {{name: sp, type: float, writable: true}}
  - {{name: ton.et, type: float}}
  - {{name: tof.q, type: bool}}
  - {{name: tof.et, type: float}}
  - {{name: tp.q, type: bool}}
  - {{name: tp.et, type: float}}
  - {{name: ctu.cv, type: int}}
  - {{name: ctd.cv, type: int}}
  - {{name: ctud.cv, type: int}}
  - {{name: sr.q, type: bool}}
  - {{name: rs.q, type: bool}}
  - {{name: rtrig.q, type: bool}}
  - {{name: ftrig.q, type: bool}}
  - {{name: rtrig.latch, type: bool}}
  - {{name: ftrig.latch, type: bool}}
  - {{name: delay.out, type: float}}
  - {{name: delay.glitch, type: bool}}
  - {{name: delay.latch, type: bool}}
  - {{name: pid.out, type: float}}
  - {{name: ramp.out, type: float}}
  - {{name: lag.out, type: float}}
  - {{name: hyst.q, type: bool}}
  - {{name: avg.out, type: float}}
  - {{name: gen.out, type: float}}
  - {{name: tank.level, type: float}}
blocks:
  - {{name: ton, type: TON, inputs: {{in: run}}, outputs: {{et: ton.et}}, params: {{pt: 1000s}}}}
  - {{name: tof, type: TOF, inputs: {{in: tof.in}}, outputs: {{q: tof.q, et: tof.et}},
     params: {{pt: 1000s}}}}
  - {{name: tp, type: TP, inputs: {{in: tp.in}}, outputs: {{q: tp.q, et: tp.et}},
     params: {{pt: 1000s}}}}
  - {{name: ctu, type: CTU, inputs: {{cu: cu}}, outputs: {{cv: ctu.cv}}, params: {{pv: 100}}}}
  - {{name: ctd, type: CTD, inputs: {{cd: cd, ld: ld}}, outputs: {{cv: ctd.cv}},
     params: {{pv: 10}}}}
  - {{name: ctud, type: CTUD, inputs: {{cu: cu, cd: cd}}, outputs: {{cv: ctud.cv}},
     params: {{pv: 100}}}}
  - {{name: sr, type: SR, inputs: {{s1: s, r: false}}, outputs: {{q1: sr.q}}}}
  - {{name: rs, type: RS, inputs: {{s: s, r1: false}}, outputs: {{q1: rs.q}}}}
  - {{name: rtrig, type: R_TRIG, inputs: {{clk: rclk}}, outputs: {{q: rtrig.q}}}}
  - {{name: ftrig, type: F_TRIG, inputs: {{clk: fclk}}, outputs: {{q: ftrig.q}}}}
  - {{name: rlatch, type: RS, inputs: {{s: rtrig.q, r1: clear}}, outputs: {{q1: rtrig.latch}}}}
  - {{name: flatch, type: RS, inputs: {{s: ftrig.q, r1: clear}}, outputs: {{q1: ftrig.latch}}}}
  - {{name: delay, type: DELAY, inputs: {{in: x}}, outputs: {{out: delay.out}},
     params: {{initial: -1.0}}}}
  - {{name: is_initial, type: EQ, inputs: {{in1: delay.out, in2: -1.0}},
     outputs: {{out: delay.glitch}}}}
  - {{name: dlatch, type: RS, inputs: {{s: delay.glitch, r1: clear}},
     outputs: {{q1: delay.latch}}}}
  - {{name: pid, type: PID, inputs: {{sp: sp, pv: 0.0}}, outputs: {{out: pid.out}},
     params: {{kp: 0.01, ti: 1.0, out_max: 1000.0}}}}
  - {{name: ramp, type: RAMP, inputs: {{in: x}}, outputs: {{out: ramp.out}},
     params: {{rise: 0.5, fall: 0.5}}}}
  - {{name: lag, type: LAG, inputs: {{in: x}}, outputs: {{out: lag.out}}, params: {{tau: 100.0}}}}
  - {{name: hyst, type: HYSTERESIS, inputs: {{in: h}}, outputs: {{q: hyst.q}},
     params: {{high: 10.0, low: -10.0}}}}
  - {{name: avg, type: AVERAGE, inputs: {{in: a}}, outputs: {{out: avg.out}}, params: {{n: 1000}}}}
  - {{name: gen, type: SIGNAL_GENERATOR, outputs: {{out: gen.out}},
     params: {{waveform: ramp, amplitude: 1000.0, period: 1000.0}}}}
  - {{name: tank, type: TANK, inputs: {{inflow: 1.0, outflow: 0.0}},
     outputs: {{level: tank.level}}, params: {{area: 1.0, level_max: 1000000.0}}}}
"""

OUTPUTS = ("ton.et", "tof.q", "tof.et", "tp.q", "tp.et", "ctu.cv", "ctd.cv", "ctud.cv",
           "sr.q", "rs.q", "rtrig.latch", "ftrig.latch", "delay.latch", "pid.out",
           "ramp.out", "lag.out", "hyst.q", "avg.out", "gen.out", "tank.level")


def pulse(seg: Segment, name: str, times: int = 1) -> None:
    for _ in range(times):
        seg.write(name, True)
        time.sleep(0.06)  # several 10 ms cycles see each level
        seg.write(name, False)
        time.sleep(0.06)


def outputs(r: Running) -> dict[str, float]:
    with Segment.attach(r.instance, readonly=True) as seg:
        return {n: float(seg.get(n)) for n in OUTPUTS}


def scan_running(r: Running, not_pid: int) -> int:
    """The pid of a scan other than ``not_pid`` that has run a few cycles, or 0."""
    with Segment.attach(r.instance, readonly=True) as seg:
        for hb in read_heartbeats(seg):
            if hb.role == "scan" and hb.pid not in (0, not_pid) and hb.state.name == "RUNNING":
                return hb.pid
    return 0


@pytest.fixture
def plant(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    inst = f"rt{os.getpid()}"
    path = tmp_path / "plant.yaml"
    path.write_text(PLANT.format(instance=inst, dir=tmp_path / "retain"))
    yield path, inst
    unlink_instance(inst)
    unlink_retain(inst)


def drive(r: Running) -> None:
    """Bring every block into a state a cold start would lose."""
    with Segment.attach(r.instance) as seg:
        seg.write("run", True)
        seg.write("sp", 100.0)
        seg.write("x", 50.0)
        seg.write("a", 100.0)
        seg.write("tof.in", True)
        seg.write("tp.in", True)
        seg.write("h", 20.0)
        pulse(seg, "cu", 3)
        pulse(seg, "ld")
        pulse(seg, "cd", 2)
        pulse(seg, "s")
        seg.write("rclk", True)
        seg.write("fclk", True)
        seg.write("tof.in", False)
        seg.write("h", 0.0)
        time.sleep(0.1)
        pulse(seg, "clear")  # the latches of the startup glitch and the rclk edge
    time.sleep(1.5)


def check_warm(before: dict[str, float], after: dict[str, float]) -> None:
    """What a resumed plant shows (and a cold start would not)."""
    assert after["ctu.cv"] == 3 and after["ctd.cv"] == 8 and after["ctud.cv"] == 1
    assert after["sr.q"] == 1 and after["rs.q"] == 1
    assert after["tof.q"] == 1 and after["tof.et"] >= before["tof.et"]
    assert after["tp.q"] == 1 and after["tp.et"] >= before["tp.et"]
    assert after["hyst.q"] == 1
    assert after["delay.latch"] == 0  # no DELAY initial value on restart
    assert after["tank.level"] >= before["tank.level"] > 1.0
    assert after["gen.out"] >= before["gen.out"]
    assert after["avg.out"] > 1.0  # the window still holds the 100s (cold: 0)
    assert after["pid.out"] >= before["pid.out"] > 1.5  # integral kept (cold: kp*e = 1)


def online_change(r: Running, path: Path) -> None:
    """New presets only: the state goes on through the reload."""
    mid = outputs(r)
    path.write_text(path.read_text().replace("params: {pt: 1000s}}", "params: {pt: 2000s}}")
                    .replace("params: {pv: 100}}", "params: {pv: 200}}"))
    done = r.petra("reload", "--instance", r.instance)
    assert done.returncode == 0, done.stdout + done.stderr
    after = outputs(r)
    assert after["ton.et"] >= mid["ton.et"] and after["ctu.cv"] == 3


def first_writes(journal: JournalConsumer, seg: Segment, pid: int) -> dict[str, float]:
    """The first value ``pid`` wrote to each signal, from the change journal."""
    names = [sig.name for sig in seg.signals]
    first: dict[str, float] = {}
    while True:
        batch = journal.read()
        if not len(batch):
            break
        values = batch.values_f64()
        for slot, writer, value in zip(batch.slot.tolist(), batch.writer.tolist(),
                                       values.tolist(), strict=True):
            if writer == pid:
                first.setdefault(names[slot], value)
    assert journal.lost == 0
    return first


def power_loss(r: Running) -> None:
    """Every process of the plant gone at once, and the RAM with them."""
    with Segment.attach(r.instance, readonly=True) as seg:
        pids = [hb.pid for hb in read_heartbeats(seg) if hb.pid]
    for pid in [r.proc.pid, *pids]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    r.proc.wait()
    unlink_instance(r.instance)
    unlink_retain(r.instance)


def test_scan_kill_resumes_every_block_and_power_loss_restores_retained(
        tmp_path: Path, plant: tuple[Path, str]) -> None:
    path, inst = plant
    r = start(tmp_path, inst, path)
    try:
        drive(r)
        online_change(r, path)
        old = r.scan_pid()
        before = outputs(r)
        assert before["ctu.cv"] == 3 and before["ton.et"] > 1.0 and before["sr.q"] == 1
        assert before["rtrig.latch"] == 0 and before["delay.latch"] == 0
        with Segment.attach(inst) as seg:
            seg.write("a", 0.0)  # the average's window now holds 100s and a few 0s
        time.sleep(0.05)
        watch = Segment.attach(inst, readonly=True)
        journal = JournalConsumer(watch)
        os.kill(old, signal.SIGKILL)
        t_kill = time.monotonic()
        with Segment.attach(inst) as seg:
            seg.write("fclk", False)  # a falling edge while the scan is down
        new = wait_until(lambda: scan_running(r, old), timeout=30, what="the restarted scan",
                         interval=0.002)
        time.sleep(0.05)  # a few cycles
        after = outputs(r)
        down = time.monotonic() - t_kill
        check_warm(before, after)
        # Within one cycle: the very first value the new scan wrote to each output is
        # already the resumed one (the first cycle writes every output).
        first = first_writes(journal, watch, new)
        watch.close()
        assert set(OUTPUTS) <= set(first), sorted(set(OUTPUTS) - set(first))
        check_warm(before, first)
        # Timers keep their elapsed time; the time the scan was down does not count.
        assert before["ton.et"] <= after["ton.et"] <= before["ton.et"] + down
        assert after["ramp.out"] >= before["ramp.out"] and after["ramp.out"] < 49.0
        assert after["lag.out"] >= before["lag.out"] and after["lag.out"] < 49.0
        assert after["rtrig.latch"] == 0  # no spurious first-scan rising edge
        assert after["ftrig.latch"] == 1  # the falling edge during the outage was seen
        text = r.log.read_text()
        assert "event=retain_warm_start kept=21 params_changed=0 reset=0" in text

        r = power_loss_and_start(tmp_path, r)
    finally:
        stop(r)


def power_loss_and_start(tmp_path: Path, r: Running) -> Running:
    """Every process gone at once, RAM (both shm objects) gone; then a cold start
    restores the retain file. Returns the new plant."""
    time.sleep(0.8)  # at least one periodic write of the retain file
    warm = outputs(r)
    power_loss(r)
    assert (tmp_path / "retain" / "retain.bin").exists()
    r = start(tmp_path, r.instance, r.plant)
    cold = outputs(r)
    # The writable inputs came back at their initial values (false / 0); every
    # block's retained state is there regardless.
    assert cold["ctu.cv"] == 3 and cold["ctd.cv"] == 8 and cold["ctud.cv"] == 1
    assert cold["sr.q"] == 1 and cold["rs.q"] == 1 and cold["hyst.q"] == 1
    assert cold["tof.q"] == 1 and cold["tp.q"] == 1
    assert cold["ftrig.latch"] == 1 and cold["delay.latch"] == 0
    assert cold["tank.level"] > max(warm["tank.level"] - 3.0, 1.0)  # one write behind
    assert cold["avg.out"] > 1.0 and cold["lag.out"] > 1.0 and cold["ramp.out"] > 0.3
    assert cold["pid.out"] > 1.0  # sp is 0 now: the output is the retained integral
    assert "event=retain_file_restored" in r.log.read_text()
    return r
