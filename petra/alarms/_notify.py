"""Who is told about an alarm, when, and how often: escalation, schedules, limits.

Pure logic on the wall clock (ns since the epoch, passed in). The process feeds it the
engine's events, asks it each pass for the jobs due (:meth:`Notifier.take_ready`),
sends them on worker threads and reports back (:meth:`Notifier.done`). Every change is
also a line for the event log (:meth:`Notifier.drain`) carrying the new state of the
escalation or job, so a restarted process continues exactly where it stopped.

Escalation
----------
When an alarm is raised (a new occurrence enters UNACK) and a policy matches its
priority and area, an escalation starts. Level ``L`` of round ``r`` is due at
``raised + r * (last.after_s - first.after_s + repeat_s) + levels[L].after_s``: the
first level is notified again ``repeat_s`` after the last one was. At its time every
on-call contact of the level gets a job (one SMS or call). A level with nobody on call
passes straight to the next. After the last level, ``repeat_s`` starts a new round
(until ``max_rounds``); without it the escalation ends. Acknowledging, shelving,
suppressing or taking the alarm out of service stops it and cancels jobs not yet sent;
a return to normal stops it only with ``stop_on_return``.

Limits, in the order they apply to a job that is due
----------------------------------------------------
- de-duplication: a new occurrence of an alarm is not sent to a contact who was sent
  an earlier occurrence of it within ``dedup_window_s`` (a flapping alarm texts once);
  the same job (alarm, occurrence, round, level, contact) is never made twice;
- quiet hours: priorities listed in ``quiet_hours`` wait until the quiet hours end
  (in the contact's time zone), then go if the alarm is still unacknowledged;
- rate limits: per contact and in all, per sliding window; a job over the limit waits
  for the first free slot;
- retries: a send that fails with a network error, HTTP 429 or 5xx is retried after
  ``initial_s * 2**(n-1)`` (capped at ``max_s``), up to ``attempts`` tries; a 4xx other
  than 429 (a wrong number, say) cannot succeed by retrying and fails at once. Either
  way a failure is counted and logged, and escalation goes on.

At least once
-------------
A job is logged as *sending* (durably) before its request goes out and as sent after
the answer. A process killed in between sends it again after its restart: that is the
documented duplicate window, at most one extra message per job and crash.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from petra.alarms._engine import render
from petra.alarms._model import Event
from petra.alarms._schedule import on_call, quiet_until
from petra.config._alarms import ContactConfig, NotificationsConfig, PolicyConfig, ack_code

NS = 1_000_000_000
STOP_STATES = frozenset({"acked", "normal", "shelved", "suppressed", "out_of_service",
                         "latched"})
RAISE_FROM = frozenset({"normal", "rtn_unack", "latched"})
COUNTERS = ("queued", "sent", "failed", "retried", "deduplicated", "rate_limited",
            "quiet_deferred", "off_call", "cancelled", "escalations")


@dataclass(slots=True)
class Escalation:
    """One alarm occurrence being escalated."""

    alarm: str
    occurrence: int
    policy: str
    started_ns: int
    due_ns: int
    round: int = 0
    level: int = 0  # the next level to notify
    priority: str = ""
    area: str = ""
    equipment: str = ""
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class Job:
    """One message to one contact."""

    id: str
    alarm: str
    occurrence: int
    contact: str
    channel: str
    to: str
    text: str
    priority: str
    due_ns: int
    level: int = 0
    round: int = 0
    attempts: int = 0
    sending: bool = False
    limited: bool = False
    quiet: bool = False
    last_error: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _load(cls: Any, doc: Any) -> Any:
    if not isinstance(doc, dict):
        return None
    names = {f.name for f in fields(cls)}
    try:
        return cls(**{k: v for k, v in doc.items() if k in names})
    except TypeError:
        return None


class Notifier:
    """Escalations and jobs; see the module doc."""

    def __init__(self, cfg: NotificationsConfig, *, instance: str = "") -> None:
        self.cfg = cfg
        self.instance = instance
        self.contacts: dict[str, ContactConfig] = {c.name: c for c in cfg.contacts}
        self._windows = {c.name: [(w.days, w.start, w.end) for w in c.on_call]
                         for c in cfg.contacts}
        self.escalations: dict[str, Escalation] = {}
        self.jobs: dict[str, Job] = {}
        self.last_sent: dict[str, list[int]] = {}  # "contact|alarm" -> [ns, occurrence]
        self.sent_times: dict[str, list[int]] = {}  # contact -> send times in the window
        self.counters = dict.fromkeys(COUNTERS, 0)
        self._lines: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ persistence
    def load(self, state: Mapping[str, Mapping[str, Any]]) -> None:
        """Continue from the buckets a replay of the event log gave. A job that was
        being sent when the process died is sent again (at least once)."""
        for key, doc in state.get("esc", {}).items():
            esc = _load(Escalation, doc)
            if esc is not None:
                self.escalations[key] = esc
        for key, doc in state.get("job", {}).items():
            job = _load(Job, doc)
            if job is not None:
                job.sending = False
                self.jobs[key] = job
        for key, v in state.get("sent", {}).items():
            if isinstance(v, list) and len(v) == 2:
                self.last_sent[key] = [int(v[0]), int(v[1])]
        for key, v in state.get("rate", {}).items():
            if isinstance(v, list):
                self.sent_times[key] = [int(t) for t in v if isinstance(t, int)]

    def state(self) -> dict[str, dict[str, Any]]:
        """The buckets for a snapshot."""
        return {"esc": {k: e.to_json() for k, e in self.escalations.items()},
                "job": {k: j.to_json() for k, j in self.jobs.items()},
                "sent": dict(self.last_sent), "rate": dict(self.sent_times)}

    def drain(self) -> list[dict[str, Any]]:
        """Event-log lines since the last drain."""
        out, self._lines = self._lines, []
        return out

    def _line(self, now_ns: int, alarm: str, status: str, put: dict[str, Any],
              **kw: Any) -> None:
        self._lines.append({"time_ns": now_ns, "alarm": alarm, "event": "notification",
                            "status": status, **kw, "put": put})

    def _put_job(self, job: Job, now_ns: int, status: str, **kw: Any) -> None:
        self._line(now_ns, job.alarm, status, {"job": {job.id: job.to_json()}},
                   job=job.id, contact=job.contact, channel=job.channel,
                   occurrence=job.occurrence, level=job.level + 1, round=job.round, **kw)

    def _drop_job(self, job: Job, now_ns: int, status: str, **kw: Any) -> None:
        self.jobs.pop(job.id, None)
        self._line(now_ns, job.alarm, status, {"job": {job.id: None}}, job=job.id,
                   contact=job.contact, channel=job.channel, occurrence=job.occurrence,
                   level=job.level + 1, round=job.round, **kw)

    # ------------------------------------------------------------------ alarm events
    def policy_for(self, priority: str, area: str) -> PolicyConfig | None:
        for p in self.cfg.policies:
            if (not p.priorities or priority in p.priorities) and (
                    not p.areas or area in p.areas):
                return p
        return None

    def on_event(self, ev: Event, notify: bool, now_ns: int, equipment: str = "") -> None:
        """Start, stop or keep the escalation of ``ev.alarm``."""
        if ev.event != "transition":
            return
        if ev.to_state == "unack" and ev.from_state in RAISE_FROM:
            self._stop(ev.alarm, now_ns, "raised again", keep_started=True)
            policy = self.policy_for(ev.priority, ev.area) if notify else None
            if policy is None:
                return
            esc = Escalation(ev.alarm, ev.occurrence, policy.name, ev.time_ns,
                             ev.time_ns + int(policy.levels[0].after_s * NS),
                             priority=ev.priority, area=ev.area, equipment=equipment,
                             message=ev.message)
            self.escalations[ev.alarm] = esc
            self.counters["escalations"] += 1
            self._line(now_ns, ev.alarm, "escalation_started",
                       {"esc": {ev.alarm: esc.to_json()}}, policy=policy.name,
                       occurrence=ev.occurrence)
        elif ev.to_state in STOP_STATES:
            self._stop(ev.alarm, now_ns, f"{ev.trigger} by {ev.user}" if ev.user
                       else ev.trigger)
        elif ev.to_state == "rtn_unack":
            running = self.escalations.get(ev.alarm)
            pol = self._policy(running.policy) if running is not None else None
            if pol is not None and pol.stop_on_return:
                self._stop(ev.alarm, now_ns, "returned to normal")

    def _policy(self, name: str) -> PolicyConfig | None:
        return next((p for p in self.cfg.policies if p.name == name), None)

    def _stop(self, alarm: str, now_ns: int, why: str, *, keep_started: bool = False) -> None:
        """End the escalation of ``alarm`` and cancel its jobs not being sent. With
        ``keep_started`` (the alarm was raised anew) a job whose sending had started
        is seen through: it may have been in flight when the process died, and at least
        once means it goes out."""
        esc = self.escalations.pop(alarm, None)
        for job in [j for j in self.jobs.values() if j.alarm == alarm and not j.sending
                    and not (keep_started and j.attempts > 0)]:
            self.counters["cancelled"] += 1
            self._drop_job(job, now_ns, "cancelled", reason=why)
        if esc is not None:
            self._line(now_ns, alarm, "escalation_stopped", {"esc": {alarm: None}},
                       reason=why, occurrence=esc.occurrence)

    # ------------------------------------------------------------------ escalation
    def tick(self, now_ns: int) -> None:
        """Advance every escalation that is due; make its jobs."""
        for alarm in sorted(self.escalations):
            esc: Escalation | None = self.escalations.get(alarm)
            while esc is not None and esc.due_ns <= now_ns:
                esc = self._notify_level(esc, now_ns)

    def _notify_level(self, esc: Escalation, now_ns: int) -> Escalation | None:
        pol = self._policy(esc.policy)
        if pol is None:  # the policy is gone from the config
            self._stop(esc.alarm, now_ns, "policy removed")
            return None
        level = pol.levels[esc.level]
        made = 0
        for name in level.contacts:
            c = self.contacts.get(name)
            if c is None:
                continue
            if not on_call(now_ns, c.timezone, self._windows[name]):
                self.counters["off_call"] += 1
                self._line(now_ns, esc.alarm, "off_call", {}, contact=name,
                           level=esc.level + 1, round=esc.round, occurrence=esc.occurrence)
                continue
            made += self._make_job(esc, c, now_ns)
        nxt = esc.level + 1
        round_len = pol.levels[-1].after_s - pol.levels[0].after_s + (pol.repeat_s or 0.0)
        if nxt < len(pol.levels):
            esc.level = nxt
            base = esc.started_ns + int(esc.round * round_len * NS)
            esc.due_ns = base + int(pol.levels[nxt].after_s * NS)
        elif pol.repeat_s is not None and (pol.max_rounds is None
                                           or esc.round + 1 < pol.max_rounds):
            esc.round += 1
            esc.level = 0
            esc.due_ns = (esc.started_ns + int(esc.round * round_len * NS)
                          + int(pol.levels[0].after_s * NS))
        else:
            del self.escalations[esc.alarm]
            self._line(now_ns, esc.alarm, "escalation_done", {"esc": {esc.alarm: None}},
                       occurrence=esc.occurrence)
            return None
        if made == 0:  # nobody reached at this level: the next one now
            esc.due_ns = min(esc.due_ns, now_ns)
        self._line(now_ns, esc.alarm, "escalation_level", {"esc": {esc.alarm: esc.to_json()}},
                   level=esc.level + 1, round=esc.round, occurrence=esc.occurrence,
                   due_ns=esc.due_ns)
        return esc

    def _make_job(self, esc: Escalation, c: ContactConfig, now_ns: int) -> int:
        jid = f"{esc.alarm}#{esc.occurrence}/r{esc.round}/l{esc.level + 1}/{c.name}"
        if jid in self.jobs:
            return 1
        last = self.last_sent.get(f"{c.name}|{esc.alarm}")
        if (last is not None and last[1] != esc.occurrence
                and now_ns - last[0] < self.cfg.dedup_window_s * NS):
            self.counters["deduplicated"] += 1
            self._line(now_ns, esc.alarm, "deduplicated", {}, contact=c.name,
                       occurrence=esc.occurrence, level=esc.level + 1,
                       last_occurrence=last[1])
            return 1
        code = ack_code(esc.alarm, esc.occurrence)
        text = render(self.cfg.body, {
            "priority": esc.priority.upper(), "message": esc.message, "alarm": esc.alarm,
            "occurrence": esc.occurrence, "area": esc.area, "equipment": esc.equipment,
            "level": esc.level + 1, "state": "unacknowledged", "instance": self.instance,
            "code": code})
        if (c.channel == "sms" and self.cfg.twilio.sms_reply_url
                and "{code}" not in self.cfg.body):
            text += f" Reply ACK {code}"  # the API's SMS-reply webhook acknowledges it
        job = Job(jid, esc.alarm, esc.occurrence, c.name, c.channel, c.phone, text,
                  esc.priority, now_ns, esc.level, esc.round)
        self.jobs[jid] = job
        self.counters["queued"] += 1
        self._put_job(job, now_ns, "queued")
        return 1

    # ------------------------------------------------------------------ sending
    def take_ready(self, now_ns: int, limit: int) -> list[Job]:
        """Up to ``limit`` jobs to send now (marked *sending*); quiet hours and rate
        limits move the others' due time."""
        out: list[Job] = []
        quiet = self.cfg.quiet_hours
        window = int(self.cfg.rate_limit.window_s * NS)
        for job in sorted(self.jobs.values(), key=lambda j: (j.due_ns, j.id)):
            if len(out) >= limit:
                break
            if job.sending or job.due_ns > now_ns:
                continue
            c = self.contacts.get(job.contact)
            if c is None:
                self._drop_job(job, now_ns, "cancelled", reason="contact removed")
                continue
            if quiet is not None and job.priority in quiet.priorities:
                until = quiet_until(now_ns, c.timezone, quiet.start, quiet.end)
                if until is not None:
                    job.due_ns = until
                    if not job.quiet:
                        job.quiet = True
                        self.counters["quiet_deferred"] += 1
                    self._put_job(job, now_ns, "quiet_hours", until_ns=until)
                    continue
            free_at = self._rate_free_at(job.contact, now_ns, window)
            if free_at > now_ns:
                job.due_ns = free_at
                if not job.limited:
                    job.limited = True
                    self.counters["rate_limited"] += 1
                self._put_job(job, now_ns, "rate_limited", until_ns=free_at)
                continue
            self.sent_times.setdefault(job.contact, []).append(now_ns)  # reserved
            job.sending = True
            job.attempts += 1
            self._put_job(job, now_ns, "sending", attempt=job.attempts)
            self._lines[-1]["put"]["rate"] = {job.contact: list(self.sent_times[job.contact])}
            out.append(job)
        return out

    def _rate_free_at(self, contact: str, now_ns: int, window: int) -> int:
        """When a message to ``contact`` fits both limits (now, or later)."""
        for key in list(self.sent_times):
            times = [t for t in self.sent_times[key] if now_ns - t < window]
            if times:
                self.sent_times[key] = times
            else:
                del self.sent_times[key]
        mine = self.sent_times.get(contact, [])
        rl = self.cfg.rate_limit
        free = now_ns
        if len(mine) >= rl.per_contact:
            free = max(free, mine[-rl.per_contact] + window)
        every = sorted(t for ts in self.sent_times.values() for t in ts)
        if len(every) >= rl.total:
            free = max(free, every[-rl.total] + window)
        return free

    def done(self, job_id: str, now_ns: int, *, ok: bool, error: str = "",
             retryable: bool = False, sid: str = "") -> None:
        """The outcome of sending ``job_id``."""
        job = self.jobs.get(job_id)
        if job is None:
            return
        job.sending = False
        if ok:
            self.counters["sent"] += 1
            key = f"{job.contact}|{job.alarm}"
            self.last_sent[key] = [now_ns, job.occurrence]
            self.jobs.pop(job.id, None)
            self._line(now_ns, job.alarm, "sent", {"job": {job.id: None},
                                                  "sent": {key: self.last_sent[key]}},
                       job=job.id, contact=job.contact, channel=job.channel,
                       occurrence=job.occurrence, level=job.level + 1, round=job.round,
                       attempt=job.attempts, sid=sid)
            return
        job.last_error = error
        r = self.cfg.retry
        if retryable and job.attempts < r.attempts:
            delay = min(r.max_s, r.initial_s * 2 ** (job.attempts - 1))
            job.due_ns = now_ns + int(delay * NS)
            self.counters["retried"] += 1
            self._put_job(job, now_ns, "retry", error=error, attempt=job.attempts,
                          retry_in_s=delay)
        else:
            self.counters["failed"] += 1
            self._drop_job(job, now_ns, "failed", error=error, attempt=job.attempts,
                           permanent=not retryable)
        self._unreserve(job.contact)  # what did not go out does not count against a limit

    def _unreserve(self, contact: str) -> None:
        """Give back the rate-limit slot taken for a send that failed; the line just
        written records it."""
        times = self.sent_times.get(contact)
        if times:
            times.pop()
            if not times:
                del self.sent_times[contact]
            self._lines[-1]["put"]["rate"] = {contact: list(times) or None}

    def next_due_ns(self) -> int | None:
        """The earliest time anything is due (for tests and idle waits)."""
        times = [e.due_ns for e in self.escalations.values()]
        times += [j.due_ns for j in self.jobs.values() if not j.sending]
        return min(times) if times else None
