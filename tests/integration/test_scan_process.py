"""``petra scan`` as a process: SIGHUP reloads through its one worker, without the config stack.

The scan runs alone (it creates its own segment), as ``python -m petra scan``. The test
edits the plant file, sends SIGHUPs (one, a burst, an invalid plant) and reads the
answers where the supervisor reads them: the scan's heartbeat counters.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from driver_peers import wait_until as _wait_until

from petra.errors import PetraError
from petra.shm import Segment, read_heartbeats, unlink_instance
from petra.types import ScanCounter

wait_until = functools.partial(_wait_until, timeout=30.0)

PLANT = textwrap.dedent("""\
    instance: unused
    scan: {period: 10ms}
    signals:
      - {name: wave, type: float}
      - {name: high, type: bool}
      - {name: count, type: int, safe_value: -1}
      - {name: doubled, type: float}
    blocks:
      - name: gen
        type: SIGNAL_GENERATOR
        outputs: {out: wave}
        params: {waveform: square, amplitude: 0.5, offset: 0.5, period: 0.1}
      - name: is_high
        type: GT
        inputs: {in1: wave, in2: 0.5}
        outputs: {out: high}
      - name: counter
        type: CTU
        inputs: {cu: high}
        outputs: {cv: count}
        params: {pv: 1000000}
      - name: gain
        type: MUL
        inputs: {in1: count, in2: GAIN}
        outputs: {out: doubled}
    """)


class Scan:
    def __init__(self, tmp: Path) -> None:
        self.plant = tmp / "plant.yaml"
        self.write(2.0)
        self.instance = f"t-scanproc-{os.getpid()}"
        unlink_instance(self.instance)
        self.log = tmp / "scan.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "petra", "scan", str(self.plant), "--instance",
             self.instance], stdout=subprocess.DEVNULL, stderr=self.log.open("w"))
        self.seg = wait_until(self._attach, what="the scan's segment")
        wait_until(lambda: self.counters() is not None, what="the scan's heartbeat")

    def _attach(self) -> Segment | None:
        assert self.proc.poll() is None, self.log.read_text()
        try:
            return Segment.attach(self.instance, readonly=True)
        except PetraError:  # not there yet, or not initialised yet
            return None

    def write(self, gain: float, text: str = PLANT) -> None:
        tmp = self.plant.with_suffix(".tmp")
        tmp.write_text(text.replace("GAIN", repr(gain)))
        tmp.replace(self.plant)

    def counters(self) -> tuple[int, int] | None:
        for hb in read_heartbeats(self.seg):
            if hb.pid == self.proc.pid:
                return (hb.counters[ScanCounter.RELOADS_OK],
                        hb.counters[ScanCounter.RELOADS_FAILED])
        return None

    def doubled_is(self, gain: float) -> bool:
        count, doubled = self.seg.get("count"), self.seg.get("doubled")
        return isinstance(count, int) and count > 0 and doubled == gain * count

    def threads(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/task"))

    def maps(self) -> str:
        return Path(f"/proc/{self.proc.pid}/maps").read_text()

    def stop(self) -> int:
        self.seg.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        unlink_instance(self.instance)
        return int(self.proc.returncode)


@pytest.fixture
def scan(tmp_path: Path) -> Iterator[Scan]:
    s = Scan(tmp_path)
    yield s
    s.stop()


def test_sighup_reloads_through_one_worker_without_the_config_stack(scan: Scan) -> None:
    wait_until(lambda: scan.doubled_is(2.0), what="the first program to run")
    # the plant was loaded by a child: no YAML or pydantic extension in the scan
    maps = scan.maps()
    assert "pydantic_core" not in maps and "_yaml" not in maps
    assert scan.threads() == 2  # the loop and the reload worker

    scan.write(3.0)
    os.kill(scan.proc.pid, signal.SIGHUP)
    wait_until(lambda: scan.counters() == (1, 0), what="the reload to be counted")
    wait_until(lambda: scan.doubled_is(3.0), what="the new gain to run")

    scan.write(4.0)
    for _ in range(20):  # a burst: collapsed, never a thread per signal
        os.kill(scan.proc.pid, signal.SIGHUP)
    assert scan.threads() == 2
    wait_until(lambda: scan.doubled_is(4.0), what="the burst's reload to run")
    # counted just after the swap (the worker notices it within 20 ms)
    wait_until(lambda: (c := scan.counters()) and c[0] >= 2, what="the burst to be counted")
    ok, failed = wait_until(scan.counters)
    assert failed == 0 and 2 <= ok <= 3
    assert scan.threads() == 2
    wait_until(lambda: not [p for p in psutil.Process(scan.proc.pid).children()
                            if p.status() != psutil.STATUS_ZOMBIE],
               what="every loader to be gone once its reload is done")

    scan.write(5.0, PLANT.replace("type: CTU", "type: CTUU"))
    os.kill(scan.proc.pid, signal.SIGHUP)
    # (a second reload of the burst may still land: ok may grow, failed must become 1)
    wait_until(lambda: (c := scan.counters()) and c[1] == 1, what="the refusal to be counted")
    assert scan.doubled_is(4.0)  # the running program is untouched
    assert "CTUU" in scan.log.read_text() and "event=reload_failed" in scan.log.read_text()
    assert "pydantic_core" not in scan.maps()
    assert scan.stop() == 0
    log = scan.log.read_text()
    assert "event=reload_worker" not in log  # neither stuck nor dead
    assert "Traceback" not in log


def _hang_next_reload(scan: Scan) -> psutil.Process:
    """Replace the plant by one that takes the loader many seconds to refuse and SIGHUP;
    return the loader once it is well past its start-up (1 s of CPU: it has asked to
    die with the scan and is parsing). The loader refuses FIFOs and devices at once, so
    the slow file is a regular one: 8 MiB of one long list."""
    wait_until(lambda: scan.doubled_is(2.0), what="the first program to run")
    scan.plant.write_text("signals: [" + "0," * (4 << 20) + "0]\n")
    os.kill(scan.proc.pid, signal.SIGHUP)
    kids: list[psutil.Process] = wait_until(lambda: psutil.Process(scan.proc.pid).children(),
                                            what="the loader")
    loader = kids[0]

    def busy() -> bool:
        cpu = loader.cpu_times()
        return cpu.user + cpu.system >= 1.0

    wait_until(busy, what="the loader to be parsing")
    return loader


def test_sigterm_during_a_reload_stops_promptly(scan: Scan) -> None:
    """A loader that takes long does not hold the scan up: stop cancels the reload,
    kills the loader and joins the worker."""
    loader = _hang_next_reload(scan)
    t0 = time.monotonic()
    assert scan.stop() == 0
    assert time.monotonic() - t0 < 5
    assert not psutil.pid_exists(loader.pid) or loader.status() == psutil.STATUS_ZOMBIE
    assert "event=reload_worker_stuck" not in scan.log.read_text()


def test_a_killed_loader_is_a_failed_reload_and_the_scan_goes_on(scan: Scan) -> None:
    loader = _hang_next_reload(scan)
    loader.kill()
    wait_until(lambda: scan.counters() == (0, 1), what="the failed reload to be counted")
    assert "exit status -9" in scan.log.read_text()
    count = scan.seg.get("count")
    wait_until(lambda: scan.seg.get("count") != count, what="the scan to keep running")
    assert scan.threads() == 2


def test_a_killed_scan_takes_its_busy_loader_with_it(scan: Scan) -> None:
    loader = _hang_next_reload(scan)
    scan.proc.kill()
    scan.proc.wait()
    # at once (PR_SET_PDEATHSIG), not when its parse of seconds more is over
    _wait_until(lambda: not loader.is_running() or loader.status() == psutil.STATUS_ZOMBIE,
                timeout=2.0, what="the loader to die with the scan")
