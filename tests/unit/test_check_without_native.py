"""``petra check`` validates plants on a box whose C core is not built.

Each run is a subprocess in which ``petra._native`` cannot be imported
(``sys.modules["petra._native"] = None``), so any import of the C core on the way from
the CLI to the validator fails loudly.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRELUDE = ("import sys; sys.modules['petra._native'] = None\n"
           "from petra.cli import main\n"
           "sys.exit(main(sys.argv[1:]))\n")


def _check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", PRELUDE, "check", *args],
                          capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)


def test_valid_plant_passes_without_the_c_core() -> None:
    r = _check(str(ROOT / "examples" / "demo-plant.yaml"))
    assert r.returncode == 0, r.stderr
    assert "valid plant 'demo'" in r.stdout
    assert "blocks: 17" in r.stdout


def test_broken_plant_reports_located_errors_without_the_c_core(tmp_path: Path) -> None:
    plant = tmp_path / "broken.yaml"
    plant.write_text((ROOT / "examples" / "demo-plant.yaml").read_text()
                     .replace("type: TANK", "type: TANKK", 1))
    r = _check(str(plant))
    assert r.returncode == 1
    assert "No module named" not in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert f"{plant}:" in r.stderr and "TANKK" in r.stderr, r.stderr
