"""Under ``petra run`` the supervisor hands the scan its validated plant.

The scan starts from the supervisor's file (no plant loader at start), the file follows
every reload the scan accepted, a scan restarted after a crash runs the plant last
accepted (not an edit nobody reloaded), and the file goes with the plant.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil
from test_run_e2e import start, stop, wait_until
from test_scan_process import PLANT

from petra._artefact import read_artefact
from petra.blocks import Const
from petra.scan._plant import SCAN_SECTION, ScanPlant
from petra.shm import Segment


def handed_plant(path: Path) -> ScanPlant:
    """The scan's section of the supervisor's plant artefact."""
    return ScanPlant.loads(read_artefact(path).section(SCAN_SECTION))


def gain_of(plant: ScanPlant) -> float:
    block = next(b for b in plant.blocks if b.name == "gain")
    value = block.inputs["in2"]
    assert isinstance(value, Const)
    return float(value.value)


def test_the_scan_runs_what_the_supervisor_last_accepted(tmp_path: Path) -> None:
    plant = tmp_path / "plant.yaml"
    plant.write_text(PLANT.replace("GAIN", "2.0"))
    instance = f"t-handover-{os.getpid()}"
    r = start(tmp_path, instance, plant)
    handed = r.runtime / f"petra-{instance}.plant"
    try:
        with Segment.attach(instance, readonly=True) as seg:

            def runs(gain: float) -> bool:
                count, doubled = seg.get("count"), seg.get("doubled")
                return isinstance(count, int) and count > 0 and doubled == gain * count

            wait_until(lambda: runs(2.0), what="the first plant to run")
            scan = psutil.Process(wait_until(r.scan_pid, what="the scan"))
            argv = scan.cmdline()
            assert argv[argv.index("--plant-data") + 1] == str(handed)
            assert gain_of(handed_plant(handed)) == 2.0
            assert not scan.children()  # no loader was needed to start

            plant.write_text(PLANT.replace("GAIN", "3.0"))
            ok = r.petra("reload", "--instance", instance)
            assert ok.returncode == 0, ok.stderr
            wait_until(lambda: runs(3.0), what="the reloaded plant to run")
            assert gain_of(handed_plant(handed)) == 3.0

            # An edit nobody reloaded, then a crash: the restart runs the accepted plant.
            plant.write_text(PLANT.replace("GAIN", "4.0"))
            os.kill(scan.pid, signal.SIGKILL)
            wait_until(lambda: (p := r.scan_pid()) and p != scan.pid, timeout=30,
                       what="the restarted scan")
            wait_until(lambda: runs(3.0), what="the restarted scan to run")
            assert gain_of(handed_plant(handed)) == 3.0
    finally:
        stop(r)
    assert r.proc.returncode == 0, r.log.read_text()[-2000:]
    assert not handed.exists()
