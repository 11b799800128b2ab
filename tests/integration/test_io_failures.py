"""A connected process whose task dies must stop and be restarted, never linger.

The mqtt-out sink is run by a real supervisor against a real Mosquitto broker; the
sink's journal pump is made to raise (``PETRA_INJECT_FAULT``, the io layer's fault
hook). The process must exit non-zero at once (its heartbeat never says RUNNING with a
dead pump) and the supervisor must restart it within its normal restart time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from driver_peers import Mosquitto, wait_until

from petra.shm import Segment, read_heartbeats, unlink_instance

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "demo-plant.yaml"
SINK = "sink:mqtt-out"


def test_sink_whose_pump_raises_is_restarted(tmp_path: Path, mosquitto: Mosquitto) -> None:
    plant = tmp_path / "plant.yaml"
    plant.write_text(DEMO.read_text() + f"""
mqtt:
  broker: {{host: 127.0.0.1, port: {mosquitto.port}}}
  retry: {{initial_delay_s: 0.1, max_delay_s: 1}}
  publish:
    - signals: ["*"]
""")
    instance = f"iofail-{os.getpid()}"
    runtime = tmp_path / "run"
    runtime.mkdir()
    log = tmp_path / "petra.log"
    env = {**os.environ, "PETRA_RUNTIME_DIR": str(runtime),
           "PETRA_INJECT_FAULT": f"{SINK}:background-raise:1.0"}
    proc = subprocess.Popen([sys.executable, "-m", "petra", "run", str(plant),
                             "--instance", instance, "--health", "127.0.0.1:0"],
                            stdout=subprocess.DEVNULL,
                            stderr=log.open("w"), env=env)
    try:
        def sink_restarts() -> int:
            try:
                with Segment.attach(instance, readonly=True) as seg:
                    return max((hb.restarts for hb in read_heartbeats(seg)
                                if hb.role == SINK), default=-1)
            except Exception:
                return -1

        wait_until(lambda: sink_restarts() >= 0 or proc.poll() is not None, timeout=20,
                   what="the sink's first start")
        assert proc.poll() is None, log.read_text()
        t0 = time.monotonic()
        wait_until(lambda: sink_restarts() >= 2, timeout=20, what="two sink restarts")
        elapsed = time.monotonic() - t0
        text = log.read_text()
        # the pump's failure is named, the process exits 1, the supervisor restarts it
        assert f"event=process_failed role={SINK}" in text
        assert "InjectedFaultError" in text
        assert f"event=child_exited role={SINK}" in text
        assert "reason='exit status 1'" in text, text
        # each cycle is ~1 s of life plus the supervisor's backoff (0.5 s, then 1 s)
        assert elapsed < 15, f"two restarts took {elapsed:.1f}s"
        # a dead pump never leaves a RUNNING heartbeat behind: a fresh process runs
        with Segment.attach(instance, readonly=True) as seg:
            sinks = [hb for hb in read_heartbeats(seg) if hb.role == SINK]
        assert len(sinks) <= 1
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            unlink_instance(instance)
