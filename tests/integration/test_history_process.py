"""The history sink as a real process: kill -9 under load loses and doubles nothing;
a full disk is an alarm, and recording resumes when space returns."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from driver_peers import wait_until

from petra.config import load_plant
from petra.history import Alarm, read_status
from petra.shm import Segment, read_heartbeats
from petra.types import SINK_HISTORY, HistoryCounter, sink_role

SIGNALS = ("w.a", "w.b", "w.c")


def plant_file(tmp: Path, instance: str, hist: Path, extra: str = "") -> Path:
    text = f"""instance: {instance}
scan: {{journal_capacity: 262144}}
signals:
  - {{name: w.a, type: float}}
  - {{name: w.b, type: float}}
  - {{name: w.c, type: float}}
  - {{name: hist.alarm, type: bool, owner: "sink:history"}}
  - {{name: hist.lost, type: int, owner: "sink:history"}}
history:
  dir: {hist}
  alarm_signal: hist.alarm
  lost_signal: hist.lost
  parquet: {{max_file_age_s: 0.3, compact_after_s: null}}
{extra}"""
    path = tmp / "plant.yaml"
    path.write_text(text)
    return path


def start_sink(plant: Path, instance: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "petra", "history", "run", str(plant),
                             "--instance", instance, "--log-level", "warning"],
                            stdin=subprocess.DEVNULL)


@contextlib.contextmanager
def segment_for(plant: Path) -> Iterator[Segment]:
    p = load_plant(plant)
    seg = Segment.create(p.config.instance, p.signal_defs(), journal_capacity=1 << 18)
    try:
        yield seg
    finally:
        seg.close()
        seg.unlink()


class Writer(threading.Thread):
    """Steady load: every signal gets the next integer value (1, 2, ...) every ~0.5 ms."""

    def __init__(self, seg: Segment) -> None:
        super().__init__(daemon=True)
        self.seg = seg
        self.n = 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            self.n += 1
            for name in SIGNALS:
                self.seg.write(name, float(self.n))
            time.sleep(0.0005)


def alarms(seg: Segment) -> int:
    for hb in read_heartbeats(seg):
        if hb.role == sink_role(SINK_HISTORY):
            return int(hb.counters[HistoryCounter.ALARMS])
    return 0


def parquet_values(d: Path) -> dict[str, Counter[float]]:
    files = sorted(d.rglob("part-*.parquet"))
    table = pa.concat_tables([pq.read_table(f, columns=["signal", "value_f"]) for f in files])
    out: dict[str, Counter[float]] = {}
    for sig, v in zip(table.column("signal").to_pylist(), table.column("value_f").to_pylist(),
                      strict=True):
        out.setdefault(sig, Counter())[v] += 1
    return out


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0


def test_kill_9_under_load_loses_and_doubles_no_sample(tmp_path: Path) -> None:
    instance = f"hk{os.getpid()}"
    plant = plant_file(tmp_path, instance, tmp_path / "hist")
    rng = random.Random(13)
    with segment_for(plant) as seg:
        writer = Writer(seg)
        proc = start_sink(plant, instance)
        try:
            wait_until(lambda: read_status(tmp_path / "hist"), 30, "the sink's first status")
            writer.start()
            kills = 0
            for _ in range(5):
                time.sleep(rng.uniform(0.3, 1.2))  # a random moment under load
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                kills += 1
                proc = start_sink(plant, instance)
            time.sleep(1.0)
            writer.halt.set()
            writer.join()
            n = writer.n
            wait_until(lambda: (read_status(tmp_path / "hist") or {}).get("pid") == proc.pid,
                       30, "the restarted sink")
        finally:
            writer.halt.set()
            stop(proc)
        assert kills == 5 and n > 1000
        assert seg.get("hist.lost") == 0 and seg.get("hist.alarm") is False
    values = parquet_values(tmp_path / "hist" / "parquet")
    for name in SIGNALS:
        got = values[name]
        doubled = {v: c for v, c in got.items() if c > 1}
        assert not doubled, f"{name}: samples written twice: {list(doubled)[:5]}"
        want = {0.0} | {float(i) for i in range(1, n + 1)}  # the initial value, then 1..n
        missing = sorted(want - set(got))
        assert not missing, f"{name}: {len(missing)} samples lost, first {missing[:5]}"
        assert set(got) == want


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (root only): a disk that really fills up."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(path: Path) -> None:
    """Take every free byte of the file system ``path`` is on."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        chunk = b"\0" * 4096
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, chunk)
    finally:
        os.close(fd)


def test_a_full_disk_raises_the_alarm_and_recording_resumes(small_disk: Path,
                                                            tmp_path: Path) -> None:
    instance = f"hf{os.getpid()}"
    hist = small_disk / "hist"
    plant = plant_file(tmp_path, instance, hist,
                       "  wal: {segment_bytes: 64KiB, quota_bytes: 1MiB, "
                       "fsync_interval_s: 0.02}\n")
    with segment_for(plant) as seg:
        proc = start_sink(plant, instance)
        try:
            wait_until(lambda: read_status(hist), 30, "the sink's first status")
            filler = small_disk / "filler"
            fill(filler)
            n = 0
            for _ in range(400):
                n += 1
                for name in SIGNALS:
                    seg.write(name, float(n))
                time.sleep(0.002)
            # the status file cannot be written on a full disk: the heartbeat record
            # (shared memory) carries the alarm bits
            wait_until(lambda: alarms(seg) & Alarm.DISK_FULL, 20, "the disk_full alarm")
            assert wait_until(lambda: seg.get("hist.alarm") is True, 10, "the alarm signal")
            assert proc.poll() is None  # an alarm, not a crash
            filler.unlink()  # space returns
            for _ in range(100):
                n += 1
                for name in SIGNALS:
                    seg.write(name, float(n))
                time.sleep(0.002)
            wait_until(lambda: seg.get("hist.alarm") is False, 30, "the alarm to clear")
            wait_until(lambda: alarms(seg) == 0, 5, "the alarm bits to clear")
            wait_until(lambda: (s := read_status(hist)) and s["wal"]["next_seq"] > 0 and all(
                d["lag_samples"] == 0 for d in s["destinations"].values()), 30,
                "the backlog to drain")
        finally:
            stop(proc)
        assert seg.get("hist.lost") == 0
    values = parquet_values(hist / "parquet")
    for name in SIGNALS:
        assert set(values[name]) == {float(i) for i in range(n + 1)}
        assert max(values[name].values()) == 1
