"""The event log: the fold of ``put`` rebuilds the state; a torn tail at every byte is
cut and loses only the unfinished line; snapshots and rotation keep recovery exact."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from petra.alarms import EventLog, read_events

NS = 1_000_000_000


def line(k: int, alarm: str = "a", state: str = "unack") -> dict[str, object]:
    return {"time_ns": k * NS, "alarm": alarm, "event": "transition",
            "put": {"alarm": {alarm: {"state": state, "n": k}}}}


def test_append_flush_and_replay(tmp_path: Path) -> None:
    log = EventLog(tmp_path)
    assert log.open().seq == 0
    for k in range(1, 6):
        log.append(line(k, "a" if k % 2 else "b"))
    log.append({"time_ns": 6 * NS, "event": "x", "put": {"alarm": {"b": None}}})
    assert log.flush() == 6 and log.flushed_seq == 6
    log.close()
    rep = EventLog(tmp_path).open()
    assert rep.seq == 6 and rep.lines == 6 and rep.torn_bytes == 0
    assert rep.state == {"alarm": {"a": {"state": "unack", "n": 5}}}
    docs = read_events(tmp_path)
    assert [d["seq"] for d in docs] == [1, 2, 3, 4, 5, 6]
    assert docs[0]["time"] == "1970-01-01T00:00:01.000Z"


def test_torn_tail_at_every_byte(tmp_path: Path) -> None:
    src = tmp_path / "src"
    log = EventLog(src)
    log.open()
    for k in range(1, 4):
        log.append(line(k))
    log.flush()
    log.close()
    data = (src / "events.jsonl").read_bytes()
    ends = [i + 1 for i, b in enumerate(data) if b == ord("\n")]
    for cut in range(len(data) + 1):
        d = tmp_path / f"cut{cut}"
        d.mkdir()
        (d / "events.jsonl").write_bytes(data[:cut])
        elog = EventLog(d)
        rep = elog.open()
        whole = sum(1 for e in ends if e <= cut)
        assert rep.seq == whole, cut
        assert rep.torn_bytes == cut - (ends[whole - 1] if whole else 0)
        if whole:
            assert rep.state["alarm"]["a"]["n"] == whole
        # the torn bytes are gone and appends continue the sequence cleanly
        elog.append(line(9))
        elog.flush()
        elog.close()
        docs = read_events(d)
        assert [x["seq"] for x in docs] == [*range(1, whole + 1), whole + 1]


def test_a_damaged_line_in_the_middle_is_skipped(tmp_path: Path) -> None:
    log = EventLog(tmp_path)
    log.open()
    for k in range(1, 4):
        log.append(line(k))
    log.flush()
    log.close()
    lines = (tmp_path / "events.jsonl").read_bytes().splitlines(keepends=True)
    lines[1] = b'{"seq": 2, "put": {broken\n'
    (tmp_path / "events.jsonl").write_bytes(b"".join(lines))
    rep = EventLog(tmp_path).open()
    assert rep.bad_lines == 1 and rep.seq == 3 and rep.state["alarm"]["a"]["n"] == 3


def test_snapshot_rotation_and_recovery(tmp_path: Path) -> None:
    log = EventLog(tmp_path, rotate_bytes=64 * 1024, keep=2)
    log.open()
    k = 0
    for _round in range(5):
        for _ in range(800):
            k += 1
            log.append(line(k, f"a{k % 7}"))
        log.flush()
        state = {"alarm": {f"a{j}": {"state": "unack", "n": max(i for i in range(1, k + 1)
                                                               if i % 7 == j)}
                           for j in range(7)}}
        log.snapshot(state, {"metrics": {"raised": []}})
    for _ in range(10):
        k += 1
        log.append(line(k, "a0", "acked"))
    log.flush()
    log.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert "events.jsonl.1" in files and "events.jsonl.2" in files
    assert "events.jsonl.3" not in files  # keep=2
    rep = EventLog(tmp_path, keep=2).open()
    assert rep.seq == k and rep.snapshot_seq == k - 10 and rep.lines == 10
    assert rep.state["alarm"]["a0"] == {"state": "acked", "n": k}
    assert rep.state["alarm"]["a3"]["n"] == max(i for i in range(1, k - 9) if i % 7 == 3)
    assert rep.extra == {"metrics": {"raised": []}, "time_ns": rep.extra["time_ns"]}


def test_without_snapshot_rotated_logs_are_replayed(tmp_path: Path) -> None:
    log = EventLog(tmp_path, rotate_bytes=64 * 1024, keep=3)
    log.open()
    for k in range(1, 2001):
        log.append(line(k))
    log.flush()
    log.snapshot({"alarm": {"a": {"state": "unack", "n": 2000}}})
    log.append(line(2001))
    log.flush()
    log.close()
    (tmp_path / "snapshot.json").write_text("{not json")
    rep = EventLog(tmp_path, keep=3).open()
    assert rep.seq == 2001 and rep.state["alarm"]["a"]["n"] == 2001
    assert rep.lines == 2001


def test_lines_are_json_without_nan(tmp_path: Path) -> None:
    log = EventLog(tmp_path, fsync=False)
    log.open()
    log.append({"time_ns": 1, "value": 1.5, "event": "x"})
    log.flush()
    doc = json.loads((tmp_path / "events.jsonl").read_text())
    assert doc == {"time_ns": 1, "value": 1.5, "event": "x", "seq": 1,
                   "time": "1970-01-01T00:00:00.000Z"}


def test_a_failed_flush_leaves_nothing_behind_after_reopening(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = EventLog(tmp_path)
    log.open()
    log.append(line(1))
    log.flush()
    log.append(line(2))
    real = os.write

    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(OSError):
        log.flush()
    log.close()  # the process reconnects: close (the disk still full), open again
    monkeypatch.setattr(os, "write", real)
    rep = log.open()
    assert rep.seq == 1 and log.pending == 0
    log.append(line(3))
    log.flush()
    assert [d["seq"] for d in read_events(tmp_path)] == [1, 2]
    assert read_events(tmp_path)[1]["put"]["alarm"]["a"]["n"] == 3
