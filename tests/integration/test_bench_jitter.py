"""petra-bench jitter end to end: a short real measurement, JSON and a PNG."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from petra.bench._jitter import parse_cyclictest


def test_short_jitter_run_writes_json_and_png(tmp_path: Path) -> None:
    out, png = tmp_path / "j.json", tmp_path / "j.png"
    proc = subprocess.run(
        [sys.executable, "-m", "petra.bench", "jitter", "--period", "1ms", "--duration", "2s",
         "--blocks", "50", "--json", str(out), "--plot", str(png)],
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "petra wake us" in proc.stdout
    data = json.loads(out.read_text())
    assert data["schema_version"] == 1
    assert data["cycles"] == 2000
    wake = data["wake"]
    assert wake["samples"] == 2000
    assert wake["min_us"] <= wake["p50"] <= wake["p99"] <= wake["p999"] <= wake["max_us"]
    hist = data["histogram"]
    assert sum(hist["buckets"].values()) + hist["overflow"] == 2000
    assert data["overruns"] >= 0 and data["skipped"] >= data["overruns"]
    assert len(data["worst"]) == 10
    if shutil.which("cyclictest"):  # tools/test.sh installs rt-tests
        cyc = data["cyclictest"]
        # cyclictest runs for a duration, not a count: a busy box loses loops, so the
        # count is a measurement; what must hold is that every sample is accounted for
        assert 0 < cyc["samples"] <= 2000 + 5, cyc
        hist = cyc["histogram"]
        assert sum(hist["buckets"].values()) + hist["overflow"] == cyc["samples"], cyc
        assert cyc["p50"] is not None
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_alone_writes_json_beside_it_and_marks_both_tools(tmp_path: Path) -> None:
    png = tmp_path / "j.png"
    proc = subprocess.run(
        [sys.executable, "-m", "petra.bench", "jitter", "--period", "2ms", "--duration", "1s",
         "--blocks", "10", "--plot", str(png)],
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "j.json").read_text())  # the numbers behind the plot
    assert data["cycles"] == 500
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if shutil.which("cyclictest"):
        hist = data["cyclictest"]["histogram"]
        assert sum(hist["buckets"].values()) + hist["overflow"] == data["cyclictest"]["samples"]


def test_plot_without_matplotlib_fails_before_measuring(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "from petra.bench import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", code, "jitter", "--duration", "30s", "--plot",
         str(tmp_path / "j.png")], capture_output=True, text=True, timeout=120, check=False)
    assert time.monotonic() - start < 20  # refused at once, not after 30 s of measuring
    assert proc.returncode == 1
    assert "--plot needs matplotlib" in proc.stderr
    assert "pip install -e '.[plot]'" in proc.stderr  # run from a checkout
    assert not (tmp_path / "j.png").exists()


def test_cyclictest_histogram_parsing() -> None:
    text = "\n".join([
        "# /dev/cpu_dma_latency set to 0us",
        "000000 000000", "000001 000010", "000002 000080", "000003 000009",
        "# Total: 000000100", "# Min Latencies: 00001", "# Avg Latencies: 00002",
        "# Max Latencies: 00250", "# Histogram Overflows: 00001",
    ])
    got = parse_cyclictest(text)
    assert got["samples"] == 100
    assert (got["min_us"], got["avg_us"], got["max_us"]) == (1.0, 2.0, 250.0)
    assert got["p50"] == 2.0 and got["p90"] == 2.0 and got["p99"] == 3.0
    assert got["p999"] is None  # in the overflow bucket: unknown, never invented
    assert got["histogram"] == {"bucket_us": 1, "buckets": {1: 10, 2: 80, 3: 9},
                                "overflow": 1}
