"""Child processes of a plant: what to start, and how each one's life is tracked.

Each child is a fresh interpreter running one ``petra`` subcommand (scan, driver,
sink), so a crash or leak in one never touches another and a restart is clean. A
child is asked to die with its parent (``PR_SET_PDEATHSIG``): a killed supervisor
leaves no orphan talking to field devices.

Children start isolated from where ``petra run`` was typed: ``python -I`` (no current
directory or script directory on ``sys.path``, no ``PYTHON*`` variables, no user
site-packages) in the working directory ``/``. Without it a ``petra/`` folder in the
caller's directory shadowed the installed package in every child (a source checkout
without the C core built in place failed them all; as root in a directory others can
write, it is code execution). Paths handed to a child are therefore absolute.

Restart policy: exponential backoff from ``backoff_initial_s`` doubling to
``backoff_max_s``; more than ``budget`` restarts inside ``budget_window_s`` marks the
child FAILED and it is left down (the rest of the plant keeps running and /healthz
says why).

Start-up follows progress, not a fixed time. Before a child has claimed its heartbeat
record, progress is its CPU time growing (an interpreter importing its modules on a
loaded box is slow but busy; a child blocked for good burns nothing); once its record
says STARTING, every beat is progress (the scan beats once per start-up step and while
its plant loader burns CPU). A start is judged stuck when no progress was seen for
``startup_grace_s``, or when it has not become ready within the absolute cap
``startup_cap_s``. A child that exits or
is killed before it ever became ready ``start_attempts`` times in a row is FAILED with
the reason of its last attempt: restarting it for ever would hide a plant that cannot
start (each attempt was spaced by the backoff, so the restart budget alone never
tripped).
"""

from __future__ import annotations

import ctypes
import enum
import os
import signal
import sys
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from petra.cli.scan import SINGLE_THREAD_BLAS
from petra.supervisor._instance import runtime_dir

PR_SET_PDEATHSIG = 1


class ChildState(enum.StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"
    FAILED = "failed"
    STOPPING = "stopping"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    budget: int = 5
    budget_window_s: float = 60.0
    startup_grace_s: float = 15.0   # to the first beat, then between beats while STARTING
    startup_cap_s: float = 600.0    # a start that moves but never ends
    start_attempts: int = 3         # failed starts in a row before FAILED
    heartbeat_timeout_s: float = 3.0


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """A role and the command that plays it."""

    role: str                       # "scan", "driver:plc1", "sink:mqtt-out"
    argv: tuple[str, ...]
    cpus: frozenset[int] | None = None
    stop_order: int = 1             # lower stops first


@dataclass
class Child:
    spec: ChildSpec
    policy: RestartPolicy
    state: ChildState = ChildState.STARTING
    proc: Any = None                # asyncio.subprocess.Process
    pid: int = 0
    started_mono: float = 0.0
    restarts: int = 0
    restart_times: deque[float] = field(default_factory=deque)
    next_start_mono: float = 0.0
    backoff_s: float = 0.0
    last_exit: int | None = None
    last_reason: str = ""
    hb_record: int | None = None
    hb_restarts_written: int = 0
    failed_starts: int = 0          # exits before ready, in a row
    ready_since_start: bool = False
    progress_beat_ns: int = 0       # the last beat (or CPU time) seen while starting
    progress_mono: float = 0.0      # when it changed
    kill_reason: str | None = None  # why the supervisor killed it, for the record

    @property
    def role(self) -> str:
        return self.spec.role

    def note_exit(self, now: float, code: int | None, reason: str) -> None:
        """Record an exit and decide the next start time, or FAILED."""
        self.last_exit = code
        self.last_reason = reason
        self.proc = None
        self.hb_record = None
        if not self.ready_since_start:
            self.failed_starts += 1
            if self.failed_starts >= self.policy.start_attempts:
                self.last_reason = (f"never became ready ({self.failed_starts} starts in a "
                                    f"row); last: {reason}")
                self.state = ChildState.FAILED
                return
        while self.restart_times and now - self.restart_times[0] > self.policy.budget_window_s:
            self.restart_times.popleft()
        if len(self.restart_times) >= self.policy.budget:
            self.state = ChildState.FAILED
            return
        self.backoff_s = (self.policy.backoff_initial_s if self.backoff_s == 0
                          else min(self.backoff_s * 2, self.policy.backoff_max_s))
        self.next_start_mono = now + self.backoff_s
        self.state = ChildState.BACKOFF

    def note_start(self, now: float, pid: int, is_restart: bool) -> None:
        self.pid = pid
        self.started_mono = now
        self.state = ChildState.STARTING
        self.ready_since_start = False
        self.progress_beat_ns = 0
        self.progress_mono = now
        self.kill_reason = None
        if is_restart:
            self.restarts += 1
            self.restart_times.append(now)

    def start_stuck(self, token: int, now: float, *, beating: bool) -> str | None:
        """While starting: why the start is judged stuck, or None. ``token`` is the
        last beat's time (``beating``) or, before the first beat, the child's CPU
        time; a new value is progress and restarts the stall clock."""
        if token != self.progress_beat_ns:
            self.progress_beat_ns = token
            self.progress_mono = now
        stalled = now - self.progress_mono
        if stalled > self.policy.startup_grace_s:
            if not beating:
                return f"no heartbeat and no CPU time for {stalled:.0f} s"
            return f"no start-up progress for {stalled:.0f} s"
        if now - self.started_mono > self.policy.startup_cap_s:
            return f"not ready after {self.policy.startup_cap_s:.0f} s (the start-up cap)"
        return None

    def note_ready(self) -> None:
        """The child reported itself ready (RUNNING or DEGRADED) since its start."""
        self.ready_since_start = True
        self.failed_starts = 0

    def note_healthy(self, now: float) -> None:
        """A child that ran for a whole budget window is forgiven its backoff."""
        self.state = ChildState.RUNNING
        self.note_ready()
        if now - self.started_mono > self.policy.budget_window_s:
            self.backoff_s = 0.0


CHILD_CWD = "/"


def child_preexec() -> None:
    """In the child between fork and exec: die with the supervisor, own process group
    off (signals come from the supervisor, not the terminal's Ctrl-C), and work in
    :data:`CHILD_CWD`, not the caller's directory."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    os.setpgid(0, 0)
    os.chdir(CHILD_CWD)


def child_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of every child: the supervisor's, with BLAS held to one thread.

    No Petra process does linear algebra, yet numpy's OpenBLAS starts a thread per CPU
    when numpy loads, each with an 8 MB stack and a 32 MB work buffer mapped; in the
    scan, whose memory is locked, they were most of its footprint. The variables are
    read once, when numpy loads, so they must be in the environment the child starts
    with (``petra scan`` sets them too, for a scan started by hand)."""
    env = dict(os.environ if base is None else base)
    env.update(SINGLE_THREAD_BLAS)
    return env


def plant_artefact_file(instance: str) -> Path:
    """Where the supervisor leaves its children the validated plant (``--plant-data``)."""
    return runtime_dir() / f"petra-{instance}.plant"


def hand_over_plant(path: Path, plant: Any, instance: str | None = None, *,
                    directory_hash: int | None = None) -> None:
    """Write a validated plant for the children (``petra._artefact``): the scan's
    section in the form it reads without the config stack
    (:class:`petra.scan._plant.ScanPlant`), the others' config section
    (``petra.config._handed``). Written at start and after each reload the scan
    accepted, so a restarted child runs what the supervisor last accepted. It is
    stamped with the instance it is for (``--instance`` may rename the plant's): a
    child of another instance refuses it. ``directory_hash`` is the segment's (made
    from this plant's signals), so that nobody hashes 100k names again."""
    import dataclasses

    from petra._artefact import Artefact, write_artefact
    from petra.config._handed import CONFIG_SECTION, config_section
    from petra.scan._plant import SCAN_SECTION, ScanPlant

    handed = ScanPlant.from_plant(plant, directory_hash=directory_hash)
    instance = instance or handed.instance
    if instance != handed.instance:
        handed = dataclasses.replace(handed, instance=instance)
    sections = {SCAN_SECTION: handed.dumps()}
    config = config_section(plant.config)
    if config is not None:
        sections[CONFIG_SECTION] = config
    source = str(plant.path.absolute()) if plant.path is not None else ""
    write_artefact(path, Artefact(instance=instance, plant=source,
                                  source_hash=plant.text_hash, sections=sections))


def petra_argv(*args: str) -> tuple[str, ...]:
    """The command of a child running ``petra ARGS``: this interpreter, isolated (``-I``),
    importing the installed package whatever the working directory holds."""
    return (sys.executable, "-I", "-m", "petra", *args)


def describe_exit(code: int | None) -> str:
    if code is None:
        return "unknown"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"
