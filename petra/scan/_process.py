"""The scan process: one plant's logic on a fixed period, for as long as it runs.

Start-up does all the slow work (load and validate the plant, map the segment,
compile the blocks, pin, lock memory, freeze the garbage collector) before the first
cycle. SIGTERM/SIGINT stop at a cycle boundary; configured safe values are written
on the way out. SIGHUP reloads: a helper thread loads, validates and compiles the new
plant away from the loop and the engine swaps it in between two cycles; an invalid
plant leaves the running one untouched. The outcome is logged and counted in the
scan's heartbeat counters (see ``HB_*`` below) so the supervisor can report it.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from petra.errors import PetraError, ReloadError
from petra.scan._clock import Clock, MonotonicClock
from petra.scan._engine import BlockProgram, ScanEngine
from petra.scan._rt import RtSettings, RtState, apply
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




def build_program(plant: Any, segment: Segment, previous: BlockProgram | None = None
                  ) -> BlockProgram:
    """Compile a validated plant's blocks (already in execution order, every input
    port resolved to a signal name or a constant) against the segment's indices."""
    from petra.blocks import BlockInstance, Const, compile_program

    instances = []
    for b in plant.blocks:
        inputs: dict[str, int | Const] = {
            port: segment.index(ref) if isinstance(ref, str) else Const(ref)
            for port, ref in b.inputs.items()}
        outputs = {port: segment.index(sig) for port, sig in b.outputs.items()}
        instances.append(BlockInstance(b.name, b.type, inputs, outputs, dict(b.params)))
    prev = cast("Program | None", previous)  # the engine only ever holds compiled Programs
    program: BlockProgram = compile_program(instances, len(segment), previous=prev)
    return program


def check_same_signals(plant: Any, segment: Segment) -> None:
    """A running segment cannot change shape: refuse a plant whose signals differ."""
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


def safe_values(plant: Any, segment: Segment) -> dict[int, Any]:
    return {segment.index(s.name): s.safe_value for s in plant.config.signals
            if getattr(s, "safe_value", None) is not None}


def rt_settings(plant: Any) -> RtSettings:
    scan = plant.config.scan
    return RtSettings(cpu=scan.cpu, policy=scan.policy, priority=scan.fifo_priority or 80,
                      require=scan.rt, cpu_dma_latency=scan.cpu_dma_latency)


@dataclass
class ScanProcess:
    """Everything one running scan holds; :func:`main` drives it."""

    plant_path: Path
    instance: str | None = None
    create: bool = False
    clock: Clock | None = None
    apply_rt: bool = True
    stop_event: threading.Event = field(default_factory=threading.Event)
    _reload_lock: threading.Lock = field(default_factory=threading.Lock)
    _reload_counts: dict[int, int] = field(default_factory=dict)

    def run(self, max_cycles: int | None = None,
            ready: Callable[[ScanEngine], None] | None = None) -> int:
        from petra.config import load_plant

        plant = load_plant(self.plant_path)
        instance = self.instance or plant.config.instance
        if self.create:
            segment = Segment.create(instance, plant.signal_defs(),
                                     journal_capacity=plant.config.scan.journal_capacity)
        else:
            segment = Segment.attach(instance)
            check_same_signals(plant, segment)
        rt_state: RtState | None = None
        heartbeat = HeartbeatHandle(segment, ROLE_SCAN, os.getpid(), plant.config.scan.cpu or 0)
        try:
            heartbeat.beat(ProcessState.STARTING)
            program = build_program(plant, segment)
            scan = plant.config.scan
            spin_ns = scan.spin_ns if scan.wait == "hybrid" else 0
            clock = self.clock or MonotonicClock(spin_ns=spin_ns)
            engine = ScanEngine(segment, program, scan.period_ns, clock,
                                offset_ns=scan.grid_offset_ns, heartbeat=heartbeat)
            self._engine = engine
            self._plant = plant
            self._segment = segment
            self._heartbeat = heartbeat
            if self.apply_rt:
                rt_state = apply(rt_settings(plant))
                log.info("event=scan_rt cpu=%s fifo=%s mlocked=%s dma_hold=%s notes=%r",
                         rt_state.cpu, rt_state.fifo, rt_state.mlocked,
                         rt_state.dma_fd >= 0, rt_state.notes)
            log.info("event=scan_start instance=%s period_us=%d blocks=%d inputs=%d "
                     "outputs=%d", instance, scan.period_ns // 1000, len(plant.order),
                     len(program.input_signals), len(program.output_signals))
            if ready is not None:
                ready(engine)
            counters = engine.run(self.stop_event.is_set, max_cycles=max_cycles)
            heartbeat.beat(ProcessState.STOPPING)
            engine.write_safe_values(safe_values(plant, segment))
            heartbeat.set_counter(HB_CYCLES, counters.cycles)
            log.info("event=scan_stop cycles=%d overruns=%d skipped=%d", counters.cycles,
                     counters.overruns, counters.skipped)
            heartbeat.beat(ProcessState.STOPPED)
            return 0
        finally:
            if rt_state is not None:
                rt_state.release()
            heartbeat.release()
            segment.close()
            if self.create:
                segment.unlink()

    def request_stop(self) -> None:
        self.stop_event.set()

    def request_reload(self) -> None:
        """Validate and compile the plant file again on a helper thread."""
        threading.Thread(target=self._reload, name="petra-reload", daemon=True).start()

    def _reload(self) -> None:
        from petra.config import load_plant

        if not self._reload_lock.acquire(blocking=False):
            log.warning("event=reload_ignored reason=already_running")
            return
        # Short GIL switch interval while this thread compiles, so the scan thread
        # gets the interpreter back promptly when it wakes.
        old_switch = sys.getswitchinterval()
        sys.setswitchinterval(0.0002)
        try:
            plant = load_plant(self.plant_path)
            check_same_signals(plant, self._segment)
            if plant.config.scan.period_ns != self._engine.period_ns:
                raise ReloadError("scan.period changed: restart the plant to apply it")
            program = build_program(plant, self._segment, previous=self._engine.program)
        except PetraError as exc:
            self._heartbeat_count(HB_RELOADS_FAILED)
            for line in str(exc).splitlines() or [repr(exc)]:
                log.error("event=reload_failed detail=%r", line)
            return
        finally:
            sys.setswitchinterval(old_switch)
            self._reload_lock.release()

        def swapped(_: BlockProgram) -> None:
            self._plant = plant
            self._heartbeat_count(HB_RELOADS_OK)
            log.info("event=reload_ok blocks=%d", len(plant.order))

        self._engine.request_swap(program, on_swap=swapped)

    def _heartbeat_count(self, counter: int) -> None:
        self._reload_counts[counter] = self._reload_counts.get(counter, 0) + 1
        self._heartbeat.set_counter(counter, self._reload_counts[counter])

def main(plant_path: str, instance: str | None = None, create: bool = False,
         max_cycles: int | None = None) -> int:
    """Run a scan in this process until SIGTERM/SIGINT."""
    proc = ScanProcess(Path(plant_path), instance=instance, create=create)
    signal.signal(signal.SIGTERM, lambda *_: proc.request_stop())
    signal.signal(signal.SIGINT, lambda *_: proc.request_stop())
    signal.signal(signal.SIGHUP, lambda *_: proc.request_reload())
    return proc.run(max_cycles=max_cycles)
