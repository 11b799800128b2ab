"""The scan's plant loader: a child process that hands the scan a compact, validated plant."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest

from petra.blocks import BlockInstance, Const
from petra.config import load_plant
from petra.errors import PetraError
from petra.scan._plant import PlantLoadError, ScanPlant, ScanSettings, compile_plant
from petra.types import Quality, SignalDef, SignalType

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "demo-plant.yaml"


def _loader_children() -> list[psutil.Process]:
    """Children of this process that are plant loaders (alive or zombie)."""
    out = []
    for child in psutil.Process().children():
        try:
            if "petra.scan._plant" in " ".join(child.cmdline()):
                out.append(child)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            out.append(child)
    return out


def test_the_pipe_form_carries_any_yaml_data_unchanged() -> None:
    params = {"table": {1: [0.5, math.inf], 2: [-math.inf, 1e300]}, "flag": True,
              "name": "ramp", "none": None, "big": 2**62, "nested": [[1, 2], {"k": "v"}]}
    plant = ScanPlant(
        instance="p", source="/x/plant.yaml",
        scan=ScanSettings(period_ns=1_000_000, grid_offset_ns=500_000, spin_ns=0, cpu=1,
                          policy="fifo", priority=70, rt=True, cpu_dma_latency=False,
                          journal_capacity=1024),
        signals=(SignalDef("a.b", SignalType.FLOAT, unit="m", owner="driver:plc",
                           writable=True, initial=1.5, initial_quality=Quality.UNCERTAIN,
                           minimum=-1.0, maximum=5.0, allow_nonfinite=True),
                 SignalDef("c", SignalType.INT, initial=-3, initial_quality=Quality.GOOD),
                 SignalDef("d", SignalType.BOOL)),
        safe_values=(("a.b", 0.0), ("c", -1), ("d", False)),
        blocks=(BlockInstance("x", "CUSTOM_T", {"in": "a.b", "k": Const(2.5),
                                                "on": Const(True), "n": Const(3), "i": 7},
                              {"out": "c"}, params),),
    )
    back = ScanPlant.loads(plant.dumps())
    assert back == plant
    inputs = back.blocks[0].inputs
    assert inputs["in"] == "a.b" and inputs["i"] == 7  # a signal by name, one by index
    assert isinstance(inputs["n"], Const) and type(inputs["n"].value) is int
    assert isinstance(inputs["on"], Const) and type(inputs["on"].value) is bool
    assert list(back.blocks[0].params["table"]) == [1, 2]  # integer keys stay integers


def test_garbage_on_the_pipe_is_an_error_not_a_crash() -> None:
    with pytest.raises(PetraError, match="unreadable"):
        ScanPlant.loads(b"\x00not marshal")
    with pytest.raises(PetraError, match="unreadable"):
        ScanPlant.loads(__import__("marshal").dumps((99, "future format")))


def test_the_child_gives_what_the_config_loader_gives() -> None:
    from_child = compile_plant(DEMO)
    direct = ScanPlant.from_plant(load_plant(DEMO))
    assert repr(from_child) == repr(direct)  # repr: NaN constants are not == themselves
    assert [b.name for b in from_child.blocks] == load_plant(DEMO).order
    assert from_child.scan.period_ns == 10_000_000
    assert ("plant.running", False) in from_child.safe_values
    assert not _loader_children()


def test_an_invalid_plant_comes_back_as_the_loaders_messages(tmp_path: Path) -> None:
    bad = tmp_path / "plant.yaml"
    bad.write_text(DEMO.read_text().replace("type: PID", "type: PIDD"))
    with pytest.raises(PlantLoadError) as info:
        compile_plant(bad)
    assert any("PIDD" in line and f"{bad}:" in line for line in info.value.lines)
    with pytest.raises(PlantLoadError, match="cannot read"):
        compile_plant(tmp_path / "missing.yaml")
    assert not _loader_children()


def test_a_hung_loader_is_killed_at_its_timeout(tmp_path: Path) -> None:
    # A plant within the loader's bounds that takes far longer than the timeout to read
    # (8 MiB of one long list; the loader refuses FIFOs and devices at once).
    slow = _slow_plant(tmp_path)
    t0 = time.monotonic()
    with pytest.raises(PetraError, match="longer than"):
        compile_plant(slow, timeout_s=1.5)
    assert time.monotonic() - t0 < 10
    assert not _loader_children()  # killed and reaped, no zombie


def _slow_plant(tmp_path: Path) -> Path:
    """A plant file the loader takes seconds to refuse (8 MiB of one long list): a
    regular file, since the loader refuses FIFOs and devices at once."""
    slow = tmp_path / "plant.yaml"
    slow.write_text("signals: [" + "0," * (4 << 20) + "0]\n")
    return slow


def test_a_loader_is_cancelled_through_the_wake_pipe(tmp_path: Path) -> None:
    slow = _slow_plant(tmp_path)
    r, w = os.pipe()
    stop = threading.Event()

    def cancelled() -> bool:
        os.read(r, 64)
        return stop.is_set()

    def later() -> None:
        time.sleep(0.3)
        os.write(w, b"x")  # a wake-up that is not a stop: the loader goes on
        time.sleep(0.3)
        stop.set()
        os.write(w, b"x")

    threading.Thread(target=later).start()
    t0 = time.monotonic()
    try:
        with pytest.raises(PetraError, match="cancelled"):
            compile_plant(slow, timeout_s=60, cancelled=cancelled, wake_fd=r)
    finally:
        os.close(r)
        os.close(w)
    assert 0.5 < time.monotonic() - t0 < 10
    assert not _loader_children()


@pytest.mark.skipif(os.geteuid() != 0 or len(os.sched_getaffinity(0)) < 2,
                    reason="needs root (SCHED_FIFO) and two CPUs")
def test_the_loader_runs_sched_other_off_the_scan_cpu(tmp_path: Path) -> None:
    """A scan at SCHED_FIFO on CPU 0 starts a loader: SCHED_OTHER, not on CPU 0."""
    slow = _slow_plant(tmp_path)
    code = textwrap.dedent(f"""
        import os
        os.sched_setaffinity(0, {{0}})
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
        from petra.scan._plant import compile_plant
        compile_plant({str(slow)!r}, avoid_cpu=0, timeout_s=60)
    """)
    scan = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 30
        loader = None
        while time.monotonic() < deadline:
            kids = psutil.Process(scan.pid).children()
            if kids and 0 not in kids[0].cpu_affinity():
                loader = kids[0]
                break
            time.sleep(0.05)
        assert loader is not None, "the loader never moved off CPU 0"
        assert os.sched_getscheduler(loader.pid) == os.SCHED_OTHER
        assert os.sched_getscheduler(scan.pid) == os.SCHED_FIFO
    finally:
        for p in psutil.Process(scan.pid).children(recursive=True):
            p.kill()  # before the scan: an orphan would leave our process tree
        scan.kill()
        scan.wait()


def test_the_handed_over_file_round_trips_and_a_bad_one_falls_back_to_the_file(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from petra.scan import ScanProcess

    handed = tmp_path / "petra-x.scan"
    plant = ScanPlant.from_plant(load_plant(DEMO))
    plant.write(handed)
    assert repr(ScanPlant.read(handed)) == repr(plant)
    assert handed.stat().st_mode & 0o007 == 0  # not for other users
    got = ScanProcess(DEMO, plant_data=handed)._handed_plant()
    assert got is not None and got.instance == "demo"
    with caplog.at_level("WARNING", logger="petra.scan"):  # made for another instance
        assert ScanProcess(DEMO, instance="other", plant_data=handed)._handed_plant() is None
    assert any("event=plant_data_unusable" in r.getMessage() and "not other" in r.getMessage()
               for r in caplog.records)
    caplog.clear()

    handed.write_bytes(b"half a fi")  # a torn or foreign file: load the plant file instead
    with caplog.at_level("WARNING", logger="petra.scan"):
        proc = ScanProcess(DEMO, plant_data=handed)
        assert proc._handed_plant() is None
        got = proc._load_plant()
    assert repr(got) == repr(plant)
    assert any("event=plant_data_unusable" in r.getMessage() for r in caplog.records)


def test_the_loader_reports_progress_while_it_works() -> None:
    """A start-up beat per half second of the loader's growing CPU time (the supervisor's
    grace follows those beats); the result is the same as without."""
    beats: list[float] = []
    got = compile_plant(DEMO, progress=lambda: beats.append(time.monotonic()))
    assert got.instance == "demo"
    assert beats, "no progress reported while the loader ran"
