"""The audit chain: appends from several processes, tampering and truncation found
by ``verify_audit`` (and ``petra audit verify``), torn writes repaired, rotation
keeping one chain."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from petra.security import (
    GENESIS,
    AccessRole,
    AuditLog,
    Principal,
    audit_files,
    record_hash,
    verify_audit,
)

WHO = Principal("alice", AccessRole.OPERATOR, "api", "10.0.0.7")


def _log(tmp_path: Path, **kw: int) -> AuditLog:
    return AuditLog(tmp_path / "audit" / "audit.log", instance="demo", fsync=False, **kw)


def _lines(log: AuditLog) -> list[dict[str, object]]:
    return [json.loads(x) for x in log.path.read_text().splitlines()]


def test_records_are_chained_and_complete(tmp_path: Path) -> None:
    log = _log(tmp_path)
    r1 = log.append(WHO, "signal.write", "tank.sp", before=1.0, after=2.0)
    r2 = log.append(None, "login", "bob", outcome="failed", reason="wrong", user="bob",
                    source="10.0.0.8", via="api")
    assert (r1["seq"], r1["prev"], r2["seq"], r2["prev"]) == (1, GENESIS, 2, r1["hash"])
    assert r1["hash"] == record_hash(r1)
    assert {"time", "instance", "user", "role", "via", "source", "action", "target",
            "outcome", "before", "after", "prev", "hash", "seq"} <= set(r1)
    assert (r1["user"], r1["role"], r1["source"], r1["instance"]) == (
        "alice", "operator", "10.0.0.7", "demo")
    assert _lines(log) == [r1, r2]
    report = verify_audit(log.path)
    assert report.ok and report.records == 2 and report.notes == []
    mode = stat.S_IMODE(log.path.stat().st_mode)
    assert mode & 0o007 == 0, oct(mode)


def test_non_finite_values_and_long_text_are_recorded_safely(tmp_path: Path) -> None:
    log = _log(tmp_path)
    rec = log.append(WHO, "signal.write", "x" * 2000, before=float("nan"),
                     after=float("inf"), reason="r\n" * 1000)
    assert rec["before"] == "nan" and rec["after"] == "inf"
    assert len(str(rec["target"])) < 600 and verify_audit(log.path).ok


def _filled(tmp_path: Path, n: int = 6) -> AuditLog:
    log = _log(tmp_path)
    for i in range(n):
        log.append(WHO, "signal.write", "tank.sp", before=i, after=i + 1)
    return log


def test_an_edited_value_is_found(tmp_path: Path) -> None:
    log = _filled(tmp_path)
    text = log.path.read_text().replace('"after":3,', '"after":99,', 1)
    log.path.write_text(text)
    report = verify_audit(log.path)
    assert not report.ok
    assert any("seq 3" in p and "edited" in p for p in report.problems), report.problems


def test_an_edit_with_a_recomputed_hash_breaks_the_chain_after_it(tmp_path: Path) -> None:
    log = _filled(tmp_path)
    lines = _lines(log)
    lines[2]["after"] = 99
    lines[2]["hash"] = record_hash(lines[2])
    log.path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    report = verify_audit(log.path)
    assert any("seq 4" in p and "chain is broken" in p for p in report.problems)


def test_a_removed_line_is_found(tmp_path: Path) -> None:
    log = _filled(tmp_path)
    lines = log.path.read_text().splitlines(keepends=True)
    log.path.write_text("".join(lines[:2] + lines[3:]))
    report = verify_audit(log.path)
    assert any("seq jumps from 2 to 4" in p for p in report.problems), report.problems


def test_reordered_lines_are_found(tmp_path: Path) -> None:
    log = _filled(tmp_path)
    lines = log.path.read_text().splitlines(keepends=True)
    lines[1], lines[2] = lines[2], lines[1]
    log.path.write_text("".join(lines))
    assert not verify_audit(log.path).ok


def test_lines_cut_from_the_end_are_found_by_the_head(tmp_path: Path) -> None:
    log = _filled(tmp_path)
    lines = log.path.read_text().splitlines(keepends=True)
    log.path.write_text("".join(lines[:4]))
    report = verify_audit(log.path)
    assert any("truncated" in p and "seq 6" in p for p in report.problems), report.problems


def test_the_next_writer_records_a_truncation(tmp_path: Path) -> None:
    log = _filled(tmp_path)
    lines = log.path.read_text().splitlines(keepends=True)
    log.path.write_text("".join(lines[:3]))
    _log(tmp_path).append(WHO, "signal.write", "tank.sp")
    actions = [r["action"] for r in _lines(log)]
    assert actions[-2:] == ["audit.truncation_detected", "signal.write"]
    report = verify_audit(log.path)
    assert any("chain is broken" in p for p in report.problems)  # the gap stays visible


def test_a_torn_last_line_is_cut_by_the_next_writer(tmp_path: Path) -> None:
    log = _filled(tmp_path, 3)
    with log.path.open("ab") as f:
        f.write(b'{"action":"signal.wri')  # a writer killed mid-line
    assert not verify_audit(log.path).ok
    log.append(WHO, "signal.write", "tank.sp")
    report = verify_audit(log.path)
    assert report.ok and report.records == 4, report.problems


def test_a_complete_line_without_its_head_is_adopted(tmp_path: Path) -> None:
    log = _filled(tmp_path, 3)
    head = log.head_path.read_bytes()
    log.append(WHO, "signal.write", "tank.sp")  # line 4 ...
    log.head_path.write_bytes(head)  # ... but its writer died before the head
    report = verify_audit(log.path)
    assert report.ok and any("after the head" in n for n in report.notes)
    log.append(WHO, "signal.write", "tank.sp")
    assert verify_audit(log.path).ok and [r["seq"] for r in _lines(log)] == [1, 2, 3, 4, 5]


def test_rotation_keeps_one_chain(tmp_path: Path) -> None:
    log = _log(tmp_path, rotate_bytes=4096, keep=3)
    for i in range(60):
        log.append(WHO, "signal.write", f"sig{i}", before=i, after=i + 1)
    files = audit_files(log.path)
    assert [p.name for p in files] == ["audit.log.3", "audit.log.2", "audit.log.1",
                                       "audit.log"]
    report = verify_audit(log.path)
    assert report.ok, report.problems
    assert report.last_seq == 60 and report.first_seq > 1
    assert any("rotated away" in n for n in report.notes)
    first_new = json.loads(log.path.read_text().splitlines()[0])
    last_old = json.loads(files[-2].read_text().splitlines()[-1])
    assert first_new["prev"] == last_old["hash"]
    # a missing middle file breaks it
    files[1].unlink()
    assert not verify_audit(log.path).ok


def test_reading_pages_across_rotated_files(tmp_path: Path) -> None:
    log = _log(tmp_path, rotate_bytes=4096, keep=5)
    for i in range(40):
        log.append(WHO, "signal.write", f"s{i}")
    page = log.read(after_seq=10, limit=15)
    assert [r["seq"] for r in page] == list(range(11, 26))


def _appender(path: str, n: int) -> None:
    log = AuditLog(path, instance="demo", fsync=False)
    who = Principal(f"p{os.getpid()}", AccessRole.OPERATOR, "cli", "local")
    for i in range(n):
        log.append(who, "signal.write", "x", before=i, after=i + 1)


def test_appends_from_several_processes_make_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_appender, args=(str(path), 40)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    report = verify_audit(path)
    assert report.ok and report.records == 160, report.problems


def test_petra_audit_verify_exit_status(tmp_path: Path) -> None:
    log = _filled(tmp_path)

    def verify() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "petra", "audit", "verify",
                               str(log.path)], capture_output=True, text=True, timeout=60,
                              check=False)

    ok = verify()
    assert ok.returncode == 0 and "intact, 6 records" in ok.stdout
    log.path.write_text(log.path.read_text().replace('"before":2', '"before":7', 1))
    bad = verify()
    assert bad.returncode == 1 and "PROBLEM" in bad.stderr and "seq 3" in bad.stderr


def test_an_unwritable_log_is_refused_before_acting(tmp_path: Path) -> None:
    from petra.security import AuditError

    (tmp_path / "ro").mkdir()
    (tmp_path / "ro" / "audit.log").mkdir()  # a directory where the file should be
    with pytest.raises(AuditError):
        AuditLog(tmp_path / "ro" / "audit.log").append(WHO, "x")
