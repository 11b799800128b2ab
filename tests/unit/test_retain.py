"""The retain area (double buffer + sequence), the block retain table and the file.

Torn commits, a writer killed with SIGKILL in the middle of its commits, another
instance's area, layout-version and definition mismatches (that block alone resets),
a parameter-only change (state kept), and every way a retain file can be refused."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import petra.blocks as pb
from petra.blocks import _retain as br
from petra.blocks._builtins import KERNELS
from petra.blocks._runtime import FLAG_FRESH
from petra.errors import PetraError
from petra.scan import _retain as sr
from petra.scan._plant import RetainSettings
from petra.shm import RetainArea, retain_name, unlink_retain

MS = 1_000_000
NAMES = ["run", "q", "et", "cv"]


@pytest.fixture
def inst() -> Iterator[str]:
    name = f"t-retain-{os.getpid()}"
    unlink_retain(name)
    yield name
    unlink_retain(name)


def program(pt: float = 10.0, pv: int = 5, ctu_inputs: dict[str, int] | None = None
            ) -> pb.Program:
    ton = pb.BlockInstance("ton", "TON", {"in": 0}, {"q": 1, "et": 2}, {"pt": pt})
    ctu = pb.BlockInstance("ctu", "CTU", ctu_inputs or {"cu": 0}, {"cv": 3}, {"pv": pv})
    return pb.compile_program([ton, ctu], 4)


def run(p: pb.Program, cycles: int) -> np.ndarray:
    img, quality = p.new_image()
    img[0], quality[0] = 1.0, 2
    for k in range(cycles):
        p.run(img, quality, k * 100 * MS, 100 * MS, False)
    return img


# ------------------------------------------------------------------ the area
def test_commit_and_read_round_trip(inst: str) -> None:
    area = RetainArea.create(inst)
    try:
        assert area.read() is None  # nothing committed yet
        state = np.arange(10, dtype=np.float64)
        area.prepare(b'{"t":1}', state)
        state[:] = 42.0
        area.commit(state, cycles=7)
        snap = area.read()
        assert snap is not None
        assert snap.meta == b'{"t":1}' and snap.cycles == 7
        assert np.all(snap.state == 42.0)
        # a second process's view: open by name
        other = RetainArea.open(inst)
        assert other is not None
        got = other.read()
        assert got is not None and np.all(got.state == 42.0)
        other.close()
    finally:
        area.close()


def test_a_torn_commit_leaves_the_last_complete_one(inst: str) -> None:
    area = RetainArea.create(inst)
    try:
        a = np.full(1000, 1.0)
        area.prepare(b"m", a)
        area.commit(a)
        b = np.full(1000, 2.0)
        for cut in (0, 8, 4000, 7992):  # killed before, inside and at the last value
            area.debug_torn(b, cut)
            snap = area.read()
            assert snap is not None and np.all(snap.state == 1.0), cut
        area.commit(b)  # the next commit repairs the odd buffer
        snap = area.read()
        assert snap is not None and np.all(snap.state == 2.0)
    finally:
        area.close()


def test_growing_program_moves_buffers_and_keeps_reading(inst: str) -> None:
    area = RetainArea.create(inst)
    try:
        area.prepare(b"small", np.ones(4))
        big = np.full(50_000, 3.0)
        area.prepare(b"x" * 5000, big)
        snap = area.read()
        assert snap is not None and snap.meta == b"x" * 5000 and np.all(snap.state == 3.0)
        big[:] = 4.0
        area.commit(big)
        area.commit(big)  # both buffers in their new places
        snap = area.read()
        assert snap is not None and len(snap.state) == 50_000 and np.all(snap.state == 4.0)
    finally:
        area.close()


WRITER = textwrap.dedent("""\
    import sys, numpy as np
    from petra.shm import RetainArea
    area = RetainArea.create(sys.argv[1])
    state = np.zeros(20000)
    area.prepare(b"k", state)
    print("ready", flush=True)
    k = 0
    while True:
        k += 1
        state[:] = k
        area.commit(state, cycles=k)
""")


def test_a_writer_killed_mid_commit_leaves_a_consistent_snapshot(inst: str) -> None:
    """SIGKILL at a random instant, five times: the snapshot read afterwards is always
    one whole commit (every value equal), never a mix of two."""
    for i in range(5):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, inst], stdout=subprocess.PIPE,
                                text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(0.05 + 0.037 * i)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        area = RetainArea.open(inst)
        assert area is not None
        try:
            snap = area.read()
            assert snap is not None
            assert snap.state.min() == snap.state.max() == snap.cycles > 0
        finally:
            area.close()


def test_another_instance_or_garbage_is_refused(inst: str, tmp_path: Path) -> None:
    RetainArea.create(inst).close()
    os.rename(f"/dev/shm/{retain_name(inst)[1:]}", f"/dev/shm/{retain_name(inst)[1:]}x")
    try:
        # the object of instance inst, opened under another instance's name
        with pytest.raises(PetraError, match="another instance"):
            RetainArea.open(inst + "x")
    finally:
        unlink_retain(inst + "x")
    Path(f"/dev/shm/{retain_name(inst)[1:]}").write_bytes(b"\x00garbage" * 1000)
    with pytest.raises(PetraError, match="not a retain area"):
        RetainArea.open(inst)


# ------------------------------------------------------------------ the table
def test_every_stateful_kernel_has_a_layout_version() -> None:
    stateful = {n for n, k in KERNELS.items() if k.n_state > 0 or n == "AVERAGE"}
    assert stateful <= set(br.STATE_LAYOUT)


def restored(old: pb.Program, new: pb.Program) -> br.RestoreReport:
    rows = br.retain_rows(old, NAMES)
    meta = br.encode_meta(rows, "p")
    _, back = br.decode_meta(meta, len(old.state))
    return br.restore(new, NAMES, back, old.state.copy())


def test_restore_keeps_everything_for_the_same_program() -> None:
    old = program()
    run(old, 5)
    new = program()
    report = restored(old, new)
    assert sorted(report.kept) == ["ctu", "ton"] and not report.reset
    assert np.array_equal(new.state, old.state)
    assert not np.any(new.instructions["flags"] & FLAG_FRESH)
    img = run(new, 1)
    assert round(img[2], 9) == 0.5 and img[3] == 1.0  # TON went on (0.4 + 0.1), no new edge


def test_parameter_only_change_keeps_the_state(caplog: pytest.LogCaptureFixture) -> None:
    old = program()
    run(old, 5)
    new = program(pt=20.0, pv=7)
    with caplog.at_level(logging.INFO, "petra.scan"):
        report = restored(old, new)
    assert sorted(report.kept) == ["ctu", "ton"]
    assert sorted(report.params_changed) == ["ctu", "ton"]
    assert "event=retain_block_params_changed block=ton" in caplog.text
    assert np.array_equal(new.state, old.state)


def test_a_changed_definition_resets_that_block_only(caplog: pytest.LogCaptureFixture) -> None:
    old = program()
    run(old, 5)
    new = program(ctu_inputs={"cu": 0, "r": 1})
    with caplog.at_level(logging.WARNING, "petra.scan"):
        report = restored(old, new)
    assert report.kept == ["ton"] and report.reset == [("ctu", "definition changed")]
    assert "event=retain_block_reset block=ctu" in caplog.text
    flags = new.instructions["flags"]
    assert not flags[0] & FLAG_FRESH and flags[1] & FLAG_FRESH


def test_a_layout_version_mismatch_resets_that_block_only(
        caplog: pytest.LogCaptureFixture) -> None:
    old = program()
    run(old, 5)
    rows = [br.RetainRow(r.name, r.type, r.layout + (r.name == "ton"), r.offset, r.size,
                         r.wiring, r.params) for r in br.retain_rows(old, NAMES)]
    new = program()
    with caplog.at_level(logging.WARNING, "petra.scan"):
        report = br.restore(new, NAMES, rows, old.state.copy())
    assert report.kept == ["ctu"] and report.reset == [("ton", "state layout 2 -> 1")]
    assert "reason='state layout 2 -> 1'" in caplog.text
    assert new.state[0:3].tolist() == [0.0, 0.0, 0.0]


def test_a_type_or_size_change_resets() -> None:
    a = pb.compile_program([pb.BlockInstance("x", "AVERAGE", {"in": 0}, {"out": 1},
                                             {"n": 4})], 2)
    b = pb.compile_program([pb.BlockInstance("x", "AVERAGE", {"in": 0}, {"out": 1},
                                             {"n": 8})], 2)
    c = pb.compile_program([pb.BlockInstance("x", "LAG", {"in": 0}, {"out": 1},
                                             {"tau": 1.0})], 2)
    names = ["a", "b"]
    rows = br.retain_rows(a, names)
    assert br.restore(b, names, rows, a.state).reset[0][1].startswith("state size")
    assert br.restore(c, names, rows, a.state).reset[0][1].startswith("type AVERAGE")


@pytest.mark.parametrize("raw", [b"", b"[]", b'{"format": 2}', b"\xff\xfe",
                                 b'{"format":1,"instance":"p","blocks":[["a","TON",1,0,9,"w","p"]]}',
                                 b'{"format":1,"instance":"p","blocks":[["a","TON",true,0,1,"w","p"]]}'])
def test_a_malformed_table_is_refused(raw: bytes) -> None:
    with pytest.raises(ValueError):
        br.decode_meta(raw, 3)


# ------------------------------------------------------------------ the file
def test_file_round_trip_and_refusals(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    old = program()
    run(old, 5)
    rows = br.retain_rows(old, NAMES)
    path = tmp_path / "retain.bin"
    sr.write_file(path, sr.select_blocks(rows, old.state, {"ctu"}, "p"))
    got = sr.read_file(path, "p")
    assert got is not None
    back, state = got
    assert [r.name for r in back] == ["ctu"] and state.tolist() == [1.0, 1.0]
    good = path.read_bytes()
    cases = {
        "CRC mismatch": good[:-1] + bytes([good[-1] ^ 1]),
        "shorter than the header": good[:10],
        "the header says": good[:-8],
        "magic": b"X" + good[1:],
        "format version": good[:8] + b"\x09" + good[9:],
    }
    with caplog.at_level(logging.ERROR, "petra.scan"):
        for why, raw in cases.items():
            path.write_bytes(raw)
            assert sr.read_file(path, "p") is None, why
            assert why in caplog.text, why
        path.write_bytes(good)
        assert sr.read_file(path, "other") is None
        assert "written by instance 'p'" in caplog.text
    assert sr.read_file(tmp_path / "missing.bin", "p") is None


def test_keeper_warm_then_file_cold(inst: str, tmp_path: Path) -> None:
    """A keeper restores from the area when it is there, else from the file (only the
    retained blocks), and writes the file on a clean stop."""
    settings = RetainSettings(str(tmp_path), 10.0, ("ctu",))
    first = program()
    keeper = sr.RetainKeeper(inst, NAMES, settings)
    assert keeper.restore(first) == "cold"
    args = keeper.bind(first)
    assert args is not None
    run(first, 5)
    assert keeper.area is not None
    keeper.area.commit(first.state, 5)
    keeper.stop(final_write=True)
    assert (tmp_path / "retain.bin").exists()

    warm = program()
    keeper = sr.RetainKeeper(inst, NAMES, settings)
    assert keeper.restore(warm) == "warm"
    assert np.array_equal(warm.state, first.state)
    keeper.stop(final_write=False)

    unlink_retain(inst)  # power loss: RAM gone, the file remains
    cold = program()
    keeper = sr.RetainKeeper(inst, NAMES, settings)
    assert keeper.restore(cold) == "file"
    slots = cold.state_slots
    ctu, ton = slots["ctu"], slots["ton"]
    assert cold.state[ctu.offset: ctu.offset + ctu.size].tolist() == [1.0, 1.0]
    assert cold.state[ton.offset: ton.offset + ton.size].tolist() == [0.0, 0.0, 0.0]
    assert cold.instructions["flags"][0] & FLAG_FRESH  # ton: not retained, fresh
    keeper.stop(final_write=False)


# ------------------------------------------------------------------ the engine
@pytest.mark.parametrize("warm", [False, True])
def test_a_warm_engine_reads_its_outputs_back_and_commits_each_cycle(
        inst: str, warm: bool) -> None:
    """Feedback: ``m1`` reads ``z``, which ``m2`` (later in the cycle) writes. After a
    warm start the first cycle sees the last value of ``z``, not zero; and every cycle
    leaves its state in the retain area."""
    from petra.scan import FakeClock, ScanEngine
    from petra.shm import Segment, SignalDef, SignalType, unlink_instance

    unlink_instance(inst)
    seg = Segment.create(inst, [SignalDef(n, SignalType.FLOAT) for n in ("x", "y", "z")])
    try:
        seg.write("z", 7.0)  # the last scan's output
        seg.write("x", 9.0)
        prog = pb.compile_program([
            pb.BlockInstance("m1", "MOVE", {"in": 2}, {"out": 1}),
            pb.BlockInstance("m2", "MOVE", {"in": 0}, {"out": 2}),
            pb.BlockInstance("ctr", "CTU", {"cu": 0}, {}, {"pv": 5})], 3)
        keeper = sr.RetainKeeper(inst, ["x", "y", "z"], None)
        keeper.restore(prog)
        engine = ScanEngine(seg, prog, 10 * MS, FakeClock(start_ns=0), warm=warm,
                            record_stats=False, retain=keeper.bind)
        engine.run(lambda: False, max_cycles=1)
        assert seg.get("y") == (7.0 if warm else 0.0)
        assert keeper.area is not None
        snap = keeper.area.read()
        assert snap is not None and snap.cycles == 1
        assert snap.state.tolist() == [1.0, 1.0]  # CTU saw the rising edge: clk 1, cv 1
        keeper.stop(final_write=False)
    finally:
        seg.close()
        unlink_instance(inst)


def test_the_retain_area_goes_with_the_segment(inst: str) -> None:
    from petra.shm import unlink_instance

    RetainArea.create(inst).close()
    unlink_instance(inst)  # no segment of that name: the retain area goes all the same
    assert RetainArea.open(inst) is None


def test_hostile_files_with_a_valid_crc_are_refused(tmp_path: Path) -> None:
    """Well-formed envelopes around bad tables: refused, never an exception."""
    path = tmp_path / "retain.bin"
    state = np.zeros(2)
    tables = [b"[" * 100_000 + b"]" * 100_000, b'{"format":1,"instance":"p","blocks":{}}',
              b'{"format":1,"instance":"p","blocks":[["a","TON",1,0,1e400,"w","p"]]}',
              b'{"format":1,"instance":"p","blocks":[["a","TON",1,0,3,"w","p"]]}',
              bytes(range(256))]
    rng = np.random.default_rng(3)
    tables += [rng.bytes(int(rng.integers(0, 300))) for _ in range(50)]
    for meta in tables:
        path.write_bytes(sr.encode_file(meta, state))
        assert sr.read_file(path, "p") is None


def test_an_area_of_another_abi_version_is_refused(inst: str) -> None:
    RetainArea.create(inst).close()
    path = Path(f"/dev/shm/{retain_name(inst)[1:]}")
    raw = bytearray(path.read_bytes())
    raw[8] ^= 0xFF  # abi_version follows the 8-byte magic
    path.write_bytes(bytes(raw))
    with pytest.raises(PetraError, match="ABI version"):
        RetainArea.open(inst)


def test_an_area_of_another_program_keeps_only_what_matches(
        inst: str, caplog: pytest.LogCaptureFixture) -> None:
    """The restarted scan runs a different program (the plant changed while the
    supervisor restarted it): blocks match by name, type and wiring, one by one."""
    first = program()
    keeper = sr.RetainKeeper(inst, NAMES, None)
    keeper.restore(first)
    keeper.bind(first)
    run(first, 5)
    assert keeper.area is not None
    keeper.area.commit(first.state, 5)
    keeper.stop(final_write=False)
    other = pb.compile_program([
        pb.BlockInstance("ctu", "CTU", {"cu": 0, "r": 1}, {"cv": 3}, {"pv": 5}),  # rewired
        pb.BlockInstance("ton", "TP", {"in": 0}, {"q": 1, "et": 2}, {"pt": 10.0}),  # retyped
        pb.BlockInstance("tof", "TOF", {"in": 0}, {"q": 1}, {"pt": 1.0})], 4)  # new
    keeper = sr.RetainKeeper(inst, NAMES, None)
    with caplog.at_level(logging.WARNING, "petra.scan"):
        assert keeper.restore(other) == "warm"
    keeper.stop(final_write=False)
    assert "block=ctu" in caplog.text and "block=ton" in caplog.text
    assert np.all(other.instructions["flags"] & FLAG_FRESH)
