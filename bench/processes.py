"""Memory per Petra process: run a plant under ``petra run`` and measure each process.

    python bench/processes.py --json out.json [--plant examples/demo-plant.yaml]
                              [--runs 3] [--samples 5] [--settle 3]

Each run starts ``petra run PLANT`` under a unique instance name (runtime directory
in a temporary folder, health endpoint on a free loopback port), waits until
``/healthz`` says ``ok`` with every process running, lets it settle, then samples
every process of the plant ``--samples`` times, half a second apart, and finally
stops the plant with SIGTERM (a non-zero exit of the supervisor fails the bench).

Per process and sample (psutil ``memory_full_info`` and ``/proc``):

- ``pss``: proportional set size, the figure the design goal (<= 40 MB) is stated in;
  pages shared with other processes (libraries, the shared segment) are split
  between the processes that map them.
- ``uss``: pages this process alone holds.
- ``locked`` (``VmLck`` of ``/proc/PID/status``): the size of the locked mappings,
  what counts against ``RLIMIT_MEMLOCK``; ``locked_resident`` (``Locked`` of
  ``smaps_rollup``): the PSS of the pages actually locked in memory.

A role's figure in a run is the median of its samples; the reported figure is the
median over runs. JSON keys: ``pss_mb_<role>``, ``uss_mb_<role>``, ``rss_mb_<role>``
for each role (``scan``, ``supervisor``, ``driver_<name>``, ``sink_<name>``),
``locked_mb_scan``, ``locked_resident_mb_scan``, ``threads_scan``, plus every run's
raw samples, the scan's own wake-up latency quantiles over the run (``scan_wake_us_p50/p90/max``,
from ``/metrics``: a check that memory changes cost no latency) and the load average
of the machine before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psutil
from _common import machine_info, median, print_table, write_json

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "demo-plant.yaml"
SCHEMA_VERSION = 1
MB = 1024 * 1024


def _proc_kb(pid: int, path: str, key: str) -> int:
    """A ``key: N kB`` field of ``/proc/PID/<path>``, in kB (0 when absent)."""
    try:
        with open(f"/proc/{pid}/{path}") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def sample(pid: int) -> dict[str, float]:
    """One measurement of one process, in MB (threads as a count)."""
    p = psutil.Process(pid)
    mem = p.memory_full_info()
    return {
        "pss_mb": mem.pss / MB,
        "uss_mb": mem.uss / MB,
        "rss_mb": mem.rss / MB,
        "locked_mb": _proc_kb(pid, "status", "VmLck") / 1024,
        "locked_resident_mb": _proc_kb(pid, "smaps_rollup", "Locked") / 1024,
        "threads": float(p.num_threads()),
    }


def role_key(role: str) -> str:
    """``driver:plc1`` -> ``driver_plc1`` (a JSON key part)."""
    return "".join(c if c.isalnum() else "_" for c in role)


class Plant:
    """One ``petra run`` of the plant, with its own runtime directory."""

    def __init__(self, plant: Path, instance: str, runtime: Path, log: Path) -> None:
        self.instance = instance
        self.runtime = runtime
        self.log = log
        env = {**os.environ, "PETRA_RUNTIME_DIR": str(runtime)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "petra", "run", str(plant), "--instance", instance,
             "--health", "127.0.0.1:0"],
            stdout=subprocess.DEVNULL, stderr=log.open("w"), env=env)

    def health(self) -> dict[str, Any] | None:
        """``/healthz`` as JSON, or None while the endpoint is not up."""
        try:
            state = json.loads((self.runtime / f"petra-{self.instance}.json").read_text())
            if state.get("pid") != self.proc.pid or not state.get("health_port"):
                return None
            url = f"http://127.0.0.1:{state['health_port']}/healthz"
            with urllib.request.urlopen(url, timeout=5) as resp:
                body: dict[str, Any] = json.loads(resp.read())
                return body
        except (FileNotFoundError, ValueError, OSError, urllib.error.URLError):
            return None

    def metrics(self) -> dict[str, float]:
        """The scan's wake-up latency quantiles (us) and overruns from ``/metrics``."""
        state = json.loads((self.runtime / f"petra-{self.instance}.json").read_text())
        url = f"http://127.0.0.1:{state['health_port']}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("petra_scan_wakeup_latency_seconds{"):
                q = line.split('quantile="', 1)[1].split('"', 1)[0]
                name = "max" if q == "max" else f"p{float(q) * 100:g}".replace(".", "")
                out[f"wake_us_{name}"] = float(line.rsplit(" ", 1)[1]) * 1e6
            elif line.startswith(("petra_scan_overruns_total ", "petra_scan_cycles_total ")):
                name, value = line.rsplit(" ", 1)
                out[name.removeprefix("petra_scan_").removesuffix("_total")] = float(value)
        return out

    def wait_ready(self, timeout: float) -> dict[str, int]:
        """Wait for status ok with every process running; return role -> pid."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"petra run exited with {self.proc.returncode}:\n"
                                   + self.log.read_text()[-3000:])
            body = self.health()
            if body and body.get("status") == "ok" and all(
                    p["state"] == "running" for p in body.get("processes", [])):
                roles = {p["role"]: int(p["pid"]) for p in body["processes"]}
                roles["supervisor"] = self.proc.pid
                return roles
            time.sleep(0.2)
        raise RuntimeError("the plant did not become healthy in time:\n"
                           + self.log.read_text()[-3000:])

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise RuntimeError("petra run did not stop on SIGTERM") from None
        return int(self.proc.returncode)


def one_run(plant_path: Path, n: int, samples: int, settle: float, timeout: float
            ) -> dict[str, Any]:
    instance = f"bench-proc-{os.getpid()}-{n}"
    with tempfile.TemporaryDirectory(prefix="petra-bench-") as tmp:
        runtime = Path(tmp) / "run"
        runtime.mkdir()
        plant = Plant(plant_path, instance, runtime, Path(tmp) / "plant.log")
        try:
            roles = plant.wait_ready(timeout)
            time.sleep(settle)
            raw: dict[str, list[dict[str, float]]] = {r: [] for r in roles}
            for i in range(samples):
                if i:
                    time.sleep(0.5)
                for role, pid in roles.items():
                    raw[role].append(sample(pid))
            scan_metrics = plant.metrics()
        finally:
            code = plant.stop()
        if code != 0:
            raise RuntimeError(f"petra run exited with {code} after SIGTERM:\n"
                               + plant.log.read_text()[-3000:])
    per_role = {role: {k: median(s[k] for s in ss) for k in ss[0]}
                for role, ss in raw.items()}
    return {"instance": instance, "pids": roles, "per_role": per_role, "samples": raw,
            "scan_metrics": scan_metrics}


def summarise(runs: list[dict[str, Any]]) -> dict[str, float]:
    out: dict[str, float] = {}
    roles = sorted({r for run in runs for r in run["per_role"]})
    for role in roles:
        key = role_key(role)
        for metric in ("pss_mb", "uss_mb", "rss_mb"):
            out[f"{metric}_{key}"] = median(run["per_role"][role][metric] for run in runs
                                           if role in run["per_role"])
    scan = [run["per_role"]["scan"] for run in runs if "scan" in run["per_role"]]
    if scan:
        out["locked_mb_scan"] = median(s["locked_mb"] for s in scan)
        out["locked_resident_mb_scan"] = median(s["locked_resident_mb"] for s in scan)
        out["threads_scan"] = median(s["threads"] for s in scan)
    # p99 and beyond of a short run fall in the histogram's overflow bucket (inf)
    for key in ("wake_us_p50", "wake_us_p90", "wake_us_max", "overruns"):
        values = [run["scan_metrics"][key] for run in runs if key in run["scan_metrics"]]
        if values:
            out[f"scan_{key}"] = median(values)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", required=True, help="write the results here")
    ap.add_argument("--plant", default=str(DEMO), help="plant file (default: the demo)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--settle", type=float, default=3.0,
                    help="seconds to let the plant run after it is healthy")
    ap.add_argument("--timeout", type=float, default=60.0,
                    help="seconds to wait for the plant to become healthy")
    args = ap.parse_args()

    load_before = os.getloadavg()
    runs = [one_run(Path(args.plant), n, args.samples, args.settle, args.timeout)
            for n in range(args.runs)]
    load_after = os.getloadavg()
    summary = summarise(runs)

    rows = []
    for role in sorted(runs[0]["per_role"], key=lambda r: (r != "scan", r)):
        per = [run["per_role"][role] for run in runs if role in run["per_role"]]
        rows.append([role, median(p["pss_mb"] for p in per), median(p["uss_mb"] for p in per),
                     median(p["rss_mb"] for p in per), median(p["locked_mb"] for p in per),
                     median(p["locked_resident_mb"] for p in per),
                     int(median(p["threads"] for p in per))])
    print(f"plant {args.plant}: medians of {args.runs} runs x {args.samples} samples (MB)")
    print_table(rows, ["role", "pss", "uss", "rss", "locked (VmLck)", "locked resident",
                       "threads"])
    print("scan wake-up latency over the whole run (us, stats histogram upper edges): "
          + ", ".join(f"{k.removeprefix('scan_')}={v:g}" for k, v in summary.items()
                      if k.startswith("scan_")))
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    write_json(args.json, {
        "schema_version": SCHEMA_VERSION,
        "bench": "processes",
        "plant": str(args.plant),
        "machine": machine_info(),
        "loadavg_before": list(load_before),
        "loadavg_after": list(load_after),
        "runs": runs,
        **summary,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
