"""The history sink process: journal -> recorder -> WAL -> destinations.

One asyncio loop, every task in the :class:`~petra.io.ConnectedProcess` task group::

    pump        journal batch -> recorder -> WAL append (the "connection" is the WAL)
    fsync       every fsync_interval_s, on a worker thread
    dest:<name> per destination: WAL read -> buffer -> flush (Parquet file, ClickHouse
                insert) -> confirm -> release WAL segments every destination confirmed
    status      heartbeat counters, status.json, alarm and lost signals, once a second

Each destination has its own state machine and backoff (``petra.io.Backoff``): one
that is down stops nothing else; its backlog stays in the WAL, bounded by
``wal.quota_bytes``, and drains in order when it returns (at ``max_rows_per_s`` for
ClickHouse when set). Blocking work (fsync, Parquet encoding, inserts) runs on worker
threads, so the pump keeps reading the journal meanwhile.

Start-up: destinations recover first (each says what it has confirmed), then the WAL
opens (cuts a torn tail; never reuses a sequence number a destination confirmed). If
the newest WAL record came from this very segment, the journal is read on from the
position saved with it: nothing the previous process did not log is missed, nothing it
logged is logged twice. Otherwise (a new segment, a fresh log) the first record is a
snapshot of every recorded signal.

A full disk is an alarm, not a crash: samples are held in memory (``hold_samples``)
and appended when space returns; past that the journal is left unread (the ring keeps
what it can; anything it loses is counted, as for any overrun).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from petra.config._history import HistoryConfig
from petra.history._recorder import Recorder
from petra.history._samples import Samples, SignalTable
from petra.history._status import Alarm, load_epoch, write_status
from petra.history._wal import Wal, WalError, WalFullError, WalRead
from petra.io import Backoff, ConnectedProcess, IoLimits, describe, wait_or_stop
from petra.shm import JournalConsumer, Segment
from petra.types import (
    SINK_HISTORY,
    SINK_PREFIX,
    ConnState,
    HistoryCounter,
)

log = logging.getLogger("petra.history")

IDLE_POLL_S = 0.005
JOURNAL_BATCH = 65536
HOLD_RETRY_S = 0.5
ALARM_HOLD_S = 60.0  # a transient alarm (loss, quota drop) stays raised this long
STATUS_PERIOD_S = 1.0
DRAIN_ON_STOP_S = 5.0
DEST_IDLE_S = 0.02


class Destination(Protocol):
    """What the sink needs of a destination (Parquet, ClickHouse)."""

    name: str
    confirmed: int
    read_pos: int
    lost: int
    rows_written: int

    def open(self) -> int: ...
    def connect(self) -> None: ...
    def close(self) -> None: ...
    def reset(self) -> None: ...
    def want(self) -> int: ...
    def accept(self, batch: WalRead) -> None: ...
    def due(self, *, force: bool = False) -> bool: ...
    def flush(self) -> int: ...

    @property
    def buffered(self) -> int: ...


@dataclass
class DestState:
    """A destination and how it is doing."""

    dest: Destination
    backoff: Backoff
    max_rows_per_s: int | None = None
    state: ConnState = ConnState.DISCONNECTED
    errors: int = 0
    last_error: str = ""
    last_success_wall: float = 0.0
    down_since: float | None = None
    rate_due: float = 0.0
    failing: bool = False  # failed, and has not flushed since
    extra: dict[str, Any] = field(default_factory=dict)


class HistorySink(ConnectedProcess):
    """Records signals into the WAL and drives the destinations from it."""

    role_kind = SINK_PREFIX

    def __init__(self, cfg: HistoryConfig, segment: Segment, base_dir: Path, *,
                 destinations: Sequence[Destination] | None = None,
                 spans: Sequence[float | None] | None = None,
                 client_factory: Callable[[Any], Any] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall_ns: Callable[[], int] = time.time_ns) -> None:
        super().__init__(SINK_HISTORY, segment, IoLimits(), clock=clock, logger="petra.history")
        self.cfg = cfg
        self.dir = base_dir
        self.wall_ns = wall_ns
        info = segment.info()
        self.table = SignalTable(tuple(s.name for s in segment.signals),
                                 tuple(int(s.type) for s in segment.signals),
                                 segment.instance, info.created_ns)
        if spans is None:
            spans = [None if s.minimum is None or s.maximum is None else s.maximum - s.minimum
                     for s in segment.signals]
        self.recorder = Recorder(self.table, cfg.record, spans)
        w = cfg.wal
        self.wal = Wal(base_dir / "wal", segment_bytes=w.segment_bytes,
                       segment_max_age_s=w.segment_max_age_s, fsync=w.fsync,
                       quota_bytes=w.quota_bytes, clock=clock)
        if destinations is None:
            destinations = self._make_destinations(client_factory)
        self.dests = [DestState(d, Backoff(self.limits),
                                getattr(getattr(d, "cfg", None), "max_rows_per_s", None))
                      for d in destinations]
        self.consumer: JournalConsumer | None = None
        self.hold: list[tuple[Samples, int]] = []
        self.held = 0
        self._hold_retry = 0.0
        self._alarm_until: dict[Alarm, float] = {}
        self.alarms = Alarm(0)
        self._lost_seen = 0
        self._wal_open = asyncio.Event()
        self._input_done = asyncio.Event()
        self._signals_written: tuple[bool, int] | None = None
        self._alarm_idx = segment.index(cfg.alarm_signal) if cfg.alarm_signal else None
        self._lost_idx = segment.index(cfg.lost_signal) if cfg.lost_signal else None
        self._opened_once = False

    def _make_destinations(self, client_factory: Callable[[Any], Any] | None
                           ) -> list[Destination]:
        out: list[Destination] = []
        if self.cfg.parquet.enabled:
            from petra.history._parquet import ParquetDestination

            out.append(ParquetDestination(self.dir / self.cfg.parquet.dir, self.cfg.parquet,
                                          clock=self.clock, wall_ns=self.wall_ns))
        ch = self.cfg.clickhouse
        if ch is not None and ch.enabled:
            from petra.history._clickhouse import ClickHouseDestination, make_client

            out.append(ClickHouseDestination(
                ch, self.dir / "state", site=self.cfg.site or self.seg.instance,
                instance=self.seg.instance, epoch=load_epoch(self.dir),
                client_factory=client_factory or make_client, clock=self.clock))
        return out

    # ------------------------------------------------------------------ ConnectedProcess
    def _endpoint(self) -> str:
        return str(self.dir)

    def _background(self, stop: asyncio.Event) -> list[Coroutine[Any, Any, None]]:
        tasks = [self._status_loop(stop), self._fsync_loop(stop)]
        tasks.extend(self._drive(d, stop) for d in self.dests)
        return tasks

    async def _connect(self) -> None:
        await asyncio.to_thread(self._open)
        self._wal_open.set()

    def _open(self) -> None:
        if not self._opened_once:  # a reconnect keeps the destinations as they are
            for d in self.dests:
                d.dest.open()
            self._opened_once = True
        self.hold, self.held = [], 0  # re-read from the journal after the saved position
        rec = self.wal.open(max((d.dest.confirmed for d in self.dests), default=0))
        if rec.torn_bytes:
            self.tm.inc(HistoryCounter.ERRORS)
        self.consumer = JournalConsumer(self.seg, batch=JOURNAL_BATCH)
        now = self.wall_ns()
        snap = self.seg.read_batch()
        last = rec.last_table
        if last is not None and last.segment_created_ns == (
                self.table.segment_created_ns) and last.same_signals(self.table):
            self.consumer.seek(min(rec.last_jpos, self.seg.info().journal_head))
            self.recorder.seed(snap.values, snap.quality, snap.source_ts_ns, now)
            log.info("event=history_resume next_seq=%d journal_position=%d torn_bytes=%d",
                     rec.next_seq, rec.last_jpos, rec.torn_bytes)
        elif self._journal_complete():
            # A segment this log has not seen, whose journal still holds every write
            # since its creation: record all of them, then the initial value of every
            # slot nobody wrote (initial values do not go through the journal).
            self.consumer = JournalConsumer(self.seg, from_start=True, batch=JOURNAL_BATCH)
            seen = np.zeros(len(self.table.names), np.bool_)
            while True:
                batch = self.consumer.read()
                if not len(batch):
                    break
                seen[batch.slot] = True
                self._append(self.recorder.offer(batch.slot, batch.value, batch.quality,
                                                 batch.substatus,
                                                 batch.source_ts_ns, batch.write_ts_ns, now),
                             self.consumer.position)
            snap = self.seg.read_batch()
            first = self.recorder.snapshot(snap.values, snap.quality, snap.source_ts_ns, now,
                                           only=~seen)
            self._append(first, self.consumer.position)
            log.info("event=history_start next_seq=%d from=segment_creation journal=%d "
                     "initial=%d", rec.next_seq, self.consumer.position, len(first))
        else:
            first = self.recorder.snapshot(snap.values, snap.quality, snap.source_ts_ns, now)
            self._append(first, self.consumer.position)
            log.info("event=history_start next_seq=%d snapshot=%d segments=%d",
                     rec.next_seq, len(first), rec.segments)

    def _journal_complete(self) -> bool:
        """Whether the journal still holds every write since the segment was created."""
        info = self.seg.info()
        return info.journal_head <= info.journal_capacity

    async def _close(self) -> None:
        self.wal.close()

    async def _session(self, stop: asyncio.Event) -> None:
        """The pump: read the journal, record, append; until stop."""
        try:
            while not stop.is_set():
                busy = self._pump_once()
                if self.cfg.wal.fsync == "batch" and self.wal.next_seq > self.wal.synced_seq:
                    await asyncio.to_thread(self.wal.sync)
                if busy:
                    await asyncio.sleep(0)
                else:
                    await wait_or_stop(stop, IDLE_POLL_S)
            # what was written before the stop request still goes into the log
            for _ in range(64):
                if not self._pump_once():
                    break
            await asyncio.to_thread(self.wal.sync)
        finally:
            self._input_done.set()

    # ------------------------------------------------------------------ pump
    def _pump_once(self) -> bool:
        assert self.consumer is not None
        now = self.wall_ns()
        busy = False
        if self.hold and self.clock() >= self._hold_retry:
            self._retry_hold()
        if self.held < self.cfg.wal.hold_samples:
            batch = self.consumer.read()
            self.tm.set(HistoryCounter.JOURNAL_POSITION, self.consumer.position)
            if self.consumer.lost != self._lost_seen:
                missed = self.consumer.lost - self._lost_seen
                self._lost_seen = self.consumer.lost
                self.tm.inc(HistoryCounter.DROPPED, missed)
                self._raise(Alarm.JOURNAL_LOST)
                self.rlog(logging.WARNING, "journal_lost",
                          "event=journal_lost missed=%d total=%d", missed, self._lost_seen)
                snap = self.consumer.resync()
                self._append(self.recorder.snapshot(snap.values, snap.quality,
                                                    snap.source_ts_ns, now),
                             self.consumer.position)
                return True
            if len(batch):
                busy = True
                out = self.recorder.offer(batch.slot, batch.value, batch.quality,
                                          batch.substatus,
                                          batch.source_ts_ns, batch.write_ts_ns, now)
                self._append(out, self.consumer.position)
        else:
            self._raise(Alarm.HOLD_FULL)
        due = self.recorder.next_due_ns()
        if due is not None and due <= now:
            assert self.consumer is not None
            self._append(self.recorder.tick(now), self.consumer.position)
        if self.wal.over_quota():
            self._enforce_quota()
        return busy

    def _append(self, samples: Samples, jpos: int) -> None:
        if not len(samples):
            return
        if self.hold:  # keep order: behind what is already held
            self._hold(samples, jpos)
            return
        try:
            self.wal.append(samples, self.table, jpos)
        except WalFullError:
            self._hold(samples, jpos)
            self._raise(Alarm.DISK_FULL, sticky=True)
            self.tm.inc(HistoryCounter.ERRORS)
            self.rlog(logging.ERROR, "disk_full",
                      "event=wal_disk_full held_samples=%d dir=%s", self.held, self.wal.dir)
            return
        self.tm.inc(HistoryCounter.RECORDED, len(samples))

    def _hold(self, samples: Samples, jpos: int) -> None:
        self.hold.append((samples.copy(), jpos))
        self.held += len(samples)
        self._hold_retry = self.clock() + HOLD_RETRY_S

    def _retry_hold(self) -> None:
        self._release_confirmed()
        pending, self.hold = self.hold, []
        self.held = 0
        for k, (samples, jpos) in enumerate(pending):
            try:
                self.wal.append(samples, self.table, jpos)
            except WalFullError:
                self.hold = pending[k:]
                self.held = sum(len(s) for s, _ in self.hold)
                self._hold_retry = self.clock() + HOLD_RETRY_S
                return
            self.tm.inc(HistoryCounter.RECORDED, len(samples))
        self._clear(Alarm.DISK_FULL)
        self._clear(Alarm.HOLD_FULL)
        log.warning("event=wal_disk_space_back appended=%d", sum(len(s) for s, _ in pending))

    def _enforce_quota(self) -> None:
        while self.wal.over_quota():
            dropped = self.wal.drop_oldest()
            if dropped is None:
                break
            self._raise(Alarm.QUOTA)

    # ------------------------------------------------------------------ alarms
    def _raise(self, alarm: Alarm, *, sticky: bool = False) -> None:
        self._alarm_until[alarm] = float("inf") if sticky else self.clock() + ALARM_HOLD_S
        if not self.alarms & alarm:
            self.alarms |= alarm
            log.error("event=history_alarm_raised alarm=%s", alarm.name)

    def _clear(self, alarm: Alarm) -> None:
        self._alarm_until.pop(alarm, None)
        if self.alarms & alarm:
            self.alarms &= ~alarm
            log.warning("event=history_alarm_cleared alarm=%s", alarm.name)

    def _expire_alarms(self) -> None:
        now = self.clock()
        for alarm, until in list(self._alarm_until.items()):
            if now >= until:
                self._clear(alarm)
        if any(d.failing for d in self.dests):
            self._raise(Alarm.DESTINATION_DOWN, sticky=True)
        else:
            self._clear(Alarm.DESTINATION_DOWN)

    # ------------------------------------------------------------------ fsync
    async def _fsync_loop(self, stop: asyncio.Event) -> None:
        if self.cfg.wal.fsync != "interval":
            await stop.wait()
            return
        period = self.cfg.wal.fsync_interval_s
        while not await wait_or_stop(stop, period):
            if self._wal_open.is_set() and self.wal.next_seq > self.wal.synced_seq:
                try:
                    await asyncio.to_thread(self.wal.sync)
                except OSError as exc:
                    self.tm.inc(HistoryCounter.ERRORS)
                    self.rlog(logging.ERROR, "fsync", "event=wal_fsync_failed error=%s",
                              exc.strerror)

    # ------------------------------------------------------------------ destinations
    async def _drive(self, d: DestState, stop: asyncio.Event) -> None:
        """One destination's loop: connect, read, flush, confirm; back off on errors."""
        while not stop.is_set():
            if not self._wal_open.is_set():
                await _first(self._wal_open, stop)
                continue
            try:
                if d.state != ConnState.UP:
                    self._dest_state(d, ConnState.CONNECTING)
                    await asyncio.wait_for(asyncio.to_thread(d.dest.connect),
                                           self.limits.connect_timeout_s * 10)
                    d.backoff.reset()
                    self._dest_state(d, ConnState.UP)
                read, flushed = await asyncio.to_thread(self._step, d, False)
                if d.max_rows_per_s and flushed:
                    d.rate_due = max(d.rate_due, self.clock()) + flushed / d.max_rows_per_s
                    await wait_or_stop(stop, d.rate_due - self.clock())
                elif not (read or flushed):
                    await wait_or_stop(stop, DEST_IDLE_S)
            except Exception as exc:
                await self._dest_failed(d, exc, stop)
        await self._drain(d)

    def _step(self, d: DestState, force: bool) -> tuple[int, int]:
        """Read what the destination wants from the WAL and flush when due; returns
        (samples read, samples flushed). Runs on a worker thread."""
        dest = d.dest
        want = dest.want()
        read = 0
        if want > 0:
            got = self.wal.read(dest.read_pos, want)
            if got is not None:
                dest.accept(got)
                read = len(got.samples)
        flushed = 0
        if dest.due(force=force):
            before = dest.confirmed
            dest.flush()
            flushed = max(1, dest.confirmed - before)
            d.last_success_wall = time.time()
            d.failing = False
            self._release_confirmed()
            maintain = getattr(dest, "maintain", None)
            if maintain is not None:
                maintain()
        return read, flushed

    async def _drain(self, d: DestState) -> None:
        """On stop: take what the pump logged last and flush it, within a time limit."""
        if d.state != ConnState.UP:
            return
        await self._input_done.wait()
        deadline = self.clock() + DRAIN_ON_STOP_S
        try:
            while self.clock() < deadline:
                await asyncio.to_thread(self._step, d, True)
                if d.dest.read_pos >= self.wal.synced_seq and d.dest.buffered == 0:
                    break
        except Exception as exc:
            log.warning("event=history_drain_failed destination=%s error=%s", d.dest.name,
                        describe(exc))
        finally:
            with contextlib.suppress(Exception):
                d.dest.close()
        self._dest_state(d, ConnState.DISCONNECTED)

    async def _dest_failed(self, d: DestState, exc: BaseException, stop: asyncio.Event) -> None:
        d.errors += 1
        d.failing = True
        d.last_error = describe(exc)
        self.tm.inc(HistoryCounter.ERRORS)
        self.rlog(logging.WARNING, f"dest:{d.dest.name}",
                  "event=destination_failed destination=%s error=%s backlog_samples=%d",
                  d.dest.name, d.last_error, self.wal.next_seq - d.dest.confirmed)
        self._dest_state(d, ConnState.BACKOFF)
        with contextlib.suppress(Exception):
            d.dest.close()
        try:
            await asyncio.to_thread(d.dest.open)  # recover: back to the confirmed position
        except Exception as again:
            log.error("event=destination_recover_failed destination=%s error=%s",
                      d.dest.name, describe(again))
        await wait_or_stop(stop, d.backoff.next_delay())

    def _dest_state(self, d: DestState, state: ConnState) -> None:
        if state == d.state:
            return
        log.info("event=destination_state destination=%s from=%s to=%s", d.dest.name,
                 d.state.name, state.name)
        d.state = state
        if state == ConnState.UP:
            d.down_since = None
        elif d.down_since is None:
            d.down_since = self.clock()

    def _release_confirmed(self) -> None:
        low = min(d.dest.confirmed for d in self.dests) if self.dests else self.wal.synced_seq
        self.wal.release(low)

    # ------------------------------------------------------------------ status
    async def _status_loop(self, stop: asyncio.Event) -> None:
        while True:
            if self._wal_open.is_set():
                self._expire_alarms()
                self._publish_status()
            if await wait_or_stop(stop, STATUS_PERIOD_S):
                break
        with contextlib.suppress(Exception):
            self._publish_status()

    def status(self) -> dict[str, Any]:
        wal = self.wal
        nxt = wal.next_seq
        dests = {}
        for d in self.dests:
            dest = d.dest
            dests[dest.name] = {
                "state": d.state.name.lower(), "confirmed": dest.confirmed,
                "lag_samples": max(0, nxt - dest.confirmed),
                "backlog_bytes": wal.bytes_after(dest.confirmed),
                "last_success": d.last_success_wall, "errors": d.errors,
                "last_error": d.last_error, "lost_samples": dest.lost,
                "rows_written": dest.rows_written}
        return {"time": time.time(), "pid": os.getpid(), "instance": self.seg.instance,
                "alarms": self.alarms.names(), "alarm_mask": int(self.alarms),
                "recorded": self.tm[HistoryCounter.RECORDED],
                "dropped": self.tm[HistoryCounter.DROPPED], "held": self.held,
                "wal": {"next_seq": nxt, "synced_seq": wal.synced_seq,
                        "first_seq": wal.first_seq, "bytes": wal.total_bytes,
                        "quota_bytes": wal.quota_bytes},
                "destinations": dests}

    def _publish_status(self) -> None:
        doc = self.status()
        lag = max((v["lag_samples"] for v in doc["destinations"].values()), default=0)
        self.tm.set(HistoryCounter.BACKLOG, lag)
        self.tm.set(HistoryCounter.ALARMS, int(self.alarms))
        lost = self.tm[HistoryCounter.DROPPED] + sum(d.dest.lost for d in self.dests)
        want = (bool(self.alarms), lost)
        if want != self._signals_written:
            try:
                if self._alarm_idx is not None:
                    self.seg.write_index(self._alarm_idx, want[0])
                if self._lost_idx is not None:
                    self.seg.write_index(self._lost_idx, min(lost, 2**63 - 1))
                self._signals_written = want
            except Exception as exc:
                self.rlog(logging.WARNING, "alarm_signal",
                          "event=alarm_signal_write_failed error=%s", describe(exc))
        try:
            write_status(self.dir, doc)
        except OSError as exc:  # a full disk must not stop the status loop
            self.rlog(logging.WARNING, "status", "event=status_write_failed error=%s",
                      exc.strerror)

    # ------------------------------------------------------------------ errors
    def _on_down(self) -> None:
        self._wal_open.clear()


async def _first(event: asyncio.Event, stop: asyncio.Event) -> None:
    """Wait until ``event`` or ``stop`` is set."""
    tasks = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(stop.wait())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()


__all__ = ["DestState", "Destination", "HistorySink", "WalError"]
