"""The Debian package's source files, checked without building it (fast, any machine).

The units are read the way systemd reads them (sections, ``Key=value`` lines, ``#``
comments); what matters is that the two units stay one unit apart from what an
instance must change, and that the hardening never takes away what the real-time
scan needs. The build-time man page generator runs against this checkout's commands,
so a CLI change that would break the package build fails here first.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from petra.bench._doctor import Doctor, SystemProbe
from petra.config._models import DEFAULT_FIFO_PRIORITY

ROOT = Path(__file__).resolve().parents[2]
DEB = ROOT / "packaging" / "deb" / "debian"
UNITS = ("petra.service", "petra@.service")
# What an instance of petra@.service must say differently from petra.service.
PER_INSTANCE = {"Description", "Environment", "EnvironmentFile", "ExecStart"}
# Settings that would take away SCHED_FIFO, /dev/cpu_dma_latency, serial ports or the
# shared /dev/shm, or break libffi (see the comments in the units).
FORBIDDEN = {"RestrictRealtime", "PrivateDevices", "MemoryDenyWriteExecute", "PrivateIPC",
             "DevicePolicy"}


def unit_settings(path: Path) -> list[tuple[str, str, str]]:
    """(section, key, value) for every setting, in file order."""
    section = ""
    out = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not a setting: {raw!r}"
        out.append((section, key.strip(), value.strip()))
    return out


def settings_dict(path: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for _, key, value in unit_settings(path):
        assert key not in found, f"{path.name}: {key} set twice"
        found[key] = value
    return found


def test_the_two_units_differ_only_where_an_instance_must() -> None:
    plain, template = (
        {(s, k, v) for s, k, v in unit_settings(DEB / u) if k not in PER_INSTANCE}
        for u in UNITS)
    assert plain == template, f"only in petra.service: {sorted(plain - template)}; " \
                              f"only in petra@.service: {sorted(template - plain)}"
    inst = settings_dict(DEB / "petra@.service")
    assert "%i" in inst["Description"]
    assert inst["ExecStart"].split()[:4] == ["/usr/bin/petra", "run", "/etc/petra/%i.yaml",
                                             "--instance"]
    assert settings_dict(DEB / "petra.service")["ExecStart"].split()[:3] == \
        ["/usr/bin/petra", "run", "/etc/petra/plant.yaml"]


@pytest.mark.parametrize("unit", UNITS)
def test_hardening_leaves_real_time_possible(unit: str) -> None:
    s = settings_dict(DEB / unit)
    assert not FORBIDDEN & s.keys(), FORBIDDEN & s.keys()
    assert s["Type"] == "notify" and s["NotifyAccess"] == "main"
    assert int(s["WatchdogSec"]) >= 2  # the supervisor pets every WatchdogSec/2
    assert s["Restart"] == "on-failure"
    assert s["User"] == s["Group"] == "petra"
    assert s["LimitMEMLOCK"] == "infinity"
    rtprio = int(s["LimitRTPRIO"])
    assert DEFAULT_FIFO_PRIORITY <= rtprio < 99
    limits = (DEB / "limits.conf").read_text()
    assert re.search(rf"^@petra\s+-\s+rtprio\s+{rtprio}$", limits, re.M), limits
    assert re.search(r"^@petra\s+-\s+memlock\s+unlimited$", limits, re.M), limits
    # No capabilities by default; the drop-in grants exactly the two RT ones.
    assert s["CapabilityBoundingSet"] == "" and s["AmbientCapabilities"] == ""
    drop_in = settings_dict(DEB / "rt-capabilities.conf")
    assert set(drop_in["AmbientCapabilities"].split()) == {"CAP_SYS_NICE", "CAP_IPC_LOCK"}
    assert drop_in["CapabilityBoundingSet"] == drop_in["AmbientCapabilities"]
    # The system call filter must keep what the scan calls.
    assert s["SystemCallFilter"] == "@system-service"


class _NotWritable(SystemProbe):
    def writable(self, path: Path) -> bool:
        return False


def test_the_udev_rule_is_the_one_the_doctor_recommends(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "cpu_dma_latency").touch()
    result = Doctor(tmp_path, probe=_NotWritable()).check_cpu_dma_latency()
    recommended = result.remedy.removeprefix("udev rule: ")
    rules = [line for line in (DEB / "petra.udev").read_text().splitlines()
             if line and not line.startswith("#")]
    assert rules == [recommended]


def test_maintainer_scripts_are_posix_sh() -> None:
    for name in ("petra.postinst", "petra.postrm"):
        script = DEB / name
        subprocess.run(["sh", "-n", str(script)], check=True)
        if shutil.which("checkbashisms"):
            done = subprocess.run(["checkbashisms", str(script)], check=False,
                                  capture_output=True, text=True)
            assert done.returncode == 0, done.stdout + done.stderr
    for tool in ("tools/build-deb", "tools/test-package.sh"):
        subprocess.run(["bash", "-n", str(ROOT / tool)], check=True)


def test_man_pages_come_from_the_commands_help(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-I", str(DEB / "mkman.py"), str(tmp_path), "9.9.9",
                    "2026-01-02"], check=True, timeout=120)
    pages = {p.name: p.read_text() for p in tmp_path.iterdir()}
    assert set(pages) == {"petra.1", "petra-top.1", "petra-bench.1"}
    for name, text in pages.items():
        command = name.removesuffix(".1")
        assert text.startswith(f'.TH {command.upper()} 1 "2026-01-02" "petra 9.9.9"')
        assert f"\n.SH NAME\n{command} \\- " in text
        assert f"usage: {command}" in text
    # Every subcommand gets its own section with its own usage line.
    for sub in ("run", "check", "reload", "segment"):
        assert f"\n.SS {sub}\n" in pages["petra.1"]
        assert f"usage: petra {sub}" in pages["petra.1"]
    for sub in ("jitter", "doctor"):
        assert f"\n.SS {sub}\n" in pages["petra-bench.1"]
    # Lines that would read as roff requests are escaped.
    for text in pages.values():
        body = text.split(".SH USAGE", 1)[1]
        inside_nofill = False
        for line in body.splitlines():
            if line in (".nf", ".fi"):
                inside_nofill = line == ".nf"
            elif inside_nofill:
                assert not line.startswith((".", "'")), line
