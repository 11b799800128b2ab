"""``/healthz`` and ``/metrics`` for a running plant (aiohttp, loopback by default).

``/healthz`` answers JSON ``{"status": "ok"|"degraded"|"failed", "reasons": [...]}``
with HTTP 200 for ok and degraded and 503 for failed, so a load balancer or a
systemd/k8s probe can act on the code alone. Degraded always says why, one reason per
fault (:class:`PlantReasons`): a driver or sink that is not connected (its heartbeat's
connection state, by device name), a process restarted in the last minute (and why it
exited), a consumer that lost journal entries or dropped messages in the last minute.
``/metrics`` is the Prometheus text format, produced by ``prometheus_client`` from a
collector that reads the segment (scan statistics, heartbeats, journal, each driver's
connection state as ``petra_link_state``, signals by quality and substatus as
``petra_signals``) and the supervisor's own child table at scrape time; nothing is
sampled in between.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from petra.shm import Segment, read_heartbeats, read_stats
from petra.types import (
    DRIVER_PREFIX,
    SINK_PREFIX,
    ConnState,
    SinkCounter,
    Substatus,
    sink_role,
)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
RECENT_S = 60.0
"""How long a restart or a loss keeps /healthz degraded after it happened."""
CONNECTED_ROLES = (f"{DRIVER_PREFIX}:", sink_role("mqtt-out"))


def link_state(role: str, counters: tuple[int, ...]) -> ConnState | None:
    """The connection state of a driver or the MQTT sink (heartbeat counter 0)."""
    if not role.startswith(CONNECTED_ROLES) or not counters:
        return None
    try:
        return ConnState(counters[0])
    except ValueError:
        return None


class PlantReasons:
    """Why the plant is degraded, read from the segment and the child table.

    Remembers when each sink's DROPPED counter last grew, so a loss degrades health
    for :data:`RECENT_S` and not forever."""

    def __init__(self, segment: Segment, clock: Callable[[], float] = time.monotonic) -> None:
        self._seg = segment
        self._clock = clock
        self._dropped: dict[str, tuple[int, float]] = {}

    def __call__(self, children: list[dict[str, Any]]) -> list[str]:
        now = self._clock()
        reasons: list[str] = []
        running = {ch["role"] for ch in children if ch["state"] == "running"}
        for ch in children:
            up_s = ch.get("up_s")
            if ch["state"] == "running" and ch["restarts"] and up_s is not None \
                    and up_s < RECENT_S:
                reasons.append(f"{ch['role']} restarted {up_s:.0f} s ago "
                               f"(restarts: {ch['restarts']}, last exit: {ch['last_exit']})")
        for hb in read_heartbeats(self._seg):
            if hb.role not in running:
                continue  # a dead child is reported by the supervisor's own reasons
            state = link_state(hb.role, hb.counters)
            if state is not None and state is not ConnState.UP:
                kind = "device" if hb.role.startswith(f"{DRIVER_PREFIX}:") else "broker"
                reasons.append(f"{hb.role} not connected to its {kind} "
                               f"({state.name.lower()})")
            if hb.role.startswith(f"{SINK_PREFIX}:"):
                dropped = hb.counters[SinkCounter.DROPPED]
                seen, at = self._dropped.get(hb.role, (0, -RECENT_S))
                if dropped > seen:
                    at = now
                self._dropped[hb.role] = (dropped, at)
                if dropped and now - at < RECENT_S:
                    reasons.append(f"{hb.role} lost journal entries or messages "
                                   f"(dropped: {dropped})")
        return reasons


class PlantCollector(Collector):
    """Reads the live segment and the supervisor's view at each scrape."""

    def __init__(self, segment: Segment, children: Callable[[], list[dict[str, Any]]],
                 history: Callable[[], dict[str, Any] | None] | None = None,
                 alarms: Callable[[], dict[str, Any] | None] | None = None) -> None:
        self._seg = segment
        self._children = children
        self._history = history
        self._alarms = alarms

    def collect(self) -> Iterator[Any]:  # noqa: PLR0915  # one family after another
        st = read_stats(self._seg)
        period = CounterMetricFamily("petra_scan_cycles", "Scan cycles run")
        period.add_metric([], st.cycles)
        yield period
        c = CounterMetricFamily("petra_scan_overruns", "Cycles that ran past the next deadline")
        c.add_metric([], st.overruns)
        yield c
        c = CounterMetricFamily("petra_scan_skipped_periods", "Periods skipped after overruns")
        c.add_metric([], st.skipped)
        yield c
        g = GaugeMetricFamily("petra_scan_period_seconds", "Configured scan period")
        g.add_metric([], st.period_ns / 1e9)
        yield g
        g = GaugeMetricFamily("petra_scan_exec_seconds", "Scan execution time", labels=["stat"])
        g.add_metric(["last"], st.exec_last_ns / 1e9)
        g.add_metric(["avg"], st.exec_avg_ns / 1e9)
        g.add_metric(["max"], st.exec_max_ns / 1e9)
        yield g
        g = GaugeMetricFamily("petra_scan_wakeup_latency_seconds",
                              "Scan wake-up latency (histogram upper edge)", labels=["quantile"])
        # Labels written out: str(99.9 / 100) is "0.9990000000000001".
        for label, q in (("0.5", 50.0), ("0.9", 90.0), ("0.99", 99.0), ("0.999", 99.9)):
            g.add_metric([label], st.wake_percentile_us(q) / 1e6)
        g.add_metric(["max"], st.wake_max_ns / 1e9)
        yield g
        info = self._seg.info()
        c = CounterMetricFamily("petra_journal_entries", "Changes appended to the journal")
        c.add_metric([], info.journal_head)
        yield c
        c = CounterMetricFamily("petra_journal_producer_drops",
                                "Journal positions a producer could not fill")
        c.add_metric([], info.producer_drops)
        yield c
        up = GaugeMetricFamily("petra_process_up", "1 when the child runs", labels=["role"])
        restarts = CounterMetricFamily("petra_process_restarts", "Child restarts",
                                       labels=["role"])
        failed = GaugeMetricFamily("petra_process_failed",
                                   "1 when the child exhausted its restart budget",
                                   labels=["role"])
        for ch in self._children():
            up.add_metric([ch["role"]], 1.0 if ch["state"] in ("running", "starting") else 0.0)
            restarts.add_metric([ch["role"]], ch["restarts"])
            failed.add_metric([ch["role"]], 1.0 if ch["state"] == "failed" else 0.0)
        yield up
        yield restarts
        yield failed
        counters = GaugeMetricFamily("petra_process_counter",
                                     "Per-process counters from heartbeat records",
                                     labels=["role", "index"])
        age = GaugeMetricFamily("petra_process_heartbeat_age_seconds",
                                "Time since the process last beat", labels=["role"])
        for hb in read_heartbeats(self._seg):
            age.add_metric([hb.role], max(0, hb.age_ns()) / 1e9)
            for i, v in enumerate(hb.counters):
                if v:
                    counters.add_metric([hb.role, str(i)], float(v))
        yield counters
        yield age
        yield link_metric(self._seg)
        yield signal_quality_metric(self._seg)
        if self._history is not None:
            yield from history_metrics(self._history())
        if self._alarms is not None:
            yield from alarm_metrics(self._alarms())


def link_metric(seg: Segment) -> GaugeMetricFamily:
    """Each driver's (and the MQTT sink's) connection state, by name."""
    link = GaugeMetricFamily("petra_link_state", "Connection state of each driver and "
                             "of the MQTT sink (1 for the current state)",
                             labels=["role", "state"])
    for hb in read_heartbeats(seg):
        cur = link_state(hb.role, hb.counters)
        if cur is not None:
            for s in ConnState:
                link.add_metric([hb.role, s.name.lower()], 1.0 if s is cur else 0.0)
    return link


def signal_quality_metric(seg: Segment) -> GaugeMetricFamily:
    """How many signals have each quality and substatus (read from the slots)."""
    names = ("bad", "uncertain", "good")
    batch = seg.read_batch()
    counts: dict[tuple[str, str], int] = {}
    for i, q in enumerate(batch.quality.tolist()):
        sub = "none" if q == 2 else seg.read_index(i).substatus.name.lower()
        key = (names[q] if q < len(names) else "bad", sub)
        counts[key] = counts.get(key, 0) + 1
    g = GaugeMetricFamily("petra_signals", "Signals by quality and substatus",
                          labels=["quality", "substatus"])
    for s in Substatus:
        for qn in names:
            n = counts.get((qn, s.name.lower()), 0)
            if n or (qn == "good" and s.value == 0):
                g.add_metric([qn, s.name.lower()], float(n))
    return g


def history_metrics(status: dict[str, Any] | None) -> Iterator[Any]:
    """Per-destination gauges from the history sink's status file (petra/history)."""
    if not status:
        return
    labels = ["destination"]
    lag = GaugeMetricFamily("petra_history_lag_samples",
                            "Samples in the WAL a destination has not confirmed", labels=labels)
    backlog = GaugeMetricFamily("petra_history_backlog_bytes",
                                "WAL bytes a destination has not confirmed", labels=labels)
    last = GaugeMetricFamily("petra_history_last_success_timestamp_seconds",
                             "Unix time of a destination's last confirmed write", labels=labels)
    up = GaugeMetricFamily("petra_history_destination_up", "1 while a destination is up",
                           labels=labels)
    lost = GaugeMetricFamily("petra_history_destination_lost_samples",
                             "Samples a destination never got (WAL quota)", labels=labels)
    for name, d in status.get("destinations", {}).items():
        lag.add_metric([name], float(d.get("lag_samples", 0)))
        backlog.add_metric([name], float(d.get("backlog_bytes", 0)))
        last.add_metric([name], float(d.get("last_success", 0)))
        up.add_metric([name], 1.0 if d.get("state") == "up" else 0.0)
        lost.add_metric([name], float(d.get("lost_samples", 0)))
    yield from (lag, backlog, last, up, lost)
    wal = status.get("wal", {})
    g = GaugeMetricFamily("petra_history_wal_bytes", "Bytes held by the history WAL")
    g.add_metric([], float(wal.get("bytes", 0)))
    yield g
    g = GaugeMetricFamily("petra_history_alarms", "Active history alarms (bit mask)")
    g.add_metric([], float(status.get("alarm_mask", 0)))
    yield g


def alarm_metrics(status: dict[str, Any] | None) -> Iterator[Any]:
    """Alarm system figures from the alarm manager's status file (petra/alarms)."""
    if not status:
        return
    for key, name, text in (
            ("active", "petra_alarms_active", "Alarms annunciated and active"),
            ("unacked", "petra_alarms_unacknowledged", "Alarms waiting for an acknowledgement"),
            ("hidden", "petra_alarms_hidden",
             "Alarms shelved, suppressed by design or out of service"),
            ("standing", "petra_alarms_standing", "Alarms active longer than the standing "
                                                  "limit (24 h by default)"),
            ("per_10min", "petra_alarms_per_10min", "Alarms raised in the last 10 minutes"),
            ("pending_jobs", "petra_alarm_notifications_pending",
             "Notifications waiting to be sent")):
        g = GaugeMetricFamily(name, text)
        g.add_metric([], float(status.get(key) or 0))
        yield g
    g = GaugeMetricFamily("petra_alarms_flood", "1 while alarms per 10 minutes exceed the "
                                                "flood threshold")
    g.add_metric([], 1.0 if status.get("flood") else 0.0)
    yield g
    g = GaugeMetricFamily("petra_alarms_chattering", "Alarms chattering now (bad actors)")
    g.add_metric([], float(len(status.get("chattering") or [])))
    yield g
    mtta = status.get("mtta_s")
    if isinstance(mtta, int | float):
        g = GaugeMetricFamily("petra_alarms_mean_time_to_ack_seconds",
                              "Mean time to acknowledge over the last 24 h")
        g.add_metric([], float(mtta))
        yield g
    c = CounterMetricFamily("petra_alarm_notifications",
                            "Notification outcomes since the alarm manager started",
                            labels=["outcome"])
    for outcome, n in sorted((status.get("notifications") or {}).items()):
        c.add_metric([str(outcome)], float(n))
    yield c
    g = GaugeMetricFamily("petra_alarms_evaluation_seconds",
                          "Duration of the alarm evaluation pass", labels=["stat"])
    g.add_metric(["last"], float(status.get("pass_ms_last") or 0) / 1e3)
    g.add_metric(["max"], float(status.get("pass_ms_max") or 0) / 1e3)
    yield g


class HealthServer:
    def __init__(self, segment: Segment, health: Callable[[], dict[str, Any]],
                 children: Callable[[], list[dict[str, Any]]],
                 history: Callable[[], dict[str, Any] | None] | None = None,
                 alarms: Callable[[], dict[str, Any] | None] | None = None) -> None:
        self._health = health
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(PlantCollector(segment, children, history, alarms))
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self, host: str, port: int) -> int:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server  # aiohttp keeps the bound socket here
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _healthz(self, _: web.Request) -> web.Response:
        body = self._health()
        code = 503 if body["status"] == "failed" else 200
        return web.Response(text=json.dumps(body), status=code, content_type="application/json")

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self._registry),
                            headers={"Content-Type": CONTENT_TYPE})
