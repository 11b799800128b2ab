"""Segment lifecycle: create, attach, close, unlink, and every way attaching can fail.

Real POSIX shared memory, real processes (fork, setuid to ``nobody``); no mocks.
"""

from __future__ import annotations

import mmap
import os
import stat
import struct
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from petra.errors import (
    InvalidNameError,
    NoSuchSegmentError,
    PetraError,
    SegmentExistsError,
    SegmentLayoutError,
    SegmentPermissionError,
    ValueOutOfRangeError,
)
from petra.shm import (
    Segment,
    SignalDef,
    SignalType,
    list_instances,
    segment_name,
    unlink_instance,
)

SIGNALS = [
    SignalDef("tank1.level", SignalType.FLOAT, unit="m", owner="driver:plc1", writable=True,
              initial=1.25),
    SignalDef("pump1.run", SignalType.BOOL, owner="scan"),
    SignalDef("pump1.starts", SignalType.INT, initial=7),
]

MakeSeg = Callable[..., Segment]


@pytest.fixture
def make_segment() -> Iterator[MakeSeg]:
    """Create uniquely named segments and remove them after the test."""
    made: list[Segment] = []

    def make(signals: list[SignalDef] | None = None, **kw: int) -> Segment:
        seg = Segment.create(f"t-{uuid.uuid4().hex[:12]}",
                             SIGNALS if signals is None else signals, **kw)
        made.append(seg)
        return seg

    yield make
    for seg in made:
        unlink_instance(seg.instance)
        seg.close()


def _shm_path(instance: str) -> Path:
    return Path("/dev/shm") / segment_name(instance).lstrip("/")


def _poke(instance: str, offset: int, data: bytes) -> None:
    """Overwrite bytes of a segment through a mapping of its own (a corruption test)."""
    with open(_shm_path(instance), "r+b") as f, mmap.mmap(f.fileno(), 0) as mm:
        mm[offset:offset + len(data)] = data


def _in_child(fn: Callable[[], int]) -> int:
    """Run ``fn`` in a forked child and return its exit status (fn's return value)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 99
        try:
            code = fn()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


# ------------------------------------------------------------------ create / attach
def test_create_attach_close_unlink(make_segment: MakeSeg) -> None:
    seg = make_segment()
    assert seg.instance in list_instances()
    assert len(seg) == 3
    assert "pump1.run" in seg
    assert list(seg) == ["tank1.level", "pump1.run", "pump1.starts"]
    other = Segment.attach(seg.instance)
    assert other.get("tank1.level") == 1.25
    assert other.get("pump1.starts") == 7
    assert other.get("pump1.run") is False
    info = other.info()
    assert info.instance == seg.instance
    assert info.n_signals == 3
    assert info.creator_pid == os.getpid()
    assert info.total_size == seg.size
    other.close()
    other.close()  # idempotent
    assert other.closed
    with pytest.raises(PetraError, match="closed"):
        other.get_index(0)
    seg.unlink()
    assert seg.instance not in list_instances()
    # The creator's mapping outlives the name.
    seg.write("tank1.level", 2.0)
    assert seg.get("tank1.level") == 2.0
    with pytest.raises(NoSuchSegmentError):
        Segment.attach(seg.instance)
    assert unlink_instance(seg.instance) is False


def test_context_manager_closes(make_segment: MakeSeg) -> None:
    seg = make_segment()
    with Segment.attach(seg.instance, readonly=True) as ro:
        assert ro.readonly
        assert "ro" in repr(ro)
    assert ro.closed
    assert "closed" in repr(ro)


def test_attach_missing_lists_running(make_segment: MakeSeg) -> None:
    seg = make_segment()
    with pytest.raises(NoSuchSegmentError, match=seg.instance):
        Segment.attach("no-such-instance-xyz")


def test_create_existing_name(make_segment: MakeSeg) -> None:
    seg = make_segment()
    with pytest.raises(SegmentExistsError, match="already exists"):
        Segment.create(seg.instance, SIGNALS)


@pytest.mark.parametrize("bad", ["", "has space", "-lead", "x" * 49, "sl/ash", "dot.ted", "é"])
def test_invalid_instance_names(bad: str) -> None:
    with pytest.raises(InvalidNameError):
        Segment.create(bad, SIGNALS)
    with pytest.raises(InvalidNameError):
        Segment.attach(bad)


def test_create_argument_errors() -> None:
    name = f"t-{uuid.uuid4().hex[:12]}"
    with pytest.raises(ValueOutOfRangeError, match="power of two"):
        Segment.create(name, SIGNALS, journal_capacity=1000)
    with pytest.raises(ValueOutOfRangeError, match="heartbeats"):
        Segment.create(name, SIGNALS, heartbeats=0)
    with pytest.raises(PetraError, match="defined twice"):
        Segment.create(name, [SIGNALS[0], SIGNALS[0]])
    assert name not in list_instances()


def test_empty_segment_is_allowed(make_segment: MakeSeg) -> None:
    seg = make_segment([])
    assert len(seg) == 0
    assert seg.read_batch().values.size == 0


def test_mode_0660(make_segment: MakeSeg) -> None:
    seg = make_segment()
    mode = stat.S_IMODE(_shm_path(seg.instance).stat().st_mode)
    assert mode == 0o660


def test_late_attach_sees_current_values(make_segment: MakeSeg) -> None:
    seg = make_segment()
    seg.write("tank1.level", 3.5)
    seg.write("pump1.run", True)
    code = (
        "from petra.shm import Segment\n"
        f"s = Segment.attach({seg.instance!r}, readonly=True)\n"
        "print(s.get('tank1.level'), s.get('pump1.run'), s.read('pump1.starts').value)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.split() == ["3.5", "True", "7"]


def test_expect_directory_hash(make_segment: MakeSeg) -> None:
    seg = make_segment()
    h = seg.directory_hash
    Segment.attach(seg.instance, expect_directory_hash=h).close()
    with pytest.raises(SegmentLayoutError, match="different config"):
        Segment.attach(seg.instance, expect_directory_hash=h ^ 1)
    other = make_segment([SignalDef("x", SignalType.INT)])
    assert other.directory_hash != h


# ------------------------------------------------------------------ refusing a segment
@pytest.mark.parametrize(
    ("offset", "data", "match"),
    [
        (0, b"NOTPETRA", "magic is"),
        (8, struct.pack("<I", 99), r"ABI version is 99, this build reads ABI \d+"),
        (16, struct.pack("<Q", 0x1234), "layout hash is 0x0000000000001234"),
        (112, struct.pack("<I", 1_000_000), "region table is inconsistent"),
        (12, struct.pack("<I", 1), "region table is inconsistent"),
    ],
    ids=["magic", "abi", "layout", "n_signals", "header_size"],
)
def test_attach_refuses_corrupt_header(make_segment: MakeSeg, offset: int, data: bytes,
                                       match: str) -> None:
    seg = make_segment()
    _poke(seg.instance, offset, data)
    with pytest.raises(SegmentLayoutError, match=match):
        Segment.attach(seg.instance)


def test_attach_refuses_truncated(make_segment: MakeSeg) -> None:
    seg = make_segment()
    os.truncate(_shm_path(seg.instance), 4096)
    with pytest.raises(SegmentLayoutError, match="smaller"):
        Segment.attach(seg.instance)
    os.truncate(_shm_path(seg.instance), 0)
    with pytest.raises(SegmentLayoutError, match="empty"):
        Segment.attach(seg.instance)


# ------------------------------------------------------------------ permissions
NOBODY = 65534


def _attach_as_nobody(instance: str) -> int:
    def child() -> int:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
        try:
            Segment.attach(instance, readonly=True).close()
        except SegmentPermissionError as exc:
            return 3 if "group petra" in str(exc) else 4
        except BaseException:
            return 5
        return 0
    return _in_child(child)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to setuid to nobody")
def test_permission_denied_for_other_users(make_segment: MakeSeg) -> None:
    seg = make_segment()
    path = _shm_path(seg.instance)
    os.chown(path, 0, 0)
    assert _attach_as_nobody(seg.instance) == 3
    # Group members get in: the 0660 contract.
    os.chown(path, 0, NOBODY)
    assert _attach_as_nobody(seg.instance) == 0


# ------------------------------------------------------------------ fork
def test_fork_child_writes_with_its_pid(make_segment: MakeSeg) -> None:
    seg = make_segment()
    parent = os.getpid()
    seg.write("pump1.starts", 1)
    assert seg.read("pump1.starts").writer == parent

    def child() -> int:
        seg.write("pump1.starts", 2)
        return 0 if seg.read("pump1.starts").writer == os.getpid() else 1

    assert _in_child(child) == 0
    sample = seg.read("pump1.starts")
    assert sample.value == 2
    assert sample.writer not in (0, parent)
    seg.write("pump1.starts", 3)
    assert seg.read("pump1.starts").writer == parent
