"""Under ``petra run`` every child starts from the supervisor's plant artefact.

A real supervisor with a scan and a Modbus driver (its device is absent: the driver
runs, degraded, which is all this needs). The driver reads its config from the
artefact, so a restart after the plant file was broken by an edit still starts; a
corrupted artefact is refused with its reason in the log and the driver loads the file
instead; with both broken, the driver fails saying what is wrong with the file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from test_run_e2e import Running, start, stop, wait_until
from test_scan_process import PLANT

from petra.shm import Segment, read_heartbeats

DRIVER = """\
  - {name: level, type: float}
drivers:
  - kind: modbus_tcp
    name: plc
    host: 127.0.0.1
    port: 1
    poll_period_s: 0.2
    timeouts: {connect_s: 0.5, request_s: 0.5}
    points:
      - {signal: level, table: holding, address: 10}
"""


def plant_text() -> str:
    head, blocks = PLANT.replace("GAIN", "2.0").split("blocks:\n")
    return head + DRIVER + "blocks:\n" + blocks


def driver_pid(r: Running) -> int:
    with Segment.attach(r.instance, readonly=True) as seg:
        for hb in read_heartbeats(seg):
            if hb.role == "driver:plc":
                return hb.pid
    return 0


def lines_of(r: Running, pid: int) -> list[str]:
    return [line for line in r.log.read_text().splitlines() if f" pid={pid} " in line]


def restart_driver(r: Running, old: int) -> int:
    os.kill(old, signal.SIGKILL)
    return int(wait_until(lambda: (p := driver_pid(r)) and p != old and p, timeout=30,
                          what="the restarted driver"))


def test_children_start_from_the_artefact_and_refuse_a_corrupt_one(tmp_path: Path) -> None:
    plant = tmp_path / "plant.yaml"
    plant.write_text(plant_text())
    instance = f"t-artefact-{os.getpid()}"
    r = start(tmp_path, instance, plant)
    artefact = r.runtime / f"petra-{instance}.plant"
    try:
        first = int(wait_until(lambda: driver_pid(r), what="the driver's heartbeat"))
        assert any("event=plant_from_artefact" in line for line in lines_of(r, first))
        assert "plant_data_unusable" not in r.log.read_text()

        # The file broken by an edit nobody reloaded: the restart runs what was accepted.
        plant.write_text("instance: x\nsignals: [\n")
        second = restart_driver(r, first)
        wait_until(lambda: any("event=plant_from_artefact" in line
                               for line in lines_of(r, second)), what="the second start")

        # A corrupted artefact is refused, with its reason; the driver loads the file.
        plant.write_text(plant_text())
        raw = bytearray(artefact.read_bytes())
        raw[len(raw) // 2] ^= 0x01
        artefact.write_bytes(bytes(raw))
        third = restart_driver(r, second)
        refused = [line for line in lines_of(r, third) if "event=plant_data_unusable" in line]
        assert refused and "checksum does not match" in refused[0], lines_of(r, third)
        assert "action=load_file" in refused[0]

        # Both broken: the driver fails with the plant file's located error.
        plant.write_text("instance: x\nsignals: [\n")
        os.kill(third, signal.SIGKILL)
        wait_until(lambda: "event=driver_failed" in r.log.read_text(), timeout=30,
                   what="the driver to fail on the broken file")
        failed = next(line for line in r.log.read_text().splitlines()
                      if "event=driver_failed" in line)
        assert f"{plant}:" in failed, failed
        assert r.cycles() > 0 and r.proc.poll() is None  # the scan ran on throughout
    finally:
        stop(r)
    assert r.proc.returncode == 0, r.log.read_text()[-2000:]
    assert not artefact.exists()


def test_a_scan_whose_start_gate_closes_without_go_exits_saying_so(tmp_path: Path) -> None:
    """``petra run`` starts the scan before the segment exists, held at a pipe; a
    supervisor that fails first closes it, and the scan must not go on."""
    plant = tmp_path / "plant.yaml"
    plant.write_text(plant_text())
    gate_r, gate_w = os.pipe()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "petra", "scan", str(plant), "--attach", "--instance",
             f"t-gate-{os.getpid()}", "--start-gate", str(gate_r)],
            pass_fds=(gate_r,), stderr=subprocess.PIPE, text=True)
    finally:
        os.close(gate_r)
    os.write(gate_w, b"g")  # half a word, then gone
    os.close(gate_w)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert "event=start_gate_closed" in err
