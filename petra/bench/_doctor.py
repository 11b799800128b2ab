"""``petra-bench doctor``: is this box fit for a real-time scan, and what to fix if not.

Each check reads what the kernel exposes (``/proc``, ``/sys``, ``/dev``, ``/etc``)
under an injectable root, so tests feed a fake tree from ``tmp_path`` and assert every
verdict; the few facts that need a live process (resource limits, whether
``SCHED_FIFO`` and ``mlockall`` are actually granted) come from an injectable
:class:`Probe`.

Verdicts: **pass** (fine), **warn** (works, but costs latency or safety margin; the
remedy says what to change), **fail** (a 1 ms scan cannot be held, or real-time mode
will refuse to start). The exit status is 1 when anything fails.

Facts the checks rely on
------------------------
- A PREEMPT_RT kernel has ``/sys/kernel/realtime`` = 1 and says ``PREEMPT_RT`` in
  ``uname -v`` (``/proc/sys/kernel/version`` holds the same text). A ``PREEMPT`` or
  ``PREEMPT_DYNAMIC`` kernel is preemptible but keeps long non-preemptible sections
  (spinlocks, softirqs): usable for 10 ms scans, not a guarantee at 1 ms.
- ``RLIMIT_RTPRIO`` and ``RLIMIT_MEMLOCK`` do not bind a process with CAP_SYS_NICE /
  CAP_IPC_LOCK (root), so the limits check warns rather than fails for root: the
  service user is what matters. Whether the calls succeed is tested for real in a
  short-lived child (``sched_setscheduler`` changes the calling process, and
  ``mlockall`` of the doctor itself would be pointless).
- irqbalance (>= 1.0) leaves isolated and ``nohz_full`` CPUs alone, so it only matters
  when no CPU is isolated.
- Timer slack (default 50 us) rounds every SCHED_OTHER sleep up; the scan sets its own
  to 1 ns with ``prctl``, and SCHED_FIFO tasks have none. The check verifies that the
  ``prctl`` takes effect.
"""

from __future__ import annotations

import argparse
import enum
import json
import os
import re
import resource
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

DOCTOR_SCHEMA_VERSION = 1
DEFAULT_PRIORITY = 80
MEMLOCK_MIN_BYTES = 64 << 20
SERVICE_USER = "petra"


class Verdict(enum.StrEnum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check's outcome: what was found, and the one-line fix when it is not a pass."""

    key: str
    title: str
    verdict: Verdict
    detail: str
    remedy: str = ""

    def to_json(self) -> dict[str, str]:
        return {"key": self.key, "title": self.title, "verdict": str(self.verdict),
                "detail": self.detail, "remedy": self.remedy}


@dataclass(frozen=True, slots=True)
class TrialResult:
    """What a short-lived child could do with this process's privileges and limits."""

    fifo: bool
    fifo_error: str
    mlockall: bool
    mlockall_error: str
    timer_slack_ns: int | None
    """The child's timer slack after asking for 1 ns (None if unreadable)."""


class Probe(Protocol):
    """The live facts the doctor cannot read from files."""

    def euid(self) -> int: ...

    def rlimit(self, which: int) -> tuple[int, int]: ...

    def trial(self, priority: int) -> TrialResult: ...

    def writable(self, path: Path) -> bool: ...


class SystemProbe:
    """The real process: its limits, and a forked child that tries the RT calls."""

    def euid(self) -> int:
        return os.geteuid()

    def rlimit(self, which: int) -> tuple[int, int]:
        return resource.getrlimit(which)

    def writable(self, path: Path) -> bool:
        return os.access(path, os.W_OK)

    def trial(self, priority: int) -> TrialResult:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: try, report one JSON line, exit without cleanup
            try:
                os.close(read_fd)
                os.write(write_fd, json.dumps(_child_trial(priority)).encode())
            finally:
                os._exit(0)
        os.close(write_fd)
        chunks = []
        with os.fdopen(read_fd, "rb") as pipe:
            chunks.append(pipe.read())
        os.waitpid(pid, 0)
        try:
            data = json.loads(b"".join(chunks) or b"{}")
        except ValueError:
            data = {}
        return TrialResult(
            fifo=bool(data.get("fifo")), fifo_error=str(data.get("fifo_error", "no answer")),
            mlockall=bool(data.get("mlockall")),
            mlockall_error=str(data.get("mlockall_error", "no answer")),
            timer_slack_ns=data.get("timer_slack_ns"))


def _child_trial(priority: int) -> dict[str, Any]:
    """In the forked child: the same calls the scan makes (``petra.scan._rt``)."""
    from petra import _core  # only the child needs the C core

    out: dict[str, Any] = {}
    # Timer slack first: once SCHED_FIFO, the kernel reports 0 whatever was asked.
    _core.set_timerslack(1)
    try:
        out["timer_slack_ns"] = int(Path("/proc/self/timerslack_ns").read_text())
    except (OSError, ValueError):
        out["timer_slack_ns"] = None
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
        out["fifo"], out["fifo_error"] = True, ""
    except OSError as exc:
        out["fifo"], out["fifo_error"] = False, exc.strerror or str(exc)
    try:
        _core.mlockall()
        out["mlockall"], out["mlockall_error"] = True, ""
    except OSError as exc:
        out["mlockall"], out["mlockall_error"] = False, exc.strerror or str(exc)
    return out


def parse_cpu_list(text: str) -> set[int]:
    """``"1-3,5"`` -> {1, 2, 3, 5} (the kernel's cpulist format; empty -> empty)."""
    cpus: set[int] = set()
    for raw in text.strip().split(","):
        part = raw.strip()
        if not part:
            continue
        if "-" in part:
            lo, hi = part.split("-", 1)
            hi = hi.split(":", 1)[0]  # "0-7:2/4" group syntax: take the range
            cpus.update(range(int(lo), int(hi) + 1))
        elif part.isdigit():
            cpus.add(int(part))
    return cpus


def _fmt_cpus(cpus: set[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus)) if cpus else "none"


def _bytes(n: int) -> str:
    return "unlimited" if n == resource.RLIM_INFINITY else f"{n / (1 << 20):.0f} MiB"


class Doctor:
    """Runs every check against one root (``/`` on the real box)."""

    def __init__(self, root: Path = Path("/"), *, probe: Probe | None = None,
                 priority: int = DEFAULT_PRIORITY, service_user: str = SERVICE_USER) -> None:
        self.root = root
        self.probe: Probe = probe if probe is not None else SystemProbe()
        self.priority = priority
        self.service_user = service_user
        self._trial: TrialResult | None = None

    # ------------------------------------------------------------------ helpers
    def path(self, rel: str) -> Path:
        return self.root / rel.lstrip("/")

    def read(self, rel: str) -> str | None:
        """A file's stripped text, or None when it is missing or unreadable."""
        try:
            return self.path(rel).read_text(errors="replace").strip()
        except OSError:
            return None

    def cmdline(self) -> dict[str, str]:
        """Kernel command line parameters (``flag`` -> "" for bare flags)."""
        params: dict[str, str] = {}
        for token in (self.read("/proc/cmdline") or "").split():
            key, _, value = token.partition("=")
            params[key] = value
        return params

    def online_cpus(self) -> set[int]:
        return parse_cpu_list(self.read("/sys/devices/system/cpu/online") or "")

    def isolated_cpus(self) -> set[int]:
        return parse_cpu_list(self.read("/sys/devices/system/cpu/isolated") or "")

    def trial(self) -> TrialResult:
        if self._trial is None:
            self._trial = self.probe.trial(self.priority)
        return self._trial

    # ------------------------------------------------------------------ running
    def checks(self) -> list[Callable[[], CheckResult]]:
        return [self.check_kernel, self.check_isolcpus, self.check_nohz_full,
                self.check_rcu_nocbs, self.check_governor, self.check_smt,
                self.check_rtprio, self.check_memlock, self.check_sched_fifo,
                self.check_mlockall, self.check_cpu_dma_latency, self.check_swap,
                self.check_timer_slack, self.check_rt_throttling, self.check_clocksource,
                self.check_irqbalance, self.check_service_limits]

    def run(self) -> list[CheckResult]:
        results = []
        for check in self.checks():
            try:
                results.append(check())
            except Exception as exc:  # one broken check must not hide the rest
                name = check.__name__.removeprefix("check_")
                results.append(CheckResult(name, name, Verdict.WARN,
                                           f"check failed: {type(exc).__name__}: {exc}",
                                           "report this as a petra-bench bug"))
        return results

    # ------------------------------------------------------------------ kernel
    def check_kernel(self) -> CheckResult:
        title = "PREEMPT_RT kernel"
        version = self.read("/proc/sys/kernel/version") or ""
        release = self.read("/proc/sys/kernel/osrelease") or "unknown release"
        if self.read("/sys/kernel/realtime") == "1" or "PREEMPT_RT" in version:
            return CheckResult("kernel", title, Verdict.PASS, f"PREEMPT_RT ({release})")
        remedy = "install a PREEMPT_RT kernel (Debian: apt install linux-image-rt-amd64) and reboot"
        if re.search(r"\bPREEMPT(_DYNAMIC)?\b", version):
            return CheckResult("kernel", title, Verdict.WARN,
                               f"preemptible but not PREEMPT_RT ({release}; {version})",
                               remedy + " for 1 ms scans")
        return CheckResult("kernel", title, Verdict.FAIL,
                           f"not preemptible ({release}; {version or 'version unknown'})",
                           remedy)

    def check_isolcpus(self) -> CheckResult:
        title = "isolated CPUs"
        online = self.online_cpus()
        isolated = self.isolated_cpus()
        cmd = self.cmdline()
        if isolated:
            return CheckResult("isolcpus", title, Verdict.PASS,
                               f"isolated {_fmt_cpus(isolated)} of online {_fmt_cpus(online)}"
                               "; pin the scan there (scan.cpu)")
        if "isolcpus" in cmd:
            return CheckResult("isolcpus", title, Verdict.WARN,
                               f"isolcpus={cmd['isolcpus']} on the command line but the "
                               "kernel isolated none",
                               "check the isolcpus syntax (e.g. isolcpus=domain,managed_irq,3)")
        if len(online) < 2:
            return CheckResult("isolcpus", title, Verdict.WARN,
                               f"only {len(online) or 'an unknown number of'} CPU(s) online: "
                               "the scan shares its CPU with everything else",
                               "use a box with 2+ cores so the scan can own one")
        last = max(online)
        return CheckResult("isolcpus", title, Verdict.WARN,
                           f"no isolated CPU (online {_fmt_cpus(online)})",
                           f"add isolcpus={last} nohz_full={last} rcu_nocbs={last} to "
                           f"GRUB_CMDLINE_LINUX, update-grub, reboot, set scan.cpu: {last}")

    def _cmdline_cpus_check(self, key: str, title: str, what: str) -> CheckResult:
        cmd = self.cmdline()
        isolated = self.isolated_cpus()
        if key not in cmd:
            target = _fmt_cpus(isolated) if isolated else "<scan cpu>"
            return CheckResult(key, title, Verdict.WARN, f"{key} not set ({what})",
                               f"add {key}={target} to the kernel command line")
        cpus = parse_cpu_list(cmd[key])
        missing = isolated - cpus
        if missing:
            return CheckResult(key, title, Verdict.WARN,
                               f"{key}={cmd[key]} misses isolated CPU(s) {_fmt_cpus(missing)}",
                               f"set {key} to cover {_fmt_cpus(isolated)}")
        return CheckResult(key, title, Verdict.PASS, f"{key}={cmd[key]}")

    def check_nohz_full(self) -> CheckResult:
        return self._cmdline_cpus_check("nohz_full", "tickless scan CPU",
                                        "the scheduler tick interrupts the scan CPU")

    def check_rcu_nocbs(self) -> CheckResult:
        return self._cmdline_cpus_check("rcu_nocbs", "RCU callbacks offloaded",
                                        "RCU callbacks may run on the scan CPU")

    # ------------------------------------------------------------------ CPUs
    def check_governor(self) -> CheckResult:
        title = "CPU frequency governor"
        base = self.path("/sys/devices/system/cpu")
        governors: dict[int, str] = {}
        for gov in sorted(base.glob("cpu[0-9]*/cpufreq/scaling_governor")):
            cpu = int(gov.parent.parent.name[3:])
            governors[cpu] = gov.read_text().strip()
        if not governors:
            return CheckResult("governor", title, Verdict.PASS,
                               "no frequency scaling exposed (fixed clock or virtual machine)")
        slow = {c: g for c, g in governors.items() if g != "performance"}
        if not slow:
            return CheckResult("governor", title, Verdict.PASS,
                               f"performance on all {len(governors)} CPUs")
        found = ", ".join(sorted({g for g in slow.values()}))
        return CheckResult("governor", title, Verdict.WARN,
                           f"{found} on CPU(s) {_fmt_cpus(set(slow))}: frequency ramps add "
                           "wake-up latency",
                           "set the performance governor (cpupower frequency-set -g "
                           "performance, or cpufreq.default_governor=performance)")

    def check_smt(self) -> CheckResult:
        title = "SMT (hyper-threading)"
        active = self.read("/sys/devices/system/cpu/smt/active")
        control = self.read("/sys/devices/system/cpu/smt/control")
        if active is None and control is None:
            return CheckResult("smt", title, Verdict.PASS, "no SMT control exposed")
        if active == "1":
            return CheckResult("smt", title, Verdict.WARN,
                               "SMT on: a sibling thread shares the scan's core",
                               "boot with nosmt (or keep the scan CPU's sibling idle/offline)")
        return CheckResult("smt", title, Verdict.PASS, f"SMT off ({control or 'inactive'})")

    # ------------------------------------------------------------------ limits
    def check_rtprio(self) -> CheckResult:
        title = "RLIMIT_RTPRIO"
        soft, _hard = self.probe.rlimit(resource.RLIMIT_RTPRIO)
        value = "unlimited" if soft == resource.RLIM_INFINITY else str(soft)
        if soft == resource.RLIM_INFINITY or soft >= self.priority:
            return CheckResult("rtprio", title, Verdict.PASS,
                               f"{value} (>= scan priority {self.priority})")
        remedy = (f"grant it: '@{self.service_user} - rtprio 95' in "
                  f"/etc/security/limits.d/petra.conf, or LimitRTPRIO=95 in the unit")
        if self.probe.euid() == 0:
            return CheckResult("rtprio", title, Verdict.WARN,
                               f"{value} for this process (root bypasses it; the "
                               f"{self.service_user} service user does not)", remedy)
        return CheckResult("rtprio", title, Verdict.FAIL,
                           f"{value} < scan priority {self.priority}", remedy)

    def check_memlock(self) -> CheckResult:
        title = "RLIMIT_MEMLOCK"
        soft, _hard = self.probe.rlimit(resource.RLIMIT_MEMLOCK)
        if soft == resource.RLIM_INFINITY or soft >= MEMLOCK_MIN_BYTES:
            return CheckResult("memlock", title, Verdict.PASS, _bytes(soft))
        remedy = (f"'@{self.service_user} - memlock unlimited' in "
                  "/etc/security/limits.d/petra.conf, or LimitMEMLOCK=infinity in the unit")
        detail = f"{_bytes(soft)} < {_bytes(MEMLOCK_MIN_BYTES)}: mlockall of the scan fails"
        if self.probe.euid() == 0:
            return CheckResult("memlock", title, Verdict.WARN,
                               f"{detail} for a non-root user (root bypasses it)",
                               remedy)
        return CheckResult("memlock", title, Verdict.FAIL, detail, remedy)

    def check_sched_fifo(self) -> CheckResult:
        title = "SCHED_FIFO allowed"
        t = self.trial()
        if t.fifo:
            return CheckResult("sched_fifo", title, Verdict.PASS,
                               f"a child got SCHED_FIFO priority {self.priority}")
        return CheckResult("sched_fifo", title, Verdict.FAIL,
                           f"sched_setscheduler(SCHED_FIFO, {self.priority}) refused: "
                           f"{t.fifo_error}",
                           "raise RLIMIT_RTPRIO (see rtprio) or run the scan with "
                           "CAP_SYS_NICE; in containers also allow it (--cap-add SYS_NICE)")

    def check_mlockall(self) -> CheckResult:
        title = "mlockall allowed"
        t = self.trial()
        if t.mlockall:
            return CheckResult("mlockall", title, Verdict.PASS,
                               "a child locked its memory (MCL_CURRENT|MCL_FUTURE)")
        return CheckResult("mlockall", title, Verdict.FAIL,
                           f"mlockall refused: {t.mlockall_error}",
                           "raise RLIMIT_MEMLOCK (see memlock) or grant CAP_IPC_LOCK")

    def check_cpu_dma_latency(self) -> CheckResult:
        title = "/dev/cpu_dma_latency"
        dev = self.path("/dev/cpu_dma_latency")
        if not dev.exists():
            return CheckResult("cpu_dma_latency", title, Verdict.WARN,
                               "missing: deep C-states cannot be held off",
                               "enable CONFIG_CPU_IDLE PM QoS or boot with "
                               "processor.max_cstate=1 intel_idle.max_cstate=0")
        if self.probe.writable(dev):
            return CheckResult("cpu_dma_latency", title, Verdict.PASS,
                               "writable: the scan can keep CPUs out of deep idle")
        return CheckResult("cpu_dma_latency", title, Verdict.WARN,
                           "not writable by this user: CPUs may sleep deeply between cycles",
                           "udev rule: KERNEL==\"cpu_dma_latency\", GROUP=\"petra\", "
                           "MODE=\"0660\"")

    def check_swap(self) -> CheckResult:
        title = "swap"
        text = self.read("/proc/swaps")
        if text is None:
            return CheckResult("swap", title, Verdict.PASS, "no /proc/swaps (no swap support)")
        devices = [line.split()[0] for line in text.splitlines()[1:] if line.strip()]
        if not devices:
            return CheckResult("swap", title, Verdict.PASS, "off")
        swappiness = self.read("/proc/sys/vm/swappiness") or "?"
        return CheckResult("swap", title, Verdict.WARN,
                           f"on ({', '.join(devices)}; swappiness {swappiness}): the scan is "
                           "locked, but drivers and sinks can stall on page-in",
                           "swapoff -a (and remove it from /etc/fstab), or vm.swappiness=1")

    def check_timer_slack(self) -> CheckResult:
        title = "timer slack"
        default = self.read("/proc/self/timerslack_ns")
        t = self.trial()
        where = f"default {int(default) / 1000:g} us" if default and default.isdigit() else \
            "default unknown"
        if t.timer_slack_ns == 1:
            return CheckResult("timer_slack", title, Verdict.PASS,
                               f"{where}; the scan's prctl(PR_SET_TIMERSLACK, 1) takes effect")
        got = "unreadable" if t.timer_slack_ns is None else f"{t.timer_slack_ns} ns"
        return CheckResult("timer_slack", title, Verdict.WARN,
                           f"{where}; after prctl(PR_SET_TIMERSLACK, 1) it is {got}",
                           "run the scan with SCHED_FIFO (RT tasks have no slack) and check "
                           "for a cgroup/seccomp policy that blocks prctl")

    def check_rt_throttling(self) -> CheckResult:
        title = "RT throttling"
        runtime = self.read("/proc/sys/kernel/sched_rt_runtime_us")
        period = self.read("/proc/sys/kernel/sched_rt_period_us") or "1000000"
        if runtime is None:
            return CheckResult("rt_throttling", title, Verdict.WARN,
                               "sched_rt_runtime_us not readable",
                               "check that /proc/sys is mounted")
        if runtime == "-1":
            return CheckResult("rt_throttling", title, Verdict.PASS,
                               "off: a runaway RT task can starve its CPU (no safety net)")
        share = int(runtime) / max(1, int(period))
        detail = f"RT tasks may use {share:.0%} of each {int(period) / 1e6:g} s"
        if share >= 0.9:
            return CheckResult("rt_throttling", title, Verdict.PASS,
                               detail + " (a safety net against a runaway scan)")
        return CheckResult("rt_throttling", title, Verdict.WARN,
                           detail + ": a busy scan gets throttled",
                           "sysctl kernel.sched_rt_runtime_us=950000")

    def check_clocksource(self) -> CheckResult:
        title = "clocksource"
        current = self.read("/sys/devices/system/clocksource/clocksource0/current_clocksource")
        available = self.read(
            "/sys/devices/system/clocksource/clocksource0/available_clocksource") or ""
        if current is None:
            return CheckResult("clocksource", title, Verdict.WARN, "not exposed",
                               "check that /sys is mounted")
        if current == "tsc" or current in {"arch_sys_counter", "kvm-clock",
                                           "hyperv_clocksource_tsc_page"}:
            return CheckResult("clocksource", title, Verdict.PASS,
                               f"{current} (read in user space through the vDSO)")
        remedy = ("boot with clocksource=tsc tsc=reliable" if "tsc" in available.split()
                  else "check the BIOS for a stable TSC (constant_tsc, nonstop_tsc)")
        verdict = Verdict.FAIL if current in {"hpet", "acpi_pm", "jiffies"} else Verdict.WARN
        return CheckResult("clocksource", title, verdict,
                           f"{current}: every clock read is a slow system call "
                           f"(available: {available or '?'})", remedy)

    def _processes_named(self, name: str) -> Iterator[int]:
        for comm in self.path("/proc").glob("[0-9]*/comm"):
            try:
                if comm.read_text().strip() == name:
                    yield int(comm.parent.name)
            except (OSError, ValueError):
                continue

    def check_irqbalance(self) -> CheckResult:
        title = "irqbalance"
        pids = list(self._processes_named("irqbalance"))
        if not pids:
            return CheckResult("irqbalance", title, Verdict.PASS,
                               "not running: interrupt affinities stay where they are set")
        if self.isolated_cpus():
            return CheckResult("irqbalance", title, Verdict.PASS,
                               "running; it keeps interrupts off isolated CPUs")
        return CheckResult("irqbalance", title, Verdict.WARN,
                           "running with no isolated CPU: it may move interrupts onto the "
                           "scan's CPU",
                           "isolate the scan CPU, or set IRQBALANCE_BANNED_CPULIST=<scan cpu> "
                           "in /etc/default/irqbalance")

    # ------------------------------------------------------------------ the service user
    def _limits_lines(self) -> Iterator[str]:
        files = [self.path("/etc/security/limits.conf"),
                 *sorted(self.path("/etc/security/limits.d").glob("*.conf"))]
        for f in files:
            try:
                text = f.read_text(errors="replace")
            except OSError:
                continue
            for raw in text.splitlines():
                line = raw.split("#", 1)[0].strip()
                if line:
                    yield line

    def check_service_limits(self) -> CheckResult:
        title = f"limits for user {self.service_user}"
        passwd = self.read("/etc/passwd") or ""
        if not any(line.split(":", 1)[0] == self.service_user for line in passwd.splitlines()):
            return CheckResult("service_limits", title, Verdict.PASS,
                               f"no {self.service_user} user (the service runs as another "
                               "user; the checks above apply to this one)")
        who = {self.service_user, f"@{self.service_user}", "*"}
        granted: dict[str, str] = {}
        for line in self._limits_lines():
            fields = line.split()
            if len(fields) == 4 and fields[0] in who and fields[1] in {"-", "hard", "soft"}:
                granted[fields[2]] = fields[3]
        missing = []
        rtprio = granted.get("rtprio")
        if rtprio is None or (rtprio.isdigit() and int(rtprio) < self.priority):
            missing.append(f"rtprio ({rtprio or 'not set'})")
        memlock = granted.get("memlock")
        if memlock is None or (memlock.isdigit() and int(memlock) * 1024 < MEMLOCK_MIN_BYTES):
            missing.append(f"memlock ({memlock or 'not set'})")
        if not missing:
            return CheckResult("service_limits", title, Verdict.PASS,
                               f"limits.conf grants rtprio {rtprio}, memlock {memlock}")
        return CheckResult("service_limits", title, Verdict.WARN,
                           f"limits.conf does not grant {', '.join(missing)} (fine if the "
                           "systemd unit sets LimitRTPRIO/LimitMEMLOCK)",
                           f"'@{self.service_user} - rtprio 95' and '@{self.service_user} - "
                           "memlock unlimited' in /etc/security/limits.d/petra.conf")


# ---------------------------------------------------------------------- reporting
def summary(results: list[CheckResult]) -> dict[str, int]:
    counts = {str(v): 0 for v in Verdict}
    for r in results:
        counts[str(r.verdict)] += 1
    return counts


def report_json(doctor: Doctor, results: list[CheckResult]) -> dict[str, Any]:
    return {
        "schema_version": DOCTOR_SCHEMA_VERSION,
        "tool": "petra-bench doctor",
        "host": doctor.read("/proc/sys/kernel/hostname") or "",
        "kernel": doctor.read("/proc/sys/kernel/osrelease") or "",
        "ok": not any(r.verdict is Verdict.FAIL for r in results),
        "summary": summary(results),
        "checks": [r.to_json() for r in results],
    }


def report_text(results: list[CheckResult], *, color: bool = False) -> str:
    paint = {Verdict.PASS: "\x1b[32m", Verdict.WARN: "\x1b[33m", Verdict.FAIL: "\x1b[31;1m"}
    width = max(len(r.title) for r in results) if results else 0
    lines = []
    for r in results:
        tag = r.verdict.upper()
        if color:
            tag = f"{paint[r.verdict]}{tag}\x1b[0m"
        lines.append(f"{tag}  {r.title.ljust(width)}  {r.detail}")
        if r.remedy:
            lines.append(f"      {' ' * width}  -> {r.remedy}")
    counts = summary(results)
    verdict = ("not fit for real-time work until the failures are fixed" if counts["fail"]
               else "fit, with the warnings above costing latency" if counts["warn"]
               else "fit for real-time work")
    lines.append("")
    lines.append(f"{counts['pass']} pass, {counts['warn']} warn, {counts['fail']} fail: "
                 f"{verdict}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------- command line
def register(subparsers: Any) -> None:
    """Add ``petra-bench doctor`` to the command's subparsers."""
    p = subparsers.add_parser(
        "doctor", help="check this box for real-time fitness and say what to fix",
        description="Check the kernel, CPUs, limits and devices a real-time scan depends "
                    "on. Exit status 1 when any check fails.")
    p.add_argument("--json", action="store_true", help="print the results as one JSON object")
    p.add_argument("--priority", type=int, default=DEFAULT_PRIORITY,
                   help=f"SCHED_FIFO priority the scan will use (default {DEFAULT_PRIORITY})")
    p.add_argument("--user", default=SERVICE_USER,
                   help=f"service user whose limits.conf grants to check (default "
                        f"{SERVICE_USER})")
    p.add_argument("--root", type=Path, default=Path("/"), help=argparse.SUPPRESS)
    p.set_defaults(func=run_doctor)


def run_doctor(args: Any) -> int:
    doctor = Doctor(args.root, priority=args.priority, service_user=args.user)
    results = doctor.run()
    if args.json:
        print(json.dumps(report_json(doctor, results), indent=2))
    else:
        print(report_text(results, color=sys.stdout.isatty()), end="")
    return 1 if any(r.verdict is Verdict.FAIL for r in results) else 0
