"""An operator's first hour against a real ``petra run`` of the demo plant.

``petra write`` starts the pump and the level climbs toward the setpoint; a read-only
signal, an out-of-range value and NaN are refused with exit status 1 and a message
that names the signal; ``petra read`` shows what was written; petra-top's detail pane
finds the plant file's descriptions; ``/metrics`` labels its quantiles as written;
and a Ctrl-C that reaches the supervisor twice still leaves the safe values written.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_run_e2e import Running, start, stop, wait_until

from petra.shm import Segment


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    r = start(tmp_path_factory.mktemp("operator"), f"op-{os.getpid()}")
    yield r
    stop(r)


def petra(r: Running, *args: str) -> subprocess.CompletedProcess[str]:
    return r.petra(*args)


def read_json(r: Running, *names: str) -> dict[str, Any]:
    out = petra(r, "read", "--json", r.instance, *names)
    assert out.returncode == 0, out.stderr
    data: dict[str, Any] = json.loads(out.stdout)["signals"]
    return data


def value(r: Running, name: str) -> Any:
    with Segment.attach(r.instance, readonly=True) as seg:
        return seg.get(name)


def test_write_starts_the_pump_and_the_level_moves_toward_the_setpoint(demo: Running) -> None:
    before = read_json(demo, "tank.level", "plant.running", "tank.level_sp")
    assert before["plant.running"]["value"] is False  # the demo starts stopped
    level0, sp = before["tank.level"]["value"], before["tank.level_sp"]["value"]
    assert level0 < sp
    out = petra(demo, "write", demo.instance, "plant.start=true")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"{demo.instance}: plant.start = true"
    wait_until(lambda: value(demo, "plant.running") is True, what="the pump to run")
    # "Moves visibly within seconds": the level rises by 0.2 m within 5 s.
    wait_until(lambda: value(demo, "tank.level") > level0 + 0.2, timeout=5.0,
               what="the level to rise")
    wait_until(lambda: abs(value(demo, "tank.level") - sp) < 0.2, timeout=40.0,
               what="the level to reach the setpoint")
    after = read_json(demo, "plant.start")["plant.start"]
    assert after["writable"] is True and after["quality"] == "good"
    assert after["writer"] != 0


@pytest.mark.parametrize(("assignment", "message"), [
    ("tank.level=3", "signal 'tank.level' is not writable"),
    ("tank.level_sp=9", "signal 'tank.level_sp': 9.0 is outside its limits [0, 5]"),
    ("tank.level_sp=-0.5", "signal 'tank.level_sp': -0.5 is outside its limits [0, 5]"),
    ("tank.level_sp=nan", "signal 'tank.level_sp': nan is not a finite number"),
    ("tank.level_sp=inf", "signal 'tank.level_sp': inf is not a finite number"),
    ("tank.level_sp=true", "signal 'tank.level_sp' is float; got bool"),
    ("tank.level_sp=abc", "signal 'tank.level_sp': not a value: 'abc'"),
    ("tank.levl_sp=1", "no signal named 'tank.levl_sp'"),
])
def test_refused_writes_exit_1_and_change_nothing(demo: Running, assignment: str,
                                                  message: str) -> None:
    sp = value(demo, "tank.level_sp")
    level = value(demo, "tank.level")
    out = petra(demo, "write", demo.instance, assignment)
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert out.stderr.startswith("petra write: ") and message in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert out.stdout == ""
    assert value(demo, "tank.level_sp") == sp
    if assignment.startswith("tank.level="):
        assert value(demo, "tank.level") != 3.0 or level == 3.0


def test_a_typo_in_a_later_assignment_writes_nothing(demo: Running) -> None:
    sp = value(demo, "tank.level_sp")
    out = petra(demo, "write", demo.instance, "tank.level_sp=3", "plant.stop=maybe")
    assert out.returncode == 1 and "not a value: 'maybe'" in out.stderr
    assert value(demo, "tank.level_sp") == sp
    out = petra(demo, "write", demo.instance, "tank.level_sp")
    assert out.returncode == 2 and "expected SIGNAL=VALUE" in out.stderr


def test_write_then_read_and_the_instance_word(demo: Running) -> None:
    out = petra(demo, "write", "--instance", demo.instance, "tank.level_sp=2.75")
    assert out.returncode == 0, out.stderr
    table = petra(demo, "read", demo.instance, "tank.level_sp", "plant.*")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["NAME", "VALUE", "UNIT", "QUALITY", "SUBSTATUS", "AGE",
                                "OWNER", "W"]
    row = next(line.split() for line in lines if line.startswith("tank.level_sp"))
    assert row[1:4] == ["2.75", "m", "good"]
    names = [line.split()[0] for line in lines[1:]]
    assert names == ["plant.start", "plant.stop", "tank.level_sp", "plant.running"]  # slot order
    missing = petra(demo, "read", demo.instance, "tank.levle")
    assert missing.returncode == 1 and "did you mean" in missing.stderr


def test_petra_top_detail_has_the_plant_files_description(demo: Running,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    from petra.top import InstanceSource

    monkeypatch.setenv("PETRA_RUNTIME_DIR", str(demo.runtime))
    source = InstanceSource(demo.instance)
    try:
        d = source.detail("tank.level_sp")
        assert d.description == "Level setpoint"
        assert (d.minimum, d.maximum, d.unit, d.writable) == (0.0, 5.0, "m", True)
        assert source.detail("plant.running").description.startswith("Pump running")
    finally:
        source.close()


def test_metrics_quantile_labels(demo: Running) -> None:
    with urllib.request.urlopen(demo.url("/metrics"), timeout=10) as resp:
        text = resp.read().decode()
    labels = {line.split('quantile="')[1].split('"')[0] for line in text.splitlines()
              if line.startswith("petra_scan_wakeup_latency_seconds{")}
    assert labels == {"0.5", "0.9", "0.99", "0.999", "max"}


def test_ctrl_c_delivered_twice_still_writes_safe_values(tmp_path: Path) -> None:
    r = start(tmp_path, f"op2-{os.getpid()}")
    seg = Segment.attach(r.instance, readonly=True)  # outlives the unlink at stop
    try:
        out = r.petra("write", r.instance, "plant.start=true")
        assert out.returncode == 0, out.stderr
        wait_until(lambda: seg.get("valve.cmd") > 1.0, what="the valve to open")
        # What a terminal's Ctrl-C under `timeout --foreground` does: two SIGINTs, the
        # second as soon as the first was taken (sent together, the kernel would merge
        # them into one), while the scan has yet to write its safe values.
        r.proc.send_signal(signal.SIGINT)
        wait_until(lambda: "event=stop_requested" in r.log.read_text(), interval=0.001,
                   what="the first SIGINT to be taken")
        r.proc.send_signal(signal.SIGINT)
        assert r.proc.wait(timeout=30) == 0
        assert seg.get("valve.cmd") == 0.0  # safe_value: 0.0
        assert seg.get("plant.running") is False  # safe_value: false
        log = r.log.read_text()
        assert "event=stop_signal_repeated" in log and "event=stop_forced" not in log
    finally:
        seg.close()
        stop(r)


def test_petra_write_needs_a_running_instance(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "petra", "write", "--instance",
                          f"nothing-{time.monotonic_ns()}", "a=1"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 1 and "no segment for instance" in out.stderr
