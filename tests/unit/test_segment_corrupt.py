"""Corrupt directory bytes in a real segment (issue 11, item 8): attaching fails with
one error naming the segment and the entry, and ``petra segment info`` and
``petra-top --once`` print that line and exit 1 instead of a traceback."""

from __future__ import annotations

import math
import struct
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from petra.cli import main
from petra.errors import SegmentLayoutError
from petra.shm import Segment, SignalDef, SignalType

# petra_dir_entry_t (csrc/layout.h): name[64] unit[16] owner[24] type u8, 3 reserved,
# flags u32, min f64, max f64.
NAME, UNIT, OWNER, TYPE, MIN, MAX = 0, 64, 80, 104, 112, 120
SIGNALS = [SignalDef("tank.level", SignalType.FLOAT, unit="m", owner="scan"),
           SignalDef("pump.run", SignalType.BOOL, owner="scan"),
           SignalDef("count.total", SignalType.INT)]


@pytest.fixture
def segment() -> Iterator[Segment]:
    seg = Segment.create(f"corrupt-{uuid.uuid4().hex[:8]}", SIGNALS)
    yield seg
    seg.close()
    seg.unlink()


def poke(seg: Segment, signal: str, offset: int, data: bytes) -> None:
    """Write ``data`` at ``offset`` of the directory entry of ``signal``."""
    path = Path("/dev/shm") / f"petra.{seg.instance}"
    raw = path.read_bytes()
    start = raw.index(signal.encode() + b"\0" * (64 - len(signal)))
    with path.open("r+b") as f:
        f.seek(start + offset)
        f.write(data)


CORRUPTIONS: list[tuple[str, Callable[[Segment], None], str]] = [
    ("bad utf-8", lambda s: poke(s, "pump.run", NAME, b"pump\xff\xfe"),
     "directory entry 1 is corrupt: its name is not UTF-8"),
    ("not a name", lambda s: poke(s, "pump.run", NAME, b"pump run"),
     "directory entry 1 is corrupt: signal name 'pump run' is invalid"),
    ("no NUL", lambda s: poke(s, "pump.run", NAME, b"p" * 64),
     "directory entry 1 is corrupt: signal name 'pppp"),
    ("empty name", lambda s: poke(s, "count.total", NAME, b"\0"),
     "directory entry 2 is corrupt: a signal name must be a non-empty string"),
    ("type", lambda s: poke(s, "tank.level", TYPE, b"\x09"),
     "directory entry 0 is corrupt: its type code 9 is none of"),
    ("unit escape", lambda s: poke(s, "tank.level", UNIT, b"\x1b[2J"),
     "directory entry 0 is corrupt: its unit '\\x1b[2J' holds control characters"),
    ("owner utf-8", lambda s: poke(s, "tank.level", OWNER, b"\xc3"),
     "directory entry 0 is corrupt: its owner is not UTF-8"),
    ("limits", lambda s: poke(s, "tank.level", MIN, struct.pack("=dd", 5.0, 1.0)),
     "directory entry 0 is corrupt: its min 5 is above its max 1"),
    ("infinite limit", lambda s: poke(s, "count.total", MAX, struct.pack("=d", math.inf)),
     "directory entry 2 is corrupt: its max limit is inf"),
    ("duplicate", lambda s: poke(s, "count.total", NAME, b"pump.run\0\0\0"),
     "directory entries 1 and 2 both name 'pump.run'"),
]


@pytest.mark.parametrize("corrupt, message", [(c, m) for _, c, m in CORRUPTIONS],
                         ids=[n for n, _, _ in CORRUPTIONS])
def test_corrupt_entry_is_one_clear_error(segment: Segment, corrupt: Callable[[Segment], None],
                                          message: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    corrupt(segment)
    with pytest.raises(SegmentLayoutError) as info:
        Segment.attach(segment.instance, readonly=True)
    text = str(info.value)
    assert text.startswith(f"segment {segment.instance!r}: ") and message in text, text
    assert "\n" not in text

    assert main(["segment", "info", segment.instance]) == 1
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err == f"petra segment: {text}\n"

    top = subprocess.run([sys.executable, "-m", "petra.top", "--once", "--instance",
                          segment.instance], capture_output=True, text=True, timeout=60,
                         check=False)
    assert top.returncode == 1
    assert top.stderr == f"petra-top: {text}\n" and top.stdout == ""


def test_intact_segment_still_attaches(segment: Segment) -> None:
    with Segment.attach(segment.instance, readonly=True) as seg:
        assert seg.names == [s.name for s in SIGNALS]
        assert seg.info_of("tank.level").unit == "m"
