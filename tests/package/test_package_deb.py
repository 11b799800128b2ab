"""The Debian package end to end: ``tools/test-package.sh``, when enabled.

The script builds the .deb, runs lintian, installs it on this machine, boots systemd
in a systemd-nspawn container to drive petra.service (READY through sd_notify, the
demo cycling, reload, stop, the watchdog restart after SIGSTOP, SCHED_FIFO in rt
mode), then removes and purges it. It needs root, apt and network access, and it
changes the machine for its duration (a package, a user, a group), so it runs only
where that is asked for, on a throwaway machine: ``PETRA_PACKAGE_TESTS=1
tools/test.sh tests/package``. Elsewhere this test is skipped with that reason, never
silently.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "test-package.sh"
ENABLED = os.environ.get("PETRA_PACKAGE_TESTS") == "1"
# The whole script takes 9-13 minutes on a loaded 2-core machine (build 4-6, lintian
# 3-4, the rest 2); the bound leaves room for a slower CI machine and a cold pip cache.
TIMEOUT_S = 25 * 60


@pytest.mark.skipif(not ENABLED, reason=(
    "Debian package test not enabled: set PETRA_PACKAGE_TESTS=1 to run it, as root on a "
    "throwaway machine (it needs apt and network access, and installs and purges the "
    "petra package)"))
def test_debian_package_end_to_end() -> None:
    t0 = time.monotonic()
    done = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, capture_output=True, text=True,
                          timeout=TIMEOUT_S, check=False)
    elapsed = time.monotonic() - t0
    out = done.stdout + done.stderr
    tail = "\n".join(out.splitlines()[-80:])
    assert done.returncode == 0, f"tools/test-package.sh exit {done.returncode}:\n{tail}"
    assert "all checks passed" in done.stdout, tail
    failed = [line for line in out.splitlines() if re.match(r"\s+FAIL ", line)]
    assert not failed, "\n".join(failed)
    passed = [line for line in out.splitlines() if re.match(r"\s+ok ", line)]
    assert len(passed) >= 40, f"only {len(passed)} checks ran:\n{tail}"
    print(f"\npackage test: {len(passed)} checks in {elapsed:.0f} s")
    print(next(line for line in out.splitlines() if " done in " in line))
