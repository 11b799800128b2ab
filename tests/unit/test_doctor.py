"""petra-bench doctor: every verdict of every check, on a fake /proc and /sys tree.

A healthy box is written under tmp_path; each case changes a few files (or what the
fake probe says) and asserts the verdict of the check concerned. One test runs the
doctor on this machine for real and checks the JSON it prints.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from petra.bench import DOCTOR_SCHEMA_VERSION, Doctor, TrialResult, Verdict
from petra.bench._doctor import parse_cpu_list, report_json, report_text

INF = resource.RLIM_INFINITY

HEALTHY: dict[str, str] = {
    "proc/sys/kernel/version": "#1 SMP PREEMPT_RT Debian 6.1.90-1",
    "proc/sys/kernel/osrelease": "6.1.0-21-rt-amd64",
    "proc/sys/kernel/hostname": "plc1",
    "sys/kernel/realtime": "1",
    "proc/cmdline": "BOOT_IMAGE=/vmlinuz ro quiet isolcpus=3 nohz_full=3 rcu_nocbs=3",
    "sys/devices/system/cpu/online": "0-3",
    "sys/devices/system/cpu/isolated": "3",
    "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor": "performance",
    "sys/devices/system/cpu/cpu3/cpufreq/scaling_governor": "performance",
    "sys/devices/system/cpu/smt/active": "0",
    "sys/devices/system/cpu/smt/control": "off",
    "dev/cpu_dma_latency": "",
    "proc/swaps": "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n",
    "proc/sys/vm/swappiness": "60",
    "proc/self/timerslack_ns": "50000",
    "proc/sys/kernel/sched_rt_runtime_us": "950000",
    "proc/sys/kernel/sched_rt_period_us": "1000000",
    "sys/devices/system/clocksource/clocksource0/current_clocksource": "tsc",
    "sys/devices/system/clocksource/clocksource0/available_clocksource": "tsc hpet acpi_pm",
    "proc/1/comm": "systemd",
    "etc/passwd": "root:x:0:0:root:/root:/bin/bash\npetra:x:998:998::/var/lib/petra:/bin/false\n",
    "etc/security/limits.d/petra.conf": "@petra - rtprio 95\n@petra - memlock unlimited\n",
}


@dataclass
class FakeProbe:
    uid: int = 998
    limits: dict[int, tuple[int, int]] = field(default_factory=lambda: {
        resource.RLIMIT_RTPRIO: (95, 95), resource.RLIMIT_MEMLOCK: (INF, INF)})
    result: TrialResult = field(default_factory=lambda: TrialResult(
        fifo=True, fifo_error="", mlockall=True, mlockall_error="", timer_slack_ns=1))
    trials: int = 0
    can_write: bool = True

    def euid(self) -> int:
        return self.uid

    def rlimit(self, which: int) -> tuple[int, int]:
        return self.limits[which]

    def trial(self, priority: int) -> TrialResult:
        self.trials += 1
        return self.result

    def writable(self, path: Path) -> bool:
        return self.can_write and path.exists()


def make_root(tmp_path: Path, changes: dict[str, str | None] | None = None) -> Path:
    files: dict[str, str | None] = {**HEALTHY, **(changes or {})}
    for rel, text in files.items():
        if text is None:
            continue
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return tmp_path


def verdicts(doctor: Doctor) -> dict[str, Verdict]:
    return {r.key: r.verdict for r in doctor.run()}


def test_healthy_box_passes_everything(tmp_path: Path) -> None:
    probe = FakeProbe()
    doctor = Doctor(make_root(tmp_path), probe=probe)
    results = doctor.run()
    bad = [(r.key, r.detail) for r in results if r.verdict is not Verdict.PASS]
    assert bad == []
    assert all(r.remedy == "" for r in results)
    assert probe.trials == 1  # one child for sched_fifo, mlockall and timer slack
    assert len({r.key for r in results}) == len(results) == 17


CASES: list[tuple[str, dict[str, str | None], str, Verdict]] = [
    # kernel
    ("rt via uname only", {"sys/kernel/realtime": None}, "kernel", Verdict.PASS),
    ("preempt dynamic", {"sys/kernel/realtime": None,
                         "proc/sys/kernel/version": "#1 SMP PREEMPT_DYNAMIC Debian"},
     "kernel", Verdict.WARN),
    ("voluntary kernel", {"sys/kernel/realtime": "0",
                          "proc/sys/kernel/version": "#1 SMP Debian 6.1.90-1"},
     "kernel", Verdict.FAIL),
    # isolation
    ("no isolation", {"sys/devices/system/cpu/isolated": "", "proc/cmdline": "ro quiet"},
     "isolcpus", Verdict.WARN),
    ("isolcpus ignored", {"sys/devices/system/cpu/isolated": ""}, "isolcpus", Verdict.WARN),
    ("single cpu", {"sys/devices/system/cpu/isolated": "", "proc/cmdline": "ro",
                    "sys/devices/system/cpu/online": "0"}, "isolcpus", Verdict.WARN),
    ("nohz missing", {"proc/cmdline": "ro isolcpus=3 rcu_nocbs=3"}, "nohz_full", Verdict.WARN),
    ("nohz misses isolated", {"proc/cmdline": "ro isolcpus=2-3 nohz_full=3 rcu_nocbs=2-3",
                              "sys/devices/system/cpu/isolated": "2-3"},
     "nohz_full", Verdict.WARN),
    ("rcu range", {"proc/cmdline": "ro isolcpus=2,3 nohz_full=2-3 rcu_nocbs=1-3",
                   "sys/devices/system/cpu/isolated": "2-3"}, "rcu_nocbs", Verdict.PASS),
    ("rcu missing", {"proc/cmdline": "ro isolcpus=3 nohz_full=3"}, "rcu_nocbs", Verdict.WARN),
    # CPUs
    ("powersave", {"sys/devices/system/cpu/cpu3/cpufreq/scaling_governor": "powersave"},
     "governor", Verdict.WARN),
    ("no cpufreq", {"sys/devices/system/cpu/cpu0/cpufreq/scaling_governor": None,
                    "sys/devices/system/cpu/cpu3/cpufreq/scaling_governor": None},
     "governor", Verdict.PASS),
    ("smt on", {"sys/devices/system/cpu/smt/active": "1",
                "sys/devices/system/cpu/smt/control": "on"}, "smt", Verdict.WARN),
    ("smt unsupported", {"sys/devices/system/cpu/smt/active": None,
                         "sys/devices/system/cpu/smt/control": "notsupported"},
     "smt", Verdict.PASS),
    # devices and memory
    ("no dma latency", {"dev/cpu_dma_latency": None}, "cpu_dma_latency", Verdict.WARN),
    ("swap on", {"proc/swaps": HEALTHY["proc/swaps"]
                 + "/dev/sda3 partition 999420 0 -2\n"}, "swap", Verdict.WARN),
    # scheduler
    ("throttling off", {"proc/sys/kernel/sched_rt_runtime_us": "-1"},
     "rt_throttling", Verdict.PASS),
    ("throttling tight", {"proc/sys/kernel/sched_rt_runtime_us": "500000"},
     "rt_throttling", Verdict.WARN),
    ("throttling unreadable", {"proc/sys/kernel/sched_rt_runtime_us": None},
     "rt_throttling", Verdict.WARN),
    # clocks
    ("kvm clock", {"sys/devices/system/clocksource/clocksource0/current_clocksource":
                   "kvm-clock"}, "clocksource", Verdict.PASS),
    ("hpet", {"sys/devices/system/clocksource/clocksource0/current_clocksource": "hpet"},
     "clocksource", Verdict.FAIL),
    ("odd clock", {"sys/devices/system/clocksource/clocksource0/current_clocksource":
                   "refined-jiffies"}, "clocksource", Verdict.WARN),
    # irqbalance
    ("irqbalance with isolation", {"proc/812/comm": "irqbalance"}, "irqbalance",
     Verdict.PASS),
    ("irqbalance without isolation", {"proc/812/comm": "irqbalance",
                                      "sys/devices/system/cpu/isolated": ""},
     "irqbalance", Verdict.WARN),
    # service user
    ("limits missing", {"etc/security/limits.d/petra.conf": "# nothing\n"},
     "service_limits", Verdict.WARN),
    ("rtprio too low", {"etc/security/limits.d/petra.conf":
                        "petra - rtprio 10\npetra - memlock unlimited\n"},
     "service_limits", Verdict.WARN),
    ("limits.conf grants", {"etc/security/limits.d/petra.conf": None,
                            "etc/security/limits.conf":
                            "@petra hard rtprio 99\n@petra - memlock 131072 # KiB\n"},
     "service_limits", Verdict.PASS),
    ("no petra user", {"etc/passwd": "root:x:0:0::/root:/bin/sh\n",
                       "etc/security/limits.d/petra.conf": None},
     "service_limits", Verdict.PASS),
]


@pytest.mark.parametrize(("case", "changes", "key", "expected"), CASES,
                         ids=[c[0] for c in CASES])
def test_file_checks(tmp_path: Path, case: str, changes: dict[str, str | None], key: str,
                     expected: Verdict) -> None:
    doctor = Doctor(make_root(tmp_path, changes), probe=FakeProbe())
    results = {r.key: r for r in doctor.run()}
    assert results[key].verdict is expected, results[key].detail
    assert bool(results[key].remedy) == (expected is not Verdict.PASS)
    others = [k for k, r in results.items() if k != key and r.verdict is Verdict.FAIL]
    assert others == []


def test_unwritable_dma_latency_warns(tmp_path: Path) -> None:
    probe = FakeProbe(can_write=False)
    assert verdicts(Doctor(make_root(tmp_path), probe=probe))["cpu_dma_latency"] is Verdict.WARN


@pytest.mark.parametrize(("uid", "expected"), [(998, Verdict.FAIL), (0, Verdict.WARN)])
def test_limits_fail_for_users_and_warn_for_root(tmp_path: Path, uid: int,
                                                 expected: Verdict) -> None:
    probe = FakeProbe(uid=uid, limits={resource.RLIMIT_RTPRIO: (0, 0),
                                       resource.RLIMIT_MEMLOCK: (8 << 20, 8 << 20)})
    v = verdicts(Doctor(make_root(tmp_path), probe=probe))
    assert v["rtprio"] is expected
    assert v["memlock"] is expected


def test_rtprio_below_the_scan_priority(tmp_path: Path) -> None:
    probe = FakeProbe(limits={resource.RLIMIT_RTPRIO: (50, 50),
                              resource.RLIMIT_MEMLOCK: (INF, INF)})
    assert verdicts(Doctor(make_root(tmp_path), probe=probe))["rtprio"] is Verdict.FAIL
    low = Doctor(make_root(tmp_path), probe=probe, priority=40)
    assert verdicts(low)["rtprio"] is Verdict.PASS


def test_refused_trials_fail(tmp_path: Path) -> None:
    probe = FakeProbe(result=TrialResult(fifo=False, fifo_error="Operation not permitted",
                                         mlockall=False, mlockall_error="Cannot allocate memory",
                                         timer_slack_ns=50000))
    results = {r.key: r for r in Doctor(make_root(tmp_path), probe=probe).run()}
    assert results["sched_fifo"].verdict is Verdict.FAIL
    assert "Operation not permitted" in results["sched_fifo"].detail
    assert results["mlockall"].verdict is Verdict.FAIL
    assert results["timer_slack"].verdict is Verdict.WARN


def test_empty_root_never_crashes(tmp_path: Path) -> None:
    results = Doctor(tmp_path, probe=FakeProbe()).run()
    assert len(results) == 17
    assert all(not r.detail.startswith("check failed") for r in results)
    assert {r.key: r.verdict for r in results}["kernel"] is Verdict.FAIL


def test_a_crashing_check_is_reported_not_raised(tmp_path: Path) -> None:
    class Broken(FakeProbe):
        def rlimit(self, which: int) -> tuple[int, int]:
            raise RuntimeError("boom")

    results = {r.key: r for r in Doctor(make_root(tmp_path), probe=Broken()).run()}
    assert results["rtprio"].verdict is Verdict.WARN
    assert "boom" in results["rtprio"].detail


def test_reports(tmp_path: Path) -> None:
    doctor = Doctor(make_root(tmp_path, {"sys/devices/system/clocksource/clocksource0/"
                                         "current_clocksource": "hpet"}), probe=FakeProbe())
    results = doctor.run()
    data = report_json(doctor, results)
    assert data["schema_version"] == DOCTOR_SCHEMA_VERSION
    assert data["ok"] is False
    assert data["host"] == "plc1"
    assert data["summary"] == {"pass": 16, "warn": 0, "fail": 1}
    json.dumps(data)
    text = report_text(results)
    assert "FAIL  clocksource" in text
    assert "-> boot with clocksource=tsc tsc=reliable" in text
    assert text.rstrip().endswith("not fit for real-time work until the failures are fixed")


@pytest.mark.parametrize(("text", "cpus"), [
    ("", set()), ("3", {3}), ("0-2,5", {0, 1, 2, 5}), ("1-3,7\n", {1, 2, 3, 7}),
    ("0-7:2/4", set(range(8))),
])
def test_parse_cpu_list(text: str, cpus: set[int]) -> None:
    assert parse_cpu_list(text) == cpus


def test_real_machine_json() -> None:
    """On this machine, for real: runs, valid JSON, exit status agrees with the verdicts."""
    out = subprocess.run([sys.executable, "-m", "petra.bench", "doctor", "--json"],
                         capture_output=True, text=True, timeout=60, check=False)
    data = json.loads(out.stdout)
    assert data["schema_version"] == DOCTOR_SCHEMA_VERSION
    assert len(data["checks"]) == 17
    for check in data["checks"]:
        assert check["verdict"] in {"pass", "warn", "fail"}
        assert check["detail"]
        assert not check["detail"].startswith("check failed"), check
    assert out.returncode == (0 if data["ok"] else 1)
    assert data["ok"] == (data["summary"]["fail"] == 0)
    text = subprocess.run([sys.executable, "-m", "petra.bench", "doctor"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert text.returncode == out.returncode
    assert "pass," in text.stdout
