"""The example custom block package installs, registers through its entry point and runs.

The package is copied to a temporary directory (the build leaves egg-info and build/
behind) and installed with pip into the running interpreter with ``--no-deps``. When
setuptools and wheel are importable here the build runs offline
(``--no-build-isolation``); otherwise pip builds in an isolated environment and
fetches them from the package index. The package is uninstalled at the end whatever
happens.
"""

from __future__ import annotations

import importlib
import importlib.util
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import petra.blocks as pb

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "petra-example-blocks"
DIST = "petra-example-blocks"


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", *args, "--disable-pip-version-check", "-q"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def installed(tmp_path: Path) -> Iterator[None]:
    src = tmp_path / "pkg"
    shutil.copytree(EXAMPLE, src)
    offline = all(importlib.util.find_spec(m) is not None for m in ("setuptools", "wheel"))
    flags = ["--no-deps", "--no-build-isolation"] if offline else ["--no-deps"]
    done = _pip("install", *flags, str(src))
    assert done.returncode == 0, done.stdout + done.stderr
    importlib.invalidate_caches()
    try:
        yield
    finally:
        gone = _pip("uninstall", "-y", DIST)
        sys.modules.pop("petra_example_blocks", None)
        importlib.invalidate_caches()
        assert gone.returncode == 0, gone.stdout + gone.stderr


def test_example_package_installs_and_runs(installed: None) -> None:
    names = pb.load_entry_points()
    assert "EXAMPLE_DEADBAND" in names
    assert pb.load_entry_points() == names  # idempotent
    spec = pb.all_specs()["EXAMPLE_DEADBAND"]
    assert spec.category == "custom" and [p.name for p in spec.params] == ["band"]
    blocks = [
        pb.BlockInstance("db", "EXAMPLE_DEADBAND", {"in": 0}, {"out": 1}, {"band": 0.5}),
        pb.BlockInstance("x2", "MUL", {"in1": 1, "in2": pb.Const(2.0)}, {"out": 2}),
    ]
    program = pb.compile_program(blocks, 3)
    img, quality = program.new_image()
    quality[0] = 2
    outs = []
    for k, x in enumerate([1.0, 1.2, 1.4, 1.6, 1.0]):
        img[0] = x
        program.run(img, quality, k * 1_000_000, 1_000_000, k == 0)
        outs.append((img[1], img[2]))
    assert outs == [(1.0, 2.0), (1.0, 2.0), (1.0, 2.0), (1.6, 3.2), (1.0, 2.0)]
    assert program.errors == {"db": 0}


def test_the_scan_process_runs_and_reloads_an_entry_point_block(
        installed: None, tmp_path: Path) -> None:
    """The scan never loads the config stack: its plant loader (a child) and its own
    compiler must both find the block through the entry point, at start and on SIGHUP."""
    import os
    import signal
    import time
    from collections.abc import Callable

    from petra.errors import PetraError
    from petra.shm import Segment, read_heartbeats, unlink_instance
    from petra.types import ScanCounter

    text = """\
instance: unused
scan: {period: 10ms}
signals:
  - {name: raw, type: float}
  - {name: filtered, type: float}
blocks:
  - name: gen
    type: SIGNAL_GENERATOR
    outputs: {out: raw}
    params: {waveform: ramp, amplitude: 10.0, period: 1.0}
  - name: db
    type: EXAMPLE_DEADBAND
    inputs: {in: raw}
    outputs: {out: filtered}
    params: {band: WIDTH}
"""
    plant = tmp_path / "plant.yaml"
    plant.write_text(text.replace("WIDTH", "0.5"))
    instance = f"t-example-scan-{os.getpid()}"
    unlink_instance(instance)
    log = tmp_path / "scan.log"
    proc = subprocess.Popen([sys.executable, "-m", "petra", "scan", str(plant),
                             "--instance", instance], stderr=log.open("w"))

    def until(pred: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 30
        while not pred():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"{what}: {log.read_text()}"
            time.sleep(0.05)

    seg: list[Segment] = []

    def attached() -> bool:
        try:
            seg.append(Segment.attach(instance, readonly=True))
            return True
        except PetraError:  # not there yet, or not initialised yet
            return False

    try:
        until(attached, "the scan's segment")
        s = seg[0]
        values: set[float] = set()

        def moving() -> bool:
            values.add(float(s.get("filtered")))
            return len(values) > 3

        until(moving, "the deadband block to follow the ramp")
        plant.write_text(text.replace("WIDTH", "100.0"))  # now it never moves again
        os.kill(proc.pid, signal.SIGHUP)

        def reloaded() -> bool:
            return any(hb.pid == proc.pid and hb.counters[ScanCounter.RELOADS_OK] == 1
                       for hb in read_heartbeats(s))

        until(reloaded, "the reload")
        frozen = s.get("filtered")
        time.sleep(0.3)
        assert s.get("filtered") == frozen  # the new definition (band 100) runs
        assert "pydantic_core" not in Path(f"/proc/{proc.pid}/maps").read_text()
        s.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        unlink_instance(instance)
    assert proc.returncode == 0, log.read_text()
