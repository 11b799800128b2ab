"""The C core built with AddressSanitizer + UndefinedBehaviorSanitizer, and with
ThreadSanitizer, running ``segment_sanity.c``: threads writing, reading and consuming
one segment, then the batch calls' edges (ranges that would wrap) and every repair
path. A sanitizer finding fails the run even when the program's own checks pass.

``PETRA_SOAK_SECONDS`` lengthens the threaded phase (default 1 s).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CSRC = ROOT / "csrc"
PROGRAM = Path(__file__).resolve().parent / "segment_sanity.c"
CC = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
SANITIZERS = {
    "address,undefined": ["-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                          "-fno-omit-frame-pointer"],
    "thread": ["-fsanitize=thread"],
}


@pytest.mark.skipif(CC is None, reason="no C compiler on this machine (the extension "
                    "build needs one too)")
@pytest.mark.parametrize("sanitizer", list(SANITIZERS))
def test_c_core_under_sanitizer(tmp_path: Path, sanitizer: str) -> None:
    assert CC is not None
    exe = tmp_path / "sanity"
    sources = [str(PROGRAM), *sorted(str(p) for p in CSRC.glob("*.c"))]
    build = subprocess.run(
        [CC, "-std=c11", "-O1", "-g", *SANITIZERS[sanitizer], f"-I{CSRC}", *sources,
         "-lm", "-lpthread", "-o", str(exe)],
        capture_output=True, text=True, timeout=300, check=False)
    assert build.returncode == 0, build.stderr
    seconds = os.environ.get("PETRA_SOAK_SECONDS", "1")
    env = {**os.environ, "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0",
           "UBSAN_OPTIONS": "print_stacktrace=1", "TSAN_OPTIONS": "halt_on_error=1"}
    run = subprocess.run([str(exe), seconds], capture_output=True, text=True, env=env,
                         timeout=float(seconds) * 4 + 240, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.startswith("ok: 0 failed checks"), run.stdout
    assert "runtime error" not in run.stderr and "WARNING: ThreadSanitizer" not in run.stderr
