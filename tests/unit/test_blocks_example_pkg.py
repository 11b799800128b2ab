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
