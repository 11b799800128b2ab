"""The durable request spool: in order, answered once, garbage never wedges it."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from petra.io import RequestSpool
from petra.io._spool import MAX_REQUEST_BYTES, new_id


def test_submit_pending_answer_result(tmp_path: Path) -> None:
    sp = RequestSpool(tmp_path / "s")
    ids = [sp.submit({"op": "ack", "n": k}) for k in range(5)]
    assert ids == sorted(ids) and sp.pending_ids() == ids
    got = sp.pending()
    assert [r.id for r in got] == ids
    assert [r.body["n"] for r in got if r.body] == list(range(5))
    assert all(r.body and r.body["id"] == r.id for r in got)
    assert sp.result(ids[0]) is None
    sp.answer(ids[0], {"ok": True})
    assert sp.pending_ids() == ids[1:]
    assert sp.wait(ids[0], 1.0) == {"ok": True, "id": ids[0]}
    assert sp.result(ids[0]) is None  # the reader removed it
    assert sp.wait(ids[1], 0.05, poll_s=0.01) is None


def test_garbage_is_answered_or_removed(tmp_path: Path) -> None:
    sp = RequestSpool(tmp_path)
    sp.ensure()
    rid = new_id()
    (sp.incoming / f"{rid}.json").write_bytes(b"{not json")
    big = new_id(time.time_ns() + 1)
    (sp.incoming / f"{big}.json").write_bytes(b"[" + b"1," * MAX_REQUEST_BYTES + b"1]")
    arr = new_id(time.time_ns() + 2)
    (sp.incoming / f"{arr}.json").write_bytes(b"[1, 2]")
    (sp.incoming / "stray.txt").write_bytes(b"x")
    got = {r.id: r.error for r in sp.pending()}
    assert got == {rid: "bad request: invalid JSON: Expecting property name enclosed in "
                        "double quotes at char 1",
                   big: f"request larger than {MAX_REQUEST_BYTES} bytes",
                   arr: "request must be a JSON object"}
    assert not (sp.incoming / "stray.txt").exists()
    with pytest.raises(ValueError, match="bad request id"):
        sp.submit({}, request_id="../x")


def test_prune_old_results_and_temporaries(tmp_path: Path) -> None:
    sp = RequestSpool(tmp_path)
    rid = sp.submit({"a": 1})
    sp.answer(rid, {"ok": True})
    (sp.tmp / "left.json").write_text("{}")
    old = time.time() - 7200
    for p in (sp.results / f"{rid}.json", sp.tmp / "left.json"):
        os.utime(p, (old, old))
    assert sp.prune() == 2
    assert sp.result(rid) is None


def test_survives_a_new_reader(tmp_path: Path) -> None:
    """What one process submitted, another process object reads: plain files."""
    rid = RequestSpool(tmp_path).submit({"op": "x"})
    again = RequestSpool(tmp_path)
    (req,) = again.pending()
    assert req.id == rid and req.body == {"op": "x", "id": rid}
    assert json.loads((again.incoming / f"{rid}.json").read_text())["op"] == "x"
