"""The scan process: one plant's logic on a fixed period, for as long as it runs.

Start-up does all the slow work before the first cycle: the plant comes validated from
the supervisor (``--plant-data``) or is loaded by a short-lived child process
(:mod:`petra.scan._plant`; the config stack never enters this locked process), the
segment is mapped, the blocks compiled, the reload worker started, then the CPU pinned,
memory locked and the garbage collector frozen (:mod:`petra.scan._rt`). SIGTERM/SIGINT
stop at a cycle boundary; configured safe values are written on the way out. SIGHUP
reloads: the scan's one reload worker (:mod:`petra.scan._reload`) has the plant file
loaded again by a child, compiles it away from the loop, and the engine swaps it in
between two cycles; an invalid plant leaves the running one untouched. Every outcome
is logged and counted in the scan's heartbeat counters (see ``HB_*`` below), so the
supervisor gets an answer to each reload.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from petra._artefact import MAGIC as ARTEFACT_MAGIC
from petra._artefact import read_artefact
from petra.errors import PetraError, ReloadError
from petra.scan._clock import Clock, MonotonicClock
from petra.scan._engine import BlockProgram, ScanEngine
from petra.scan._plant import (
    SCAN_SECTION,
    START_GATE_GO,
    PlantLoadError,
    ScanPlant,
    compile_plant,
)
from petra.scan._reload import ReloadWorker
from petra.scan._retain import RetainKeeper
from petra.scan._rt import RtSettings, RtState, apply, bound_threads
from petra.shm import HeartbeatHandle, ProcessState, Segment
from petra.types import ROLE_SCAN, ScanCounter

if TYPE_CHECKING:
    from petra.blocks import Program

log = logging.getLogger("petra.scan")

# Heartbeat counters of the scan record (petra.types.ScanCounter).
HB_RELOADS_OK = ScanCounter.RELOADS_OK
HB_RELOADS_FAILED = ScanCounter.RELOADS_FAILED
HB_BUSY_READS = ScanCounter.BUSY_READS
HB_WRITES = ScanCounter.WRITES
HB_CYCLES = ScanCounter.CYCLES
HB_START_STEPS = ScanCounter.START_STEPS
START_LOAD_TIMEOUT_S = 3600.0
"""A plant loader at start-up may run this long; the supervisor's start-up cap (and its
stall check, which follows the beats) decides sooner (the reload keeps its own bound)."""


def _injected_slow_start(step: Callable[[], None]) -> None:
    """Fault injection for the start-up tests, inert unless the environment asks:
    ``PETRA_INJECT_FAULT=scan:slow-start:SECONDS`` makes start-up take that much longer
    while beating progress (a large plant's honest slow load);
    ``PETRA_INJECT_FAULT=scan:stall-start:SECONDS`` makes it stop without beating (a
    loader that hangs). The same variable as ``petra.io``'s faults; the scan cannot
    import that layer, so the few lines of parsing live here too."""
    spec = os.environ.get("PETRA_INJECT_FAULT", "")
    role, _, rest = spec.partition(":")
    fault, _, seconds = rest.partition(":")
    if role != ROLE_SCAN or fault not in ("slow-start", "stall-start"):
        return
    try:
        total = float(seconds)
    except ValueError:
        return
    log.warning("event=fault_injected fault=%s seconds=%.1f", fault, total)
    if fault == "stall-start":
        time.sleep(total)
        return
    end = time.monotonic() + total
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(0.2, left))
        step()


def build_program(plant: ScanPlant, segment: Segment, previous: BlockProgram | None = None
                  ) -> BlockProgram:
    """Compile a validated plant's blocks (already in execution order, every input
    port resolved to a signal name or a constant) against the segment's indices.

    Block types the catalogue does not know yet are looked for among the installed
    ``petra.blocks`` entry points (custom blocks) before compiling. Every caller has
    checked the plant's signal table against the segment's (``check_same_signals``, or
    made the segment from it), so names resolve through the plant's own table (a dict,
    not a call into the segment per name); a name not in it asks the segment, which
    says what is wrong."""
    from petra.blocks import all_specs, compile_program, load_entry_points

    known = all_specs()
    if any(b.type not in known for b in plant.blocks):
        load_entry_points()
    table = {name: i for i, name in enumerate(plant.signal_names())}

    def index(name: str) -> int:
        i = table.get(name)
        return segment.index(name) if i is None else i

    instances = [b.bind(index) for b in plant.blocks]
    prev = cast("Program | None", previous)  # the engine only ever holds compiled Programs
    program: BlockProgram = compile_program(instances, len(segment), previous=prev,
                                            event=plant.scan.mode == "event")
    return program


def check_same_signals(plant: ScanPlant, segment: Segment) -> None:
    """A running segment cannot change shape: refuse a plant whose signals differ.

    The plant carries the directory hash of its signals (names and types in order, as
    the segment computes it): equal to the segment's, the tables are the same, and the
    100k entries of the segment's directory need not be decoded. Only a plant without
    one, or a mismatch (to say what changed), compares the tables entry by entry."""
    if plant.directory_hash is not None and plant.directory_hash == segment.directory_hash:
        return
    want = [(d.name, int(d.type)) for d in plant.signal_defs()]
    have = [(s.name, int(s.type)) for s in segment.signals]
    if want != have:
        added = sorted({n for n, _ in want} - {n for n, _ in have})
        removed = sorted({n for n, _ in have} - {n for n, _ in want})
        detail = []
        if added:
            detail.append(f"added {', '.join(added[:5])}")
        if removed:
            detail.append(f"removed {', '.join(removed[:5])}")
        if not detail:
            detail.append("types or order changed")
        raise ReloadError("the signal table changed (" + "; ".join(detail) +
                          "): restart the plant to apply it")


def safe_values(plant: ScanPlant, segment: Segment) -> dict[int, Any]:
    return {segment.index(name): value for name, value in plant.safe_values}


def rt_settings(plant: ScanPlant) -> RtSettings:
    scan = plant.scan
    return RtSettings(cpu=scan.cpu, policy=scan.policy, priority=scan.priority,
                      require=scan.rt, cpu_dma_latency=scan.cpu_dma_latency)


def _log_rt(rt_state: RtState) -> None:
    lock = rt_state.lock
    log.info("event=scan_rt cpu=%s fifo=%s mlocked=%s locked_mb=%.1f "
             "unlocked_libraries_mb=%.1f unlocked_untouched_mb=%.1f dma_hold=%s "
             "notes=%r", rt_state.cpu, rt_state.fifo, rt_state.mlocked,
             (lock.locked if lock else 0) / 2**20,
             (lock.skipped_libraries if lock else 0) / 2**20,
             (lock.skipped_untouched if lock else 0) / 2**20,
             rt_state.dma_fd >= 0, rt_state.notes)


@dataclass
class ScanProcess:
    """Everything one running scan holds; :func:`main` drives it.

    ``apply_rt`` false (tests, a scan run inside another program) leaves the process
    as it is: no pinning, locking or thread limits."""

    plant_path: Path
    instance: str | None = None
    create: bool = False
    plant_data: Path | None = None  # the supervisor's validated plant (see _plant)
    clock: Clock | None = None
    apply_rt: bool = True
    stop_event: threading.Event = field(default_factory=threading.Event)
    _reload_counts: dict[int, int] = field(default_factory=dict)
    _start_steps: int = 0

    def __post_init__(self) -> None:
        # Made now, started in run(): a SIGHUP that comes first waits in its pipe.
        self._worker = ReloadWorker(self._reload, on_dead=self._reload_refused)
        self._heartbeat: HeartbeatHandle | None = None

    def run(self, max_cycles: int | None = None,
            ready: Callable[[ScanEngine], None] | None = None) -> int:
        try:
            return self._run(max_cycles, ready)
        finally:
            self._worker.stop()

    def _run(self, max_cycles: int | None,
             ready: Callable[[ScanEngine], None] | None) -> int:
        if self.apply_rt:
            bound_threads()  # before any thread of ours exists
        t_open = time.monotonic()
        plant, segment, heartbeat = self._open()
        t_program = time.monotonic()
        instance = self.instance or plant.instance
        rt_state: RtState | None = None
        worker = self._worker
        keeper: RetainKeeper | None = None
        try:
            keeper = self._keeper = self._checked_keeper(plant, segment, instance)
            _injected_slow_start(self._step)
            program = build_program(plant, segment)
            # Before the first cycle: the block state of the last complete cycle (a
            # restart), or the retain file (a cold start), or nothing.
            restored = keeper.restore(program)
            self._step()
            t_rt = time.monotonic()
            scan = plant.scan
            clock = self.clock or MonotonicClock(spin_ns=scan.spin_ns)
            engine = ScanEngine(segment, program, scan.period_ns, clock,
                                offset_ns=scan.grid_offset_ns, heartbeat=heartbeat,
                                retain=keeper.bind, warm=restored != "cold")
            self._engine = engine
            self._plant = plant
            self._segment = segment
            self._heartbeat = heartbeat
            # Started before the loop thread takes SCHED_FIFO and its CPU: the worker
            # keeps SCHED_OTHER and moves off that CPU.
            worker.avoid_cpu = scan.cpu
            worker.start()
            keeper.start_persisting()
            if self.apply_rt:
                rt_state = apply(rt_settings(plant))
                _log_rt(rt_state)
            log.info("event=scan_start instance=%s period_us=%d blocks=%d inputs=%d "
                     "outputs=%d state=%s open_ms=%.0f compile_ms=%.0f rt_ms=%.0f",
                     instance, scan.period_ns // 1000, len(plant.blocks),
                     len(program.input_signals), len(program.output_signals), restored,
                     (t_program - t_open) * 1e3, (t_rt - t_program) * 1e3,
                     (time.monotonic() - t_rt) * 1e3)
            if ready is not None:
                ready(engine)
            counters = engine.run(self.stop_event.is_set, max_cycles=max_cycles)
            self._stop_cleanly(engine, heartbeat, keeper, segment, counters.cycles)
            log.info("event=scan_stop cycles=%d overruns=%d skipped=%d", counters.cycles,
                     counters.overruns, counters.skipped)
            heartbeat.beat(ProcessState.STOPPED)
            return 0
        finally:
            worker.stop()
            if keeper is not None:
                keeper.stop(final_write=False)
            if rt_state is not None:
                rt_state.release()
            heartbeat.release()
            segment.close()
            if self.create:
                segment.unlink()  # and the retain area with it

    def _checked_keeper(self, plant: ScanPlant, segment: Segment, instance: str
                        ) -> RetainKeeper:
        """The plant checked against an attached segment, then its retain keeper."""
        self._step()
        if not self.create:
            check_same_signals(plant, segment)
            self._step()
        # The plant's names are the segment's (created from them, or checked just
        # above): the segment's directory need not be decoded for them.
        return RetainKeeper(instance, plant.signal_names(), plant.retain,
                            avoid_cpu=plant.scan.cpu)

    def _stop_cleanly(self, engine: ScanEngine, heartbeat: HeartbeatHandle,
                      keeper: RetainKeeper, segment: Segment, cycles: int) -> None:
        """A stop asked for: no reload any more, the retained state written to its file,
        then the safe values (the retain file holds the state before them)."""
        heartbeat.beat(ProcessState.STOPPING)
        self._worker.stop()
        keeper.stop(final_write=True)
        engine.write_safe_values(safe_values(self._plant, segment))
        heartbeat.set_counter(HB_CYCLES, cycles)

    def _open(self) -> tuple[ScanPlant, Segment, HeartbeatHandle]:
        """The plant, the segment (attached or created) and this process's heartbeat.

        Under a supervisor (attach, instance known) the segment is attached first, so
        the heartbeat says "starting" while the plant loads: the supervisor's start-up
        grace follows these beats (docs/operations.md)."""
        handed = self._handed_plant()
        instance = self.instance or (handed.instance if handed is not None else None)
        segment: Segment | None = None
        heartbeat: HeartbeatHandle | None = None
        if not self.create and instance is not None:
            segment = Segment.attach(instance)
            heartbeat = HeartbeatHandle(segment, ROLE_SCAN, os.getpid(),
                                        (handed.scan.cpu or 0) if handed is not None else 0)
            self._heartbeat = heartbeat
            self._step()
        try:
            plant = handed if handed is not None else self._load_plant()
        except BaseException:
            if heartbeat is not None:
                heartbeat.release()
            if segment is not None:
                segment.close()
            raise
        instance = instance or plant.instance
        if segment is None:
            if self.create:
                segment = Segment.create(instance, plant.signal_defs(),
                                         journal_capacity=plant.scan.journal_capacity)
            else:
                segment = Segment.attach(instance)
        if heartbeat is None:
            heartbeat = HeartbeatHandle(segment, ROLE_SCAN, os.getpid(), plant.scan.cpu or 0)
            self._heartbeat = heartbeat
        return plant, segment, heartbeat

    def _handed_plant(self) -> ScanPlant | None:
        """The supervisor's validated plant when it left a usable one for this
        instance, else None (the caller loads the plant file: slower, and logged).
        ``plant_data`` is the plant artefact (``petra._artefact``, its ``scan``
        section) or, written by hand or by an older supervisor, a bare ScanPlant."""
        if self.plant_data is None:
            return None
        try:
            with self.plant_data.open("rb") as f:
                is_artefact = f.read(len(ARTEFACT_MAGIC)) == ARTEFACT_MAGIC
            if is_artefact:
                art = read_artefact(self.plant_data, instance=self.instance)
                plant = ScanPlant.loads(art.section(SCAN_SECTION))
            else:
                plant = ScanPlant.read(self.plant_data)
        except (OSError, PetraError) as exc:
            log.warning("event=plant_data_unusable path=%s error=%r action=load_file",
                        self.plant_data, str(exc))
            return None
        if self.instance is not None and plant.instance != self.instance:
            log.warning("event=plant_data_unusable path=%s error='made for instance %s, "
                        "not %s' action=load_file", self.plant_data, plant.instance,
                        self.instance)
            return None
        return plant

    def _load_plant(self) -> ScanPlant:
        """The plant file loaded by a child; beats "starting" while that child works."""
        return compile_plant(self.plant_path, timeout_s=START_LOAD_TIMEOUT_S,
                             progress=self._step)

    def _step(self) -> None:
        """One start-up step done: beat STARTING and count it (START_STEPS), so the
        supervisor sees progress and keeps waiting (a stalled start is killed)."""
        hb = self._heartbeat
        if hb is None:
            return
        self._start_steps += 1
        hb.set_counter(HB_START_STEPS, self._start_steps)
        hb.beat(ProcessState.STARTING)

    def request_stop(self) -> None:
        self.stop_event.set()

    def request_reload(self) -> None:
        """Have the reload worker load, validate and compile the plant file again
        (safe in a signal handler: no lock, no allocation beyond a counter)."""
        self._worker.request()

    # ------------------------------------------------------------ on the worker thread
    def _reload(self, worker: ReloadWorker) -> None:
        """One reload, start to finish; every outcome is logged and counted."""
        try:
            plant = compile_plant(self.plant_path, avoid_cpu=self._plant.scan.cpu,
                                  cancelled=worker.cancelled, wake_fd=worker.wake_fd)
            check_same_signals(plant, self._segment)
            if plant.scan.period_ns != self._engine.period_ns:
                raise ReloadError("scan.period changed: restart the plant to apply it")
            program = build_program(plant, self._segment, previous=self._engine.program)
            self._keeper.precompute(program)  # the retain table, off the loop
        except PlantLoadError as exc:
            self._failed(exc.lines)
            return
        except PetraError as exc:
            self._failed(str(exc).splitlines() or [repr(exc)])
            return
        except Exception as exc:  # a bug, not a bad plant: counted and logged in full
            log.exception("event=reload_error error=%r", exc)
            self._failed([f"internal error: {exc!r}"])
            return
        before = worker.swaps
        self._engine.request_swap(program, on_swap=lambda _: worker.swapped())
        if not worker.wait_swapped(before):
            log.warning("event=reload_abandoned reason=stopping")
            return
        self._plant = plant
        if plant.retain != self._keeper.settings:
            self._keeper.set_settings(plant.retain)
        self._count(HB_RELOADS_OK)
        log.info("event=reload_ok blocks=%d", len(plant.blocks))

    def _failed(self, lines: list[str]) -> None:
        self._count(HB_RELOADS_FAILED)
        for line in lines:
            log.error("event=reload_failed detail=%r", line)

    def _reload_refused(self) -> None:
        """A SIGHUP after the worker died: answer it, so nobody waits in vain."""
        self._count(HB_RELOADS_FAILED)
        log.error("event=reload_failed detail='the reload worker is dead (see "
                  "event=reload_worker_failed); restart the scan to reload'")

    def _count(self, counter: int) -> None:
        self._reload_counts[counter] = self._reload_counts.get(counter, 0) + 1
        if self._heartbeat is not None:
            self._heartbeat.set_counter(counter, self._reload_counts[counter])


def wait_start_gate(fd: int) -> bool:
    """Under ``petra run`` the scan is started before its segment exists, so that its
    interpreter and imports overlap the supervisor's work; it waits here until the
    supervisor writes "go" on ``fd`` (True) or closes it without (False: its start-up
    failed). What the compiler needs is imported first, while waiting costs nothing."""
    import petra.blocks  # noqa: F401  # the block catalogue and compiler, before the wait

    got = b""
    with os.fdopen(fd, "rb", buffering=0) as gate:
        while len(got) < len(START_GATE_GO):
            chunk = gate.read(len(START_GATE_GO) - len(got))
            if not chunk:
                break
            got += chunk
    return got == START_GATE_GO


def main(plant_path: str, instance: str | None = None, create: bool = False,
         max_cycles: int | None = None, plant_data: str | None = None, *,
         start_gate: int | None = None) -> int:
    """Run a scan in this process until SIGTERM/SIGINT (after the start gate, if any)."""
    if start_gate is not None and not wait_start_gate(start_gate):
        log.error("event=start_gate_closed detail='the supervisor gave up before the "
                  "segment and plant were ready'")
        return 1
    proc = ScanProcess(Path(plant_path), instance=instance, create=create,
                       plant_data=Path(plant_data) if plant_data else None)
    signal.signal(signal.SIGTERM, lambda *_: proc.request_stop())
    signal.signal(signal.SIGINT, lambda *_: proc.request_stop())
    signal.signal(signal.SIGHUP, lambda *_: proc.request_reload())
    return proc.run(max_cycles=max_cycles)
