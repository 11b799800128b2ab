"""The runnable example in docs/api.md runs, so the documentation cannot rot."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path

import petra.shm

API_MD = Path(__file__).resolve().parents[2] / "docs" / "api.md"
MARKER = "<!-- example: shm-api -->"


def _example() -> str:
    text = API_MD.read_text(encoding="utf-8")
    assert MARKER in text, f"{API_MD} lost its example marker"
    m = re.search(r"```python\n(.*?)```", text[text.index(MARKER):], re.DOTALL)
    assert m, "no python block after the example marker"
    return m.group(1)


def test_api_example_runs() -> None:
    code = _example().replace("demo-api", f"doc-{uuid.uuid4().hex[:10]}")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert "tank1.level = 2.75" in out.stdout


def test_public_exports_are_documented() -> None:
    text = API_MD.read_text(encoding="utf-8")
    internal = {"validate_instance_name", "validate_signal_name", "Value", "hist_percentile_us",
                "segment_name", "SegmentInfo", "SignalInfo", "ScanStats", "Heartbeat"}
    missing = [n for n in petra.shm.__all__ if n not in text and n not in internal]
    assert not missing, f"exported but not in docs/api.md: {missing}"
