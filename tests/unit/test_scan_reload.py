"""Hot reload through the real config loader and block compiler, on a fake clock."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from petra.config import load_plant_text
from petra.scan import FakeClock, ReloadError, ScanEngine, build_program
from petra.scan._plant import ScanPlant
from petra.scan._process import check_same_signals, safe_values
from petra.shm import Segment, unlink_instance

MS = 1_000_000

PLANT = textwrap.dedent("""\
    instance: reload-test
    scan: {period: 10ms}
    signals:
      - {name: wave, type: float}
      - {name: high, type: bool}
      - {name: count, type: int, safe_value: -1}
      - {name: doubled, type: float}
    blocks:
      - name: gen
        type: SIGNAL_GENERATOR
        outputs: {out: wave}
        params: {waveform: square, amplitude: 0.5, offset: 0.5, period: 0.1}
      - name: is_high
        type: GT
        inputs: {in1: wave, in2: 0.5}
        outputs: {out: high}
      - name: counter
        type: CTU
        inputs: {cu: high}
        outputs: {cv: count}
        params: {pv: 1000000}
      - name: gain
        type: MUL
        inputs: {in1: count, in2: GAIN}
        outputs: {out: doubled}
    """)


def plant(gain: float = 2.0, text: str = PLANT) -> ScanPlant:
    return scan_plant(text.replace("GAIN", repr(gain)))


def scan_plant(text: str) -> ScanPlant:
    """What the scan gets: the validated plant in its compact form."""
    return ScanPlant.from_plant(load_plant_text(text, "plant.yaml"))


@pytest.fixture
def seg() -> Iterator[Segment]:
    name = f"t-reload-{os.getpid()}"
    unlink_instance(name)
    p = plant()
    s = Segment.create(name, p.signal_defs())
    yield s
    s.close()
    unlink_instance(name)


def test_reload_keeps_state_of_unchanged_blocks(seg: Segment) -> None:
    p1 = plant(2.0)
    engine = ScanEngine(seg, build_program(p1, seg), 10 * MS, FakeClock(start_ns=0))
    engine.run(lambda: False, max_cycles=100)  # 1 s: ten rising edges of a 0.1 s square
    count = seg.get("count")
    assert isinstance(count, int) and count >= 9
    assert seg.get("doubled") == 2.0 * count

    p2 = plant(3.0)  # only the gain block changes
    check_same_signals(p2, seg)
    engine.request_swap(build_program(p2, seg, previous=engine.program))
    engine.run(lambda: False, max_cycles=101)
    after = seg.get("count")
    assert isinstance(after, int) and after >= count  # the counter kept counting
    assert seg.get("doubled") == 3.0 * after
    engine.run(lambda: False, max_cycles=200)
    assert seg.get("count") >= count + 9


def test_a_changed_block_starts_fresh(seg: Segment) -> None:
    p1 = plant()
    engine = ScanEngine(seg, build_program(p1, seg), 10 * MS, FakeClock(start_ns=0))
    engine.run(lambda: False, max_cycles=100)
    before = seg.get("count")
    assert isinstance(before, int) and before >= 9
    # Rewired (a reset input now connected): a definition change, the counter restarts.
    p2 = scan_plant(PLANT.replace("GAIN", "2.0").replace("inputs: {cu: high}",
                                                         "inputs: {cu: high, r: false}"
                                                         ).replace("r: false", "r: high"))
    engine.request_swap(build_program(p2, seg, previous=engine.program))
    engine.run(lambda: False, max_cycles=101)
    after = seg.get("count")
    assert isinstance(after, int) and after <= 1  # a new counter instance


def test_a_parameter_only_change_keeps_the_state(seg: Segment) -> None:
    """An online change: the preset changed, the count goes on."""
    engine = ScanEngine(seg, build_program(plant(), seg), 10 * MS, FakeClock(start_ns=0))
    engine.run(lambda: False, max_cycles=100)
    before = seg.get("count")
    assert isinstance(before, int) and before >= 9
    p2 = scan_plant(PLANT.replace("GAIN", "2.0").replace("pv: 1000000", "pv: 999999"))
    engine.request_swap(build_program(p2, seg, previous=engine.program))
    engine.run(lambda: False, max_cycles=101)
    after = seg.get("count")
    assert isinstance(after, int) and after >= before


def test_reload_refuses_a_different_signal_table(seg: Segment) -> None:
    grown = PLANT.replace("GAIN", "2.0") + "\n".join([
        "  - name: extra", "    type: MOVE", "    inputs: {in: wave}",
        "    outputs: {out: wave2}"]) + "\n"
    grown = grown.replace("  - {name: doubled, type: float}",
                          "  - {name: doubled, type: float}\n  - {name: wave2, type: float}")
    with pytest.raises(ReloadError, match="added wave2"):
        check_same_signals(scan_plant(grown), seg)


def test_safe_values_come_from_the_plant(seg: Segment) -> None:
    assert safe_values(plant(), seg) == {seg.index("count"): -1}


def test_rt_mode_refuses_to_start_without_privileges() -> None:
    """As an unprivileged user, SCHED_FIFO is refused: rt mode must raise, not warn."""
    code = textwrap.dedent("""
        import os, sys
        from petra.scan import RealTimeError, RtSettings, apply
        os.setgroups([]); os.setgid(65534); os.setuid(65534)
        try:
            apply(RtSettings(policy="fifo", priority=80, require=True, lock_memory=False))
        except RealTimeError as exc:
            print("refused:", exc); sys.exit(0)
        print("started"); sys.exit(1)
    """)
    if os.geteuid() != 0:
        pytest.skip("needs root to drop to an unprivileged user for the check")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SCHED_FIFO" in out.stdout


def test_rt_mode_needs_fifo() -> None:
    from petra.scan import RealTimeError, RtSettings, apply

    with pytest.raises(RealTimeError, match="policy: fifo"):
        apply(RtSettings(policy="other", require=True, lock_memory=False))


def test_scan_process_writes_safe_values_on_stop(tmp_path: object) -> None:
    """The scan process path end to end: attach, compile, cycle, stop, safe values."""
    import threading
    from pathlib import Path

    from petra.scan import ScanProcess
    from petra.shm import read_heartbeats

    path = Path(str(tmp_path)) / "plant.yaml"
    path.write_text(PLANT.replace("GAIN", "2.0"))
    name = f"t-proc-{os.getpid()}"
    unlink_instance(name)
    p = load_plant_text(path.read_text(), str(path))
    seg = Segment.create(name, p.signal_defs())
    try:
        proc = ScanProcess(path, instance=name, apply_rt=False)
        ran: list[int] = []
        t = threading.Thread(target=lambda: ran.append(proc.run()))
        t.start()
        deadline = 200
        while seg.get("count") == 0 and deadline:  # the counter counts: cycles run
            threading.Event().wait(0.05)
            deadline -= 1
        assert seg.get("count") != 0
        assert any(hb.role == "scan" for hb in read_heartbeats(seg))
        proc.request_stop()
        t.join(timeout=30)
        assert ran == [0]
        assert seg.get("count") == -1  # its safe_value
        assert not any(hb.role == "scan" for hb in read_heartbeats(seg))
    finally:
        seg.close()
        unlink_instance(name)
