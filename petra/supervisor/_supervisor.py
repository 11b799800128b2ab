"""``petra run``: bring a plant up as a set of processes and keep it up.

The supervisor owns the instance (lock file, segment), starts the scan and one
process per driver and sink, and then only watches: a child's exit status and its
heartbeat age in the segment. A dead child's half-finished slot writes are repaired
(``repair_writer``) before it is restarted; a hung one (stale heartbeat) is killed
and restarted. Stop order matters for a PLC: the scan stops first and writes its
safe values, the drivers get a moment to carry them to the devices, and only then
are drivers and sinks stopped (and given time to flush). A second SIGTERM/SIGINT
skips the courtesy and kills everything at once, unless it comes within
``REPEAT_SIGNAL_S`` of the first (one Ctrl-C delivered twice is not a second request).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from petra._core import now_mono_ns
from petra.errors import PetraError
from petra.io import cancel_and_wait
from petra.scan._plant import START_GATE_GO, cpu_ticks
from petra.shm import (
    Heartbeat,
    HeartbeatHandle,
    ProcessState,
    Segment,
    add_restart,
    read_heartbeats,
    read_stats,
    release_heartbeat,
)
from petra.supervisor._children import (
    Child,
    ChildSpec,
    ChildState,
    RestartPolicy,
    child_env,
    child_preexec,
    describe_exit,
    hand_over_plant,
    petra_argv,
    plant_artefact_file,
)
from petra.supervisor._instance import InstanceLock, runtime_dir, state_path
from petra.supervisor._scan_down import ScanDownMarker, scan_outputs
from petra.supervisor._systemd import Notifier
from petra.types import (
    ROLE_API,
    ROLE_SCAN,
    ROLE_SUPERVISOR,
    SINK_ALARMS,
    SINK_HISTORY,
    SINK_MQTT_OUT,
    ScanCounter,
    driver_role,
    sink_role,
)

if TYPE_CHECKING:  # imported when used: aiohttp costs a quarter second of start-up
    from petra.supervisor._health import HealthServer, PlantReasons

log = logging.getLogger("petra.supervisor")

TICK_S = 0.1
STOP_TIMEOUT_S = 10.0
DRIVER_SETTLE_S = 0.5
RELOAD_TIMEOUT_S = 15.0
REPEAT_SIGNAL_S = 1.0
"""A second stop signal sooner than this after the first is the same request (no force)."""


def plan_children(plant: Any, instance: str, plant_path: Path, log_level: str,
                  scan_plant: Path | None = None) -> list[ChildSpec]:
    """The processes a plant needs: the scan, each driver, each sink. ``scan_plant``
    is the validated plant (the artefact ``hand_over_plant`` writes) every child is
    handed; without it each loads the plant file."""
    path = str(plant_path.absolute())  # children work in "/" (_children.py)
    handed = ("--plant-data", str(scan_plant)) if scan_plant is not None else ()
    scan_cpu = plant.config.scan.cpu
    all_cpus = frozenset(os.sched_getaffinity(0))
    others = all_cpus - {scan_cpu} if scan_cpu is not None and len(all_cpus) > 1 else None
    specs = [ChildSpec(ROLE_SCAN, petra_argv("scan", path, "--attach", "--instance", instance,
                                          "--log-level", log_level, *handed),
                       cpus=frozenset({scan_cpu}) if scan_cpu is not None else None,
                       stop_order=0)]
    for drv in getattr(plant.config, "drivers", None) or []:
        specs.append(ChildSpec(driver_role(drv.name),
                               petra_argv("driver", path, drv.name, "--instance", instance,
                                          "--log-level", log_level, *handed),
                               cpus=others))
    if _mqtt_out_configured(plant):
        specs.append(ChildSpec(sink_role(SINK_MQTT_OUT),
                               petra_argv("sink", path, SINK_MQTT_OUT, "--instance", instance,
                                          "--log-level", log_level, *handed),
                               cpus=others))
    if getattr(plant.config, "history", None) is not None:
        specs.append(ChildSpec(sink_role(SINK_HISTORY),
                               petra_argv("history", "run", path, "--instance", instance,
                                          "--log-level", log_level, *handed),
                               cpus=others, stop_order=2))  # after the drivers: last values
    if getattr(plant.config, "api", None) is not None:
        specs.append(ChildSpec(ROLE_API, petra_argv(
            "api", path, "--instance", instance, "--log-level", log_level,
            "--state-file", str(state_path(instance)),
            "--port-file", str(api_port_file(instance)), *handed), cpus=others))


    if getattr(plant.config, "alarms", None) is not None:
        specs.append(ChildSpec(sink_role(SINK_ALARMS),
                               petra_argv("alarms", "run", path, "--instance", instance,
                                          "--log-level", log_level, *handed),
                               cpus=others, stop_order=0))  # a planned stop raises no alarms
    return specs


def _history_status(plant: Any, instance: str, plant_path: Path) -> Any:
    """A reader of the history sink's status file (for /metrics), or None."""
    cfg = getattr(plant.config, "history", None)
    if cfg is None:
        return None
    from petra.history import read_status, resolve_dir

    base = resolve_dir(cfg, instance, plant_path)
    return lambda: read_status(base)


def api_port_file(instance: str) -> Path:
    """Where the api child writes the port it listens on (JSON: port, scheme, pid)."""
    return runtime_dir() / f"petra-{instance}.api.json"


def _audit_state(plant: Any, plant_path: Path, instance: str) -> dict[str, Any]:
    """The audit log every process of this plant appends to, for the state file (so
    `petra write` and petra-top find it without the plant file)."""
    from petra.security import plant_audit_log  # what petra.api's audit_log_for returns

    log_ = plant_audit_log(getattr(plant.config, "api", None), plant_path.resolve().parent,
                           instance)
    return {"audit_file": str(log_.path), "audit_rotate_bytes": log_.rotate_bytes,
            "audit_keep": log_.keep}


def _alarm_status(plant: Any, instance: str, plant_path: Path) -> Any:
    """A reader of the alarm manager's status file (for /metrics), or None."""
    cfg = getattr(plant.config, "alarms", None)
    if cfg is None:
        return None
    from petra.config._alarms import resolve_dir, status_file

    path = status_file(resolve_dir(cfg, instance, plant_path))

    def read() -> dict[str, Any] | None:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None
    return read


def _mqtt_out_configured(plant: Any) -> bool:
    mqtt = getattr(plant.config, "mqtt", None)
    if mqtt is None:
        return False
    publish = getattr(mqtt, "publish", None)
    broker = getattr(mqtt, "broker", None) or getattr(mqtt, "host", None)
    return bool(broker) and publish is not None


class Supervisor:
    def __init__(self, plant_path: Path, *, instance: str | None = None,
                 health: str | None = "127.0.0.1:9120", log_level: str = "info",
                 policy: RestartPolicy | None = None, plant: Any = None) -> None:
        self.plant_path = plant_path
        self._loaded = plant  # already validated by the caller, or None
        self.instance_override = instance
        self.health_addr = health
        self.log_level = log_level
        self.policy = policy or RestartPolicy()
        self.children: list[Child] = []
        self._stop = asyncio.Event()
        self._force = False
        self._stop_signal_mono = 0.0
        self._reload_requested = False
        self._reload_task: asyncio.Task[None] | None = None
        self._ready = False
        self._t0 = time.monotonic()
        self._reasons: PlantReasons | None = None
        self._reload_seq = 0
        self._last_reload: dict[str, Any] | None = None

    # ------------------------------------------------------------------ main
    async def run(self) -> int:
        from petra.config import load_plant

        plant = self._loaded if self._loaded is not None else load_plant(self.plant_path)
        self.plant = plant
        self.instance = self.instance_override or plant.config.instance
        self.lock = InstanceLock(self.instance)
        self.lock.acquire()
        if self.lock.replaced_stale:
            log.warning("event=stale_segment_replaced instance=%s", self.instance)
        self._scan_plant = plant_artefact_file(self.instance)
        specs = plan_children(plant, self.instance, self.plant_path, self.log_level,
                              self._scan_plant)
        self.children = [Child(spec, self.policy) for spec in specs]
        gate = await self._start_scan_early()
        try:
            self._create_segment(plant)
        except BaseException:
            os.close(gate)  # the waiting scan reads EOF and exits
            self.lock.release()
            raise
        self.hb = HeartbeatHandle(self.segment, ROLE_SUPERVISOR, os.getpid())
        self.scan_down = ScanDownMarker(self.segment, plant.config.scan.scan_down)
        self.notifier = Notifier()
        health: HealthServer | None = None
        try:
            self._hand_over(plant, gate)
            self._leave_scan_cpu(plant.config.scan.cpu)
            port = 0
            if self.health_addr:
                from petra.supervisor._health import HealthServer

                host, _, port_s = self.health_addr.rpartition(":")
                health = HealthServer(self.segment, self.health, self.child_table,
                                      _history_status(plant, self.instance, self.plant_path),
                                      _alarm_status(plant, self.instance, self.plant_path))
                port = await health.start(host or "127.0.0.1", int(port_s))
                log.info("event=health_listen host=%s port=%d", host, port)
            self._write_state(port)
            self._install_signals()
            log.info("event=plant_start instance=%s children=%s", self.instance,
                     ",".join(c.role for c in self.children))
            for child in self.children:
                if child.proc is None and child.state is ChildState.STARTING:
                    await self._start(child, is_restart=False)
            await self._watch()
            await self._shutdown()
            return 0
        finally:
            if health is not None:
                await health.stop()
            self.hb.release()
            self.segment.close()
            self.segment.unlink()
            self._scan_plant.unlink(missing_ok=True)
            self.lock.release()
            log.info("event=plant_stopped instance=%s", self.instance)

    def _create_segment(self, plant: Any) -> None:
        t_create = time.monotonic()
        self.segment = Segment.create(self.instance, plant.signal_defs(),
                                      journal_capacity=plant.config.scan.journal_capacity)
        log.info("event=segment_created instance=%s signals=%d ms=%.0f", self.instance,
                 len(self.segment), (time.monotonic() - t_create) * 1e3)

    def _hand_over(self, plant: Any, gate: int) -> None:
        """Write the plant artefact, then open the waiting scan's start gate (closed
        without "go" when the artefact could not be written: the scan exits)."""
        t_hand = time.monotonic()
        try:
            hand_over_plant(self._scan_plant, plant, self.instance,
                            directory_hash=self.segment.directory_hash)
            log.info("event=plant_handed_over path=%s ms=%.0f", self._scan_plant,
                     (time.monotonic() - t_hand) * 1e3)
            with contextlib.suppress(BrokenPipeError):  # it died early: reaped, restarted
                os.write(gate, START_GATE_GO)
        finally:
            os.close(gate)

    async def _start_scan_early(self) -> int:
        """Start the scan before the segment exists, held at a start gate: its
        interpreter and imports (half a second) overlap the segment's creation and the
        hand-over. It reads the pipe's read end until the supervisor writes
        :data:`START_GATE_GO` (then the segment and the artefact are there) or closes it
        without (start-up failed: the scan exits). Returns the write end."""
        scan = next(c for c in self.children if c.role == ROLE_SCAN)
        gate_r, gate_w = os.pipe()
        try:
            await self._start(scan, is_restart=False, gate=gate_r)
        finally:
            os.close(gate_r)
        return gate_w

    @staticmethod
    def _leave_scan_cpu(scan_cpu: int | None) -> None:
        """The supervisor (and the health server in it) never runs on the scan's CPU."""
        cpus = set(os.sched_getaffinity(0))
        if scan_cpu is not None and scan_cpu in cpus and len(cpus) > 1:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, cpus - {scan_cpu})

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self._on_hup)

    def _on_stop_signal(self, sig: signal.Signals) -> None:
        now = time.monotonic()
        if self._stop.is_set() and now - self._stop_signal_mono < REPEAT_SIGNAL_S:
            # One keypress can arrive twice (a terminal's Ctrl-C reaches both
            # `timeout --foreground` and us): not a request to skip the safe values.
            log.info("event=stop_signal_repeated signal=%s detail='already stopping; "
                     "send it again after %.0f s to force'", sig.name, REPEAT_SIGNAL_S)
            return
        if self._stop.is_set():
            self._force = True
            log.warning("event=stop_forced signal=%s", sig.name)
            for child in self.children:
                self._kill(child, signal.SIGKILL)
            return
        log.info("event=stop_requested signal=%s", sig.name)
        self._stop_signal_mono = now
        self._stop.set()

    def _on_hup(self) -> None:
        self._reload_requested = True

    # ------------------------------------------------------------------ children
    async def _start(self, child: Child, is_restart: bool, gate: int | None = None) -> None:
        argv = child.spec.argv if gate is None else (*child.spec.argv, "--start-gate",
                                                     str(gate))
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, preexec_fn=child_preexec, stdin=asyncio.subprocess.DEVNULL,
                env=child_env(), pass_fds=() if gate is None else (gate,))
        except OSError as exc:
            log.error("event=child_spawn_failed role=%s error=%r", child.role, str(exc))
            child.note_exit(time.monotonic(), None, f"spawn failed: {exc}")
            return
        child.proc = proc
        child.note_start(time.monotonic(), proc.pid, is_restart)
        if child.spec.cpus:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(proc.pid, child.spec.cpus)
        log.info("event=child_started role=%s pid=%d restarts=%d", child.role, proc.pid,
                 child.restarts)

    def _kill(self, child: Child, sig: signal.Signals) -> None:
        if child.proc is not None and child.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.proc.send_signal(sig)

    def _kill_stuck(self, child: Child, reason: str) -> None:
        """Kill a child whose start is stuck; ``reason`` becomes its exit reason."""
        log.error("event=child_hung role=%s pid=%d reason=%r", child.role, child.pid, reason)
        child.kill_reason = reason
        self._kill(child, signal.SIGKILL)

    def _reap(self, child: Child, reason: str | None = None) -> None:
        """A child has exited: repair what it left, free its record, plan a restart."""
        code = child.proc.returncode if child.proc is not None else None
        reason = reason or child.kill_reason
        pid = child.pid
        # Its last beat, read before the repair rewrites the record: one that got ready
        # between two ticks (a busy box stretches a tick past a short life) and then
        # died has not failed to start.
        if any(hb.pid == pid and hb.state in (ProcessState.RUNNING, ProcessState.DEGRADED)
               for hb in read_heartbeats(self.segment)):
            child.note_ready()
        repaired = self.segment.repair_writer(pid) if pid else 0
        for hb in read_heartbeats(self.segment):
            if hb.pid == pid:
                release_heartbeat(self.segment, hb.record)
        why = reason or describe_exit(code)
        if self._stop.is_set():
            child.proc = None
            child.state = ChildState.STOPPED
            log.info("event=child_stopped role=%s pid=%d status=%r", child.role, pid, why)
            return
        if child.role == ROLE_SCAN:
            self._mark_scan_down(pid, why)
        child.note_exit(time.monotonic(), code, why)
        if child.state is ChildState.FAILED:
            log.error("event=child_failed role=%s pid=%d reason=%r restarts=%d "
                      "detail='left down; the rest of the plant keeps running'",
                      child.role, pid, child.last_reason, child.restarts)
            self._write_state()  # tools without /healthz (petra-top) read it there
        else:
            log.warning("event=child_exited role=%s pid=%d reason=%r repaired_slots=%d "
                        "restart_in_s=%.1f", child.role, pid, why, repaired, child.backoff_s)

    async def _check_child(self, child: Child, beats: dict[int, Heartbeat], now: float,
                           mono_ns: int) -> None:
        """One child, one tick: reap it, start it after its backoff, or judge its
        heartbeat (a stuck start or a stale beat is killed)."""
        if child.proc is not None and child.proc.returncode is not None:
            self._reap(child)
            return
        if child.state is ChildState.BACKOFF and now >= child.next_start_mono:
            await self._start(child, is_restart=True)
            return
        if child.proc is None:
            return
        hb = beats.get(child.pid)
        if hb is None:
            if child.kill_reason is None:
                stuck = child.start_stuck(cpu_ticks(child.pid), now, beating=False)
                if stuck is not None:
                    self._kill_stuck(child, stuck)
            return
        self._sync_restarts(child, hb.record)
        if hb.state == ProcessState.STARTING and child.kill_reason is None:
            stuck = child.start_stuck(hb.last_beat_ns, now, beating=True)
            if stuck is not None:
                self._kill_stuck(child, stuck)
            return
        age_s = hb.age_ns(mono_ns) / 1e9
        if hb.state == ProcessState.RUNNING and age_s > self.policy.heartbeat_timeout_s:
            self._kill_stuck(child, f"heartbeat stale for {age_s:.1f} s")
        elif hb.state in (ProcessState.RUNNING, ProcessState.DEGRADED):
            child.note_healthy(now)

    async def _watch(self) -> None:
        last_watchdog = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            beats = {hb.pid: hb for hb in read_heartbeats(self.segment)}
            mono_ns = now_mono_ns()
            for child in self.children:
                await self._check_child(child, beats, now, mono_ns)
            self._check_scan_back(beats)
            if not self._ready and read_stats(self.segment).cycles > 0:
                self._ready = True
                ms = (time.monotonic() - self._t0) * 1e3
                log.info("event=plant_ready first_cycle_ms=%.0f", ms)
                self.notifier.ready(f"{self.instance}: running")
            if self._ready and self.notifier.watchdog_interval_s \
                    and now - last_watchdog >= self.notifier.watchdog_interval_s \
                    and self.health()["status"] != "failed":
                self.notifier.watchdog()
                last_watchdog = now
            self._reap_reload()
            if self._reload_requested and self._reload_task is None:
                # One reload at a time, owned here: reaped above, cancelled on stop.
                self._reload_requested = False
                self._reload_task = asyncio.get_running_loop().create_task(self._reload())
            # A failed child shows in petra-top as the supervisor being degraded.
            self.hb.beat(ProcessState.DEGRADED if self._failed() else ProcessState.RUNNING)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), TICK_S)

    def _mark_scan_down(self, pid: int, why: str) -> None:
        """The scan died (or was killed for a stale heartbeat): its outputs are marked
        SCAN_DOWN until the restarted scan writes them (see ``_scan_down.py``). Called
        after ``repair_writer``, so no slot is still held by the dead scan."""
        t0 = time.monotonic()
        slots = scan_outputs(self.segment, self.plant.block_writers)
        res = self.scan_down.scan_down(slots)
        log.warning("event=scan_down pid=%d reason=%r mode=%s outputs=%d marked=%d "
                    "already=%d failed=%d took_ms=%.1f", pid, why, self.scan_down.mode,
                    len(slots), res.marked, res.already, res.failed,
                    (time.monotonic() - t0) * 1e3)

    def _check_scan_back(self, beats: dict[int, Any]) -> None:
        """Forget the outage once the restarted scan runs and has completed a cycle
        (its first cycle rewrote every output, clearing SCAN_DOWN)."""
        if self.scan_down.since is None:
            return
        scan = next((c for c in self.children if c.role == ROLE_SCAN), None)
        hb = beats.get(scan.pid) if scan is not None and scan.proc is not None else None
        if scan is None or hb is None or hb.state != ProcessState.RUNNING:
            return
        down_s = self.scan_down.scan_back(scan.pid, read_stats(self.segment).cycles)
        if down_s is not None:
            log.info("event=scan_back pid=%d down_s=%.2f", scan.pid, down_s)

    def _sync_restarts(self, child: Child, record: int) -> None:
        if child.hb_record != record:
            child.hb_record = record
            child.hb_restarts_written = 0
        while child.hb_restarts_written < child.restarts:
            add_restart(self.segment, record)
            child.hb_restarts_written += 1

    def _reap_reload(self) -> None:
        """Collect a finished reload task; a crash in it is a failed reload, reported."""
        task = self._reload_task
        if task is None or not task.done():
            return
        self._reload_task = None
        exc = None if task.cancelled() else task.exception()
        if exc is not None:
            log.error("event=reload_crashed error=%s: %s", type(exc).__name__, exc)
            self._finish_reload(self._reload_seq, False, [f"reload crashed: {exc}"])

    async def _shutdown(self) -> None:
        task, self._reload_task = self._reload_task, None
        await cancel_and_wait(task, "reload")
        self.notifier.stopping()
        self.hb.beat(ProcessState.STOPPING)
        for order in sorted({c.spec.stop_order for c in self.children}):
            group = [c for c in self.children if c.spec.stop_order == order]
            for child in group:
                child.state = ChildState.STOPPING
                self._kill(child, signal.SIGTERM)
            await self._wait_exit(group, STOP_TIMEOUT_S)
            if order == 0 and len(self.children) > len(group):
                await asyncio.sleep(DRIVER_SETTLE_S)  # let drivers carry safe values out
        for child in self.children:
            if child.proc is not None:
                self._reap(child)

    async def _wait_exit(self, group: list[Child], timeout: float) -> None:
        procs = [c.proc for c in group if c.proc is not None]
        if not procs:
            return
        _, pending = await asyncio.wait([asyncio.ensure_future(p.wait()) for p in procs],
                                           timeout=timeout)
        if pending:
            for child in group:
                if child.proc is not None and child.proc.returncode is None:
                    log.warning("event=child_stop_timeout role=%s pid=%d action=SIGKILL",
                                child.role, child.pid)
                    self._kill(child, signal.SIGKILL)
            _, still = await asyncio.wait(pending, timeout=5.0)
            for waiter in still:
                waiter.cancel()

    # ------------------------------------------------------------------ reload
    async def _reload(self) -> None:
        from petra.config import ConfigErrors, load_plant

        self._reload_seq += 1
        seq = self._reload_seq
        try:
            plant = await asyncio.to_thread(load_plant, self.plant_path)
        except ConfigErrors as exc:
            errors = [str(e) for e in exc.errors]
            for line in errors:
                log.error("event=reload_rejected detail=%r", line)
            self._finish_reload(seq, False, errors)
            return
        except PetraError as exc:
            self._finish_reload(seq, False, [str(exc)])
            return
        scan = next((c for c in self.children if c.role == ROLE_SCAN), None)
        if scan is None or scan.proc is None or scan.hb_record is None:
            self._finish_reload(seq, False, ["the scan is not running"])
            return
        before = self._scan_reload_counters(scan)
        os.kill(scan.pid, signal.SIGHUP)
        deadline = time.monotonic() + RELOAD_TIMEOUT_S
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            after = self._scan_reload_counters(scan)
            if after[0] > before[0]:
                self.plant = plant
                hand_over_plant(self._scan_plant, plant, self.instance,
                                directory_hash=self.segment.directory_hash)
                self._finish_reload(seq, True, [])
                return
            if after[1] > before[1]:
                self._finish_reload(seq, False, ["the scan refused the new plant (see its log)"])
                return
        self._finish_reload(seq, False, ["the scan did not answer the reload in time"])

    def _scan_reload_counters(self, scan: Child) -> tuple[int, int]:
        for hb in read_heartbeats(self.segment):
            if hb.pid == scan.pid:
                return hb.counters[ScanCounter.RELOADS_OK], hb.counters[ScanCounter.RELOADS_FAILED]
        return 0, 0

    def _finish_reload(self, seq: int, ok: bool, errors: list[str]) -> None:
        self._last_reload = {"seq": seq, "ok": ok, "errors": errors, "time": time.time()}
        log.info("event=reload_%s seq=%d", "ok" if ok else "failed", seq)
        self._write_state()

    def _write_state(self, port: int | None = None) -> None:
        if port is not None:
            self._health_port = port
        self.lock.write_state(health_port=getattr(self, "_health_port", 0),
                              plant=str(self.plant_path), last_reload=self._last_reload,
                              failed=self._failed(),
                              **_audit_state(self.plant, self.plant_path, self.instance))

    # ------------------------------------------------------------------ reports
    def _failed(self) -> dict[str, str]:
        """Role -> reason of every child left down as FAILED."""
        return {c.role: c.last_reason for c in self.children if c.state is ChildState.FAILED}

    def child_table(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [{"role": c.role, "pid": c.pid, "state": str(c.state), "restarts": c.restarts,
                 "last_exit": c.last_reason,
                 "up_s": round(now - c.started_mono, 1)
                 if c.state is ChildState.RUNNING else None} for c in self.children]

    def health(self) -> dict[str, Any]:
        reasons: list[str] = []
        status = "ok"
        for c in self.children:
            if c.state is ChildState.FAILED:
                reasons.append(f"{c.role} failed: {c.last_reason}")
            elif c.state is ChildState.BACKOFF:
                reasons.append(f"{c.role} restarting after {c.last_reason}")
        down = self.scan_down.reason()
        if down is not None:
            reasons.append(down)
        if self._reasons is None:
            from petra.supervisor._health import PlantReasons

            self._reasons = PlantReasons(self.segment)
        reasons.extend(self._reasons(self.child_table()))
        if any(c.state is ChildState.FAILED and c.role == ROLE_SCAN for c in self.children):
            status = "failed"
        elif reasons:
            status = "degraded"
        if not self._ready:
            status = "degraded" if status == "ok" else status
            reasons.append("scan has not completed a cycle yet")
        stats = read_stats(self.segment)
        return {"status": status, "reasons": reasons, "instance": self.instance,
                "scan": {"cycles": stats.cycles, "overruns": stats.overruns},
                "processes": self.child_table()}


def main(plant_path: str, instance: str | None = None, health: str | None = "127.0.0.1:9120",
         log_level: str = "info", plant: Any = None, *,
         policy: RestartPolicy | None = None) -> int:
    """Run a plant until SIGTERM/SIGINT; ``plant`` skips loading the file again."""
    sup = Supervisor(Path(plant_path), instance=instance, health=health, log_level=log_level,
                     plant=plant, policy=policy)
    return asyncio.run(sup.run())
