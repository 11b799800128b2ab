"""Segment creation and attach at scale (issue 18): time and memory per signal.

    python bench/segment_scale.py [--sizes 10000,100000,1000000] [--reps 3] [--json PATH]

For each size: ``Segment.create`` from a prepared list of ``SignalDef`` (the records are
built before the clock starts), then, in a fresh process each time, ``Segment.attach``
(read-only, as petra-top and the sinks do) with the process's PSS and private memory
read from ``/proc/self/smaps_rollup`` before and after, and the first lookup by name.
Medians of ``--reps`` runs, wall clock and the process's CPU time (on a shared box the
CPU time is the steadier figure); the machine's load average is recorded beside them,
since other work on the box moves every figure. PSS counts the segment pages the
process touched (shared, divided among the processes mapping them); private memory is
what the process holds alone. Works against any tree with the public
``petra.shm`` API (run it with another checkout on PYTHONPATH to compare).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, median, print_table, write_json

from petra.shm import Segment, SignalDef, SignalType

SCHEMA = 1
_TYPES = (SignalType.FLOAT, SignalType.INT, SignalType.BOOL)

_CHILD = r"""
import json, sys, time
from pathlib import Path
from petra.shm import Segment

def mem():
    out = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("Pss", "Private_Clean", "Private_Dirty"):
            out[key] = int(rest.split()[0]) * 1024
    return out["Pss"], out["Private_Clean"] + out["Private_Dirty"]

instance, probe = sys.argv[1], sys.argv[2]
pss0, priv0 = mem()
c0 = time.process_time()
t0 = time.perf_counter()
seg = Segment.attach(instance, readonly=True)
t1 = time.perf_counter()
cpu = time.process_time() - c0
pss1, priv1 = mem()
t1b = time.perf_counter()
index = seg.index(probe)
t2 = time.perf_counter() - t1b + t1
seg.read_index(index)
print(json.dumps({"attach_s": t1 - t0, "attach_cpu_s": cpu, "first_lookup_s": t2 - t1,
                  "pss": pss1 - pss0, "private": priv1 - priv0}))
"""


def signals(n: int) -> list[SignalDef]:
    """A plant-like table: dotted names, three types, a unit on the floats."""
    return [SignalDef(f"area{k // 1000}.unit{k % 1000}.pv", _TYPES[k % 3],
                      unit="m" if k % 3 == 0 else "", owner="scan")
            for k in range(n)]


def measure(n: int, reps: int) -> dict[str, Any]:
    defs = signals(n)
    probe = defs[n // 2].name
    create, create_cpu, attach, attach_cpu, lookup, pss, private = [], [], [], [], [], [], []
    for _ in range(reps):
        instance = f"bscale-{uuid.uuid4().hex[:8]}"
        c0 = time.process_time()
        t0 = time.perf_counter()
        seg = Segment.create(instance, defs)
        create.append(time.perf_counter() - t0)
        create_cpu.append(time.process_time() - c0)
        try:
            out = subprocess.run([sys.executable, "-c", _CHILD, instance, probe],
                                 capture_output=True, text=True, check=True, timeout=600)
            got = json.loads(out.stdout)
        finally:
            seg.close()
            seg.unlink()
        attach.append(got["attach_s"])
        attach_cpu.append(got["attach_cpu_s"])
        lookup.append(got["first_lookup_s"])
        pss.append(got["pss"] / n)
        private.append(got["private"] / n)
    return {"signals": n, "create_s": median(create), "create_cpu_s": median(create_cpu),
            "attach_ms": median(attach) * 1e3, "attach_cpu_ms": median(attach_cpu) * 1e3,
            "first_lookup_us": median(lookup) * 1e6, "attach_pss_b_per_signal": median(pss),
            "attach_private_b_per_signal": median(private),
            "reps": {"create_s": create, "attach_s": attach, "pss": pss, "private": private}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    load0 = os.getloadavg()
    rows = [measure(int(s), args.reps) for s in args.sizes.split(",")]
    load1 = os.getloadavg()
    print_table([[r["signals"], r["create_s"], r["create_cpu_s"], r["attach_ms"],
                  r["attach_cpu_ms"], r["first_lookup_us"], r["attach_pss_b_per_signal"],
                  r["attach_private_b_per_signal"]] for r in rows],
                ["signals", "create s", "(cpu s)", "attach ms", "(cpu ms)", "1st lookup us",
                 "PSS B/sig", "private B/sig"])
    print(f"load average before {load0[0]:.2f}, after {load1[0]:.2f} "
          f"({os.cpu_count()} CPUs)")
    if args.json:
        write_json(args.json, {"schema": SCHEMA, "machine": machine_info(),
                               "load_before": load0, "load_after": load1, "rows": rows})


if __name__ == "__main__":
    main()
