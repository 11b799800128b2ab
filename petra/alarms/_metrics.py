"""Alarm system performance measures (ISA-18.2 clause 16 / EEMUA 191).

- **Alarms per 10 minutes**: annunciations (an alarm raised anew) in a sliding
  10-minute window; above ``flood_per_10min`` (10 by default: ISA-18.2's "alarm flood")
  the system is in flood.
- **Standing alarms**: active (UNACK or ACKED) for longer than ``standing_after_s``
  (24 h by default).
- **Chattering alarms** ("bad actors"): an alarm raised ``count`` times within
  ``window_s`` (3 in 60 s by default); it counts as chattering until a whole window
  passes without that happening. The top ten by annunciations in 24 h are reported.
- **Mean time to acknowledge**: over the acknowledgements of the last 24 h.

Everything here is in memory and cheap per event; the figures are rebuilt after a
restart from the metric state kept in the snapshot of the event log
(:meth:`AlarmMetrics.to_json`).
"""

from __future__ import annotations

from collections import Counter, deque
from typing import Any

NS = 1_000_000_000
WINDOW_10MIN_NS = 600 * NS
DAY_NS = 86_400 * NS
MAX_KEPT = 10_000  # events kept per sliding window (a bound on memory under a flood)


class AlarmMetrics:
    """Sliding windows of annunciations and acknowledgements."""

    def __init__(self, *, chatter_count: int = 3, chatter_window_s: float = 60.0,
                 flood_per_10min: int = 10) -> None:
        self.chatter_count = chatter_count
        self.chatter_window_ns = int(chatter_window_s * NS)
        self.flood_per_10min = flood_per_10min
        self._raised: deque[tuple[int, str]] = deque()  # (time, alarm), last 24 h
        self._recent: dict[str, deque[int]] = {}  # alarm -> its last raise times
        self._chattering: dict[str, int] = {}  # alarm -> last time it met the rule
        self._acks: deque[tuple[int, float]] = deque()  # (time, seconds to ack), 24 h

    def raised(self, alarm: str, now_ns: int) -> None:
        self._raised.append((now_ns, alarm))
        if len(self._raised) > MAX_KEPT * 10:
            self._raised.popleft()
        q = self._recent.setdefault(alarm, deque(maxlen=self.chatter_count))
        q.append(now_ns)
        if len(q) == self.chatter_count and now_ns - q[0] <= self.chatter_window_ns:
            self._chattering[alarm] = now_ns

    def acked(self, raised_ns: int, now_ns: int) -> None:
        if raised_ns > 0 and now_ns >= raised_ns:
            self._acks.append((now_ns, (now_ns - raised_ns) / NS))
            if len(self._acks) > MAX_KEPT:
                self._acks.popleft()

    def expire(self, now_ns: int) -> None:
        while self._raised and now_ns - self._raised[0][0] > DAY_NS:
            self._raised.popleft()
        while self._acks and now_ns - self._acks[0][0] > DAY_NS:
            self._acks.popleft()
        for alarm, t in list(self._chattering.items()):
            if now_ns - t > self.chatter_window_ns:
                del self._chattering[alarm]
        if len(self._recent) > MAX_KEPT:
            for alarm in [a for a, q in self._recent.items()
                          if q and now_ns - q[-1] > self.chatter_window_ns]:
                del self._recent[alarm]

    def per_10min(self, now_ns: int) -> int:
        n = 0
        for t, _ in reversed(self._raised):
            if now_ns - t > WINDOW_10MIN_NS:
                break
            n += 1
        return n

    def flood(self, now_ns: int) -> bool:
        return self.per_10min(now_ns) > self.flood_per_10min

    def chattering(self) -> list[str]:
        return sorted(self._chattering)

    def mtta_s(self) -> float | None:
        if not self._acks:
            return None
        return sum(s for _, s in self._acks) / len(self._acks)

    def bad_actors(self, n: int = 10) -> list[tuple[str, int]]:
        """The ``n`` alarms raised most often in the last 24 h."""
        return Counter(a for _, a in self._raised).most_common(n)

    def raised_24h(self) -> int:
        return len(self._raised)

    # ------------------------------------------------------------------ persistence
    def to_json(self) -> dict[str, Any]:
        return {"raised": [[t, a] for t, a in self._raised],
                "acks": [[t, s] for t, s in self._acks],
                "chattering": dict(self._chattering)}

    def load(self, doc: dict[str, Any]) -> None:
        """Restore from :meth:`to_json` (malformed entries are skipped)."""
        for item in doc.get("raised", []):
            if isinstance(item, list) and len(item) == 2:
                t, a = item
                if isinstance(t, int) and isinstance(a, str):
                    self.raised(a, t)
        for item in doc.get("acks", []):
            if isinstance(item, list) and len(item) == 2 and isinstance(item[0], int):
                self._acks.append((item[0], float(item[1])))
        ch = doc.get("chattering", {})
        if isinstance(ch, dict):
            self._chattering.update({k: v for k, v in ch.items() if isinstance(v, int)})
