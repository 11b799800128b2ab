"""The kill campaign: writers of every kind SIGKILLed (and SIGSTOPped) at random moments,
the supervisor-side repair after each death, and the checks that nothing was lost or
poisoned. Used by ``test_shm_kill_campaign.py`` and by ``bench/segment.py``.

Processes:

- four *supervisors* (fresh interpreters; four, because a kill cycle is mostly waiting
  for the victim to run, to die, to be reaped) fork victims one after another, let each
  run a random 0.1-2 ms, sometimes SIGSTOP it for a few ms and SIGCONT it, then SIGKILL
  it, reap it and call ``Segment.repair_dead(pid)``: what ``petra run``'s supervisor
  does for every child;
- victims of every kind: single writes, batch writes and bare journal appends (tight C
  loops, ``petra_debug_hammer``, so a kill lands inside a write section most of the
  time), scan statistics, heartbeat claims and Python single writes;
- an *honest writer* that is never killed and must never fail except on a dead or
  stopped holder (``LockStats.busy_live`` stays 0);
- a *checker* that reads slots (single and batch) and consumes the journal: no torn
  sample, no entry with a bad checksum or out of its writer's order, received + lost
  == positions passed, and how long it ever waited at one position.

After the campaign the segment itself is checked: every slot free and readable, a
full lap of the ring written without a single producer drop (no entry left held), the
stats block writable, every heartbeat record claimable.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import random
import select
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from shm_checks import KillJournalCheck, checksum_np, kc_quality, kc_quality_np

from petra._core import lib
from petra.errors import SegmentFullError, SignalBusyError
from petra.shm import (
    HeartbeatHandle,
    JournalConsumer,
    Segment,
    SignalDef,
    SignalType,
    StatsWriter,
    read_heartbeats,
    read_stats,
    unlink_instance,
)

CTX = mp.get_context("fork")
# Supervisors start as fresh interpreters: every victim is forked from one, and a fork
# copies the page tables of its parent (a test runner that imported the whole suite
# forks several times slower than a process that imported only this module).
SPAWN = mp.get_context("spawn")
N_SLOTS = 48
CAPACITY = 4096
HEARTBEATS = 8
TYPES = [SignalType.INT if k % 2 else SignalType.FLOAT for k in range(N_SLOTS)]
KINDS = ("single", "batch", "journal", "stats", "heartbeat", "python")
HAMMER_MODE = {"single": 0, "batch": 1, "journal": 2}
STALL_TIMEOUT_S = 0.05
HONEST_WID = 1
CHECK_WID = 2
WID_SPACE = 8000  # victim writer ids 100..8099 (value bits: 13 of id, 40 of counter)
SUPERVISORS = 4


@dataclass
class CampaignResult:
    """Everything the campaign measured; ``problems`` lists what must be empty."""

    seconds: float = 0.0
    kills: Counter[str] = field(default_factory=Counter)
    stops: int = 0
    repaired: Counter[str] = field(default_factory=Counter)
    honest_writes: int = 0
    honest_failures: Counter[str] = field(default_factory=Counter)
    torn: int = 0
    samples: int = 0
    journal_seen: int = 0
    journal_repairs: int = 0
    journal_bad: int = 0
    journal_disorder: int = 0
    received: int = 0
    lost: int = 0
    positions: int = 0
    max_stall_s: float = 0.0
    unusable_after_repair: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def total_kills(self) -> int:
        return sum(self.kills.values())


def _values(wid: int, counter: int, ks: list[int]) -> tuple[np.ndarray[Any, Any], ...]:
    raws = [(wid << 40) | (counter + i + 1) for i in range(len(ks))]
    bits = np.array([int(np.float64(r).view(np.uint64)) if TYPES[k] is SignalType.FLOAT else r
                     for r, k in zip(raws, ks, strict=True)], np.uint64)
    ts = checksum_np(bits, np.array(ks))
    return bits, kc_quality_np(ts).astype(np.uint8), ts


# ------------------------------------------------------------------ victims (forked)
def _victim(seg: Segment, kind: str, wid: int, counter0: int,
            ready: int) -> None:  # pragma: no cover
    """Runs until SIGKILLed. Any other way out is a failure the supervisor reports.
    Writes one byte to ``ready`` as it enters its loop, so the kill lands in the loop."""
    h = seg.handle
    if kind in HAMMER_MODE:
        os.write(ready, b"r")
        while True:
            lib.petra_debug_hammer(h, wid, counter0, 1 << 40, HAMMER_MODE[kind])
    rng = random.Random(wid)
    if kind == "stats":
        while True:  # another stats victim may be stopped inside the block: retry
            try:
                StatsWriter(seg, 10_000_000)
                break
            except SignalBusyError:
                time.sleep(0.001)
        record = lib.petra_stats_record  # bound: most of each turn is spent in C
        os.write(ready, b"r")
        while True:
            record(h, 5_000, 1_000, 0, 0)
            record(h, 7_000_000, 2_000, 1, 1)
    os.write(ready, b"r")
    if kind == "heartbeat":
        while True:
            hb = HeartbeatHandle(seg, "victim", os.getpid())
            hb.beat()
            hb.release()
    counter = counter0
    while True:  # python single writes
        k = rng.randrange(N_SLOTS)
        bits, q, ts = _values(wid, counter, [k])
        counter += 1
        value = float(np.uint64(bits[0]).view(np.float64)) if TYPES[k] is SignalType.FLOAT \
            else int(bits[0])
        # A dead or stopped holder may refuse it: the campaign's honest writer checks why.
        with contextlib.suppress(SignalBusyError):
            seg.write_index(k, value, int(q[0]), int(ts[0]))


@dataclass(frozen=True)
class _Plan:
    seconds: float  # kill at least this long...
    min_kills: int  # ...and at least this many times (per supervisor)...
    max_seconds: float  # ...but stop here whatever the count


def _one_victim(seg: Segment, kind: str, wid: int, counter0: int,
                rng: random.Random) -> tuple[int, int, int]:
    """Fork one victim, let it run, maybe stop and continue it, kill it, reap it.
    Returns its pid, its wait status and whether it was stopped."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the victim
        try:
            os.close(r)
            _victim(seg, kind, wid, counter0, w)
        finally:
            os._exit(3)
    os.close(w)
    select.select([r], [], [], 2.0)  # until it runs its loop (a bound, not a wait)
    os.close(r)
    time.sleep(rng.uniform(0.0001, 0.002))
    stopped = rng.random() < 0.1
    if stopped:
        os.kill(pid, signal.SIGSTOP)
        time.sleep(rng.uniform(0.001, 0.01))
        os.kill(pid, signal.SIGCONT)
        time.sleep(rng.uniform(0.0, 0.001))
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    return pid, status, int(stopped)


def _supervisor(instance: str, zid: int, plan: _Plan, start: Any, out: Any) -> None:
    seg = Segment.attach(instance)
    rng = random.Random(1000 + zid)
    kills: Counter[str] = Counter()
    repaired: Counter[str] = Counter()
    problems: list[str] = []
    stops = 0
    serial = zid
    count = 0
    start.wait()
    t0 = time.monotonic()
    while True:
        elapsed = time.monotonic() - t0
        if elapsed >= plan.max_seconds or (elapsed >= plan.seconds
                                           and sum(kills.values()) >= plan.min_kills):
            break
        kind = KINDS[(zid + count) % len(KINDS)]  # supervisors run different kinds at once
        count += 1
        wid = 100 + serial % WID_SPACE
        counter0 = (serial // WID_SPACE) << 32
        serial += SUPERVISORS
        pid, status, stopped = _one_victim(seg, kind, wid, counter0, rng)
        stops += stopped
        if not (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL):
            problems.append(f"{kind} victim {pid} ended with status {status}, not SIGKILL")
        rep = seg.repair_dead(pid)  # the supervisor's side, as petra run does on reap
        kills[kind] += 1
        repaired["slots"] += rep.slots
        repaired["slots_torn"] += rep.slots_torn
        repaired["entries"] += rep.entries
        repaired["stats"] += rep.stats
        repaired["heartbeats"] += rep.heartbeats
        repaired[f"kills_{kind}_inside"] += int(rep.total > 0)
    out.put(("supervisor", zid, dict(kills), dict(repaired), stops, problems))
    seg.close()


def _honest(instance: str, stop: Any, start: Any, out: Any) -> None:
    """Never killed: its writes may fail only on a dead or stopped holder."""
    seg = Segment.attach(instance)
    h = seg.handle
    rng = random.Random(HONEST_WID)
    hb = HeartbeatHandle(seg, "honest", os.getpid())
    counter = 0
    writes = attempts = 0
    start.wait()
    while not stop.is_set():
        attempts += 256
        writes += int(lib.petra_debug_hammer(h, HONEST_WID, counter, 256, 0))
        counter += 256
        ks = rng.sample(range(N_SLOTS), 8)
        bits, q, ts = _values(HONEST_WID, counter, ks)
        counter += 8
        w = seg.write_batch(np.array(ks, np.uint32), bits, q, source_ts_ns=ts)
        attempts += 8
        writes += int(w)
        hb.beat()
    hb.release()
    st = seg.lock_stats()
    failures = {"dead": st.busy_dead, "stopped": st.busy_stopped, "live": st.busy_live,
                "nowait": st.busy_nowait, "unexplained": attempts - writes
                - st.busy_dead - st.busy_stopped - st.busy_live - st.busy_nowait}
    out.put(("honest", writes, failures))
    seg.close()


def _checker(instance: str, stop: Any, start: Any, head_after: Any, out: Any) -> None:
    seg = Segment.attach(instance, readonly=True)
    cons = JournalConsumer(seg, batch=4096, stall_timeout_s=STALL_TIMEOUT_S)
    first = cons.position
    check = KillJournalCheck()
    rng = random.Random(CHECK_WID)
    slot_no = np.arange(N_SLOTS)
    torn = samples = 0
    max_stall = 0.0
    last_pos, since = cons.position, time.monotonic()

    def consume() -> None:
        nonlocal last_pos, since, max_stall
        b = cons.read()
        check.feed(b)
        now = time.monotonic()
        if cons.position != last_pos:
            last_pos, since = cons.position, now
        elif cons.count_pending() > 0:
            max_stall = max(max_stall, now - since)
        else:
            since = now

    start.wait()
    while not stop.is_set():
        r = seg.read_batch()
        ok = (checksum_np(r.values, slot_no) == r.source_ts_ns) & (
            kc_quality_np(r.source_ts_ns) == r.quality)
        readable = np.ones(N_SLOTS, bool)
        readable[r.busy_indices] = False
        repaired = r.quality == 0
        torn += int((readable & ~ok & ~repaired).sum())
        samples += int(readable.sum())
        for k in rng.sample(range(N_SLOTS), 4):
            try:
                s = seg.read_index(k)
            except SignalBusyError:
                continue
            samples += 1
            bits = int(np.float64(s.value).view(np.uint64)) if TYPES[k] is SignalType.FLOAT \
                else int(s.value) & ((1 << 64) - 1)
            if int(s.quality) == 0:
                torn += int(s.substatus.name not in ("WRITER_DIED", "INITIAL"))
            elif s.source_ts_ns != int(checksum_np(np.array([bits], np.uint64),
                                                   np.array([k]))[0]) \
                    or int(s.quality) != kc_quality(s.source_ts_ns):
                torn += 1
        consume()
    final_head = head_after.get()
    deadline = time.monotonic() + 30
    while cons.position < final_head and time.monotonic() < deadline:
        consume()
        time.sleep(0.001)
    out.put(("checker", torn, samples, check.seen, check.repairs, check.bad_checksum,
             check.out_of_order, cons.received, cons.lost, cons.position - first, max_stall,
             final_head - first))
    seg.close()


# ------------------------------------------------------------------ after the campaign
def _check_segment_usable(seg: Segment) -> list[str]:
    """Every object usable again: no slot, ring entry, stats block or heartbeat record
    left held by a dead writer."""
    problems = []
    held = [k for k in range(N_SLOTS) if seg.slot_holder(k)]
    if held:
        problems.append(f"slots still held after repair: {held}")
    if seg.read_batch().busy:
        problems.append("slots still busy after repair")
    drops = seg.info().producer_drops
    done = int(lib.petra_debug_hammer(seg.handle, CHECK_WID, 1 << 35, CAPACITY, 2))
    if done != CAPACITY or seg.info().producer_drops != drops:
        problems.append(f"a full lap of the ring dropped {seg.info().producer_drops - drops} "
                        "entries: some ring entry is still held")
    try:
        w = StatsWriter(seg, 1_000_000)
        w.record(1_000, 1_000)
        if read_stats(seg).cycles != 1:
            problems.append("stats block did not take an update after repair")
    except SignalBusyError:
        problems.append("stats block still held after repair")
    if read_heartbeats(seg):
        problems.append(f"heartbeat records still claimed: {read_heartbeats(seg)}")
    handles = []
    try:
        for _ in range(HEARTBEATS):
            handles.append(HeartbeatHandle(seg, "final", os.getpid()))
    except SegmentFullError:
        problems.append(f"only {len(handles)} of {HEARTBEATS} heartbeat records claimable")
    for hb in handles:
        hb.release()
    return problems


def run_campaign(instance: str, *, seconds: float, min_kills: int,
                 max_seconds: float = 75.0) -> CampaignResult:
    """Run the whole campaign on a fresh segment called ``instance``; returns what it
    measured. The segment is removed afterwards."""
    seg = Segment.create(instance, [SignalDef(f"s{k}", t) for k, t in enumerate(TYPES)],
                         journal_capacity=CAPACITY, heartbeats=HEARTBEATS)
    res = CampaignResult()
    try:
        done = int(lib.petra_debug_hammer(seg.handle, CHECK_WID, 0, 4 * N_SLOTS, 0))
        assert done == 4 * N_SLOTS  # every slot starts with a checksummed value
        head0 = seg.info().journal_head
        start = SPAWN.Barrier(SUPERVISORS + 2)
        stop = SPAWN.Event()
        out: Any = SPAWN.Queue()
        head_after: Any = SPAWN.Queue()
        plan = _Plan(seconds, -(-min_kills // SUPERVISORS), max_seconds)
        sups = [SPAWN.Process(target=_supervisor, args=(instance, z, plan, start, out))
                for z in range(SUPERVISORS)]
        others = [CTX.Process(target=_honest, args=(instance, stop, start, out)),
                  CTX.Process(target=_checker, args=(instance, stop, start, head_after, out))]
        t0 = time.monotonic()
        for p in sups + others:
            p.start()
        results = [out.get(timeout=max_seconds + 120) for _ in sups]
        res.seconds = time.monotonic() - t0
        stop.set()
        results.append(out.get(timeout=120))  # the honest writer (the checker waits)
        assert results[-1][0] == "honest"
        head_after.put(seg.info().journal_head)  # no writer left: the final head
        results.append(out.get(timeout=120))
        for p in sups + others:
            p.join(timeout=60)
            if p.exitcode != 0:
                res.problems.append(f"{p.name} exited with {p.exitcode}")
        for r in results:
            if r[0] == "supervisor":
                _, _, kills, repaired, stops, problems = r
                res.kills.update(kills)
                res.repaired.update(repaired)
                res.stops += stops
                res.problems += problems
            elif r[0] == "honest":
                res.honest_writes = r[1]
                res.honest_failures.update(r[2])
            else:
                (_, res.torn, res.samples, res.journal_seen, res.journal_repairs,
                 res.journal_bad, res.journal_disorder, res.received, res.lost, passed,
                 res.max_stall_s, res.positions) = r
                if res.received + res.lost != passed or passed != res.positions:
                    res.problems.append(
                        f"journal accounting: received {res.received} + lost {res.lost} != "
                        f"passed {passed} (positions {res.positions})")
        if res.positions and seg.info().journal_head - head0 < res.positions:
            res.problems.append("journal head moved backwards")
        unusable = _check_segment_usable(seg)
        res.unusable_after_repair = len(unusable)
        res.problems += unusable
    finally:
        unlink_instance(instance)
        seg.close()
    return res
