"""The API's alarm event feed (one reader of events.jsonl) and the SMS acknowledgement
code: torn lines, rotation, a large log read from its tail, paging."""

from __future__ import annotations

import json
import os
from pathlib import Path

from petra.api._alarms import TAIL_BYTES, AlarmFeed
from petra.config._alarms import ACK_CODE_LEN, ack_code


def _line(seq: int, alarm: str = "a", **kw: object) -> bytes:
    return (json.dumps({"seq": seq, "alarm": alarm, "event": "transition",
                        "put": {"alarm": {alarm: {"state": "unack"}}}, **kw}) + "\n").encode()


def test_torn_lines_wait_for_their_end_and_put_is_dropped(tmp_path: Path) -> None:
    feed = AlarmFeed(tmp_path)
    assert feed.poll() == []  # no log yet
    path = tmp_path / "events.jsonl"
    whole = _line(1) + _line(2, "b")
    path.write_bytes(whole[:-10])
    got = feed.poll()
    assert [e["seq"] for e in got] == [1] and "put" not in got[0]
    with path.open("ab") as fh:
        fh.write(whole[-10:])
    assert [(e["seq"], e["alarm"]) for e in feed.poll()] == [(2, "b")]
    assert feed.poll() == []


def test_rotation_is_followed_and_seq_never_goes_back(tmp_path: Path) -> None:
    feed = AlarmFeed(tmp_path)
    path = tmp_path / "events.jsonl"
    path.write_bytes(_line(1) + _line(2))
    assert len(feed.poll()) == 2
    path.rename(tmp_path / "events.jsonl.1")
    path.write_bytes(_line(2) + _line(3))  # a line seen before is not handed out again
    assert [e["seq"] for e in feed.poll()] == [3]


def test_a_large_log_is_read_from_its_tail(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    pad = "x" * 900
    with path.open("wb") as fh:
        seq = 0
        while fh.tell() < TAIL_BYTES + 2 * 2**20:
            seq += 1
            fh.write(_line(seq, message=pad))
    feed = AlarmFeed(tmp_path, keep=100)
    while feed.poll():
        pass
    assert feed.last_seq == seq
    assert [e["seq"] for e in feed.events] == list(range(seq - 99, seq + 1))
    assert os.path.getsize(path) > TAIL_BYTES


def test_paging_and_filter(tmp_path: Path) -> None:
    feed = AlarmFeed(tmp_path)
    (tmp_path / "events.jsonl").write_bytes(
        b"".join(_line(i, "a" if i % 2 else "b") for i in range(1, 11)))
    feed.poll()
    page, nxt = feed.after(0, 3, None)
    assert [e["seq"] for e in page] == [1, 2, 3] and nxt == 3
    page, nxt = feed.after(nxt, 100, "b")
    assert [e["seq"] for e in page] == [4, 6, 8, 10] and nxt == 10
    assert feed.after(10, 5, None) == ([], 10)
    assert feed.oldest_seq == 1


def test_ack_codes_name_one_occurrence() -> None:
    code = ack_code("tank.level_high", 3)
    assert len(code) == ACK_CODE_LEN and code.isalnum() and code.upper() == code
    assert code == ack_code("tank.level_high", 3)
    assert code != ack_code("tank.level_high", 4)
    assert code != ack_code("tank.level_low", 3)
