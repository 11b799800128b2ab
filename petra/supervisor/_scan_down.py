"""Marking the scan's outputs while the scan process is down (substatus SCAN_DOWN).

Why the supervisor does it
--------------------------
A block output is written by one process, the scan. When that process dies (a crash,
``kill -9``) or stops beating (stuck, ``SIGSTOP``) its outputs keep the last value it
wrote, still GOOD: a consumer (an HMI, MQTT subscriber, the history) cannot tell a
value the logic holds from one nobody computes any more. The supervisor is the one
process that notices (exit status, heartbeat age), so it marks them, as soon as the
dead scan's half-finished writes are repaired and before it is restarted:

- quality UNCERTAIN (``scan.scan_down: uncertain``, the default) or BAD (``bad``),
  never better than the quality the slot already has (a BAD output stays BAD);
- substatus SCAN_DOWN;
- the value and its source timestamp kept: "age" keeps measuring how old the value is,
  and the write timestamp says when it was marked.

``scan_down: keep`` marks nothing (the outputs stay as the scan left them); /healthz
says the scan is down either way.

How the mark clears
-------------------
The restarted scan clears it with its first cycle: a new scan engine writes every
output once whatever its last value was (its "last written" image starts unknown), so
each marked slot gets the scan's quality and substatus back. The supervisor only
forgets *when* the scan went down once the new scan has run a cycle.

Drivers and the mark
--------------------
A SCAN_DOWN entry is not a command: drivers skip it in the journal and do not
re-assert a SCAN_DOWN slot on (re)connect, so a device keeps the last value it was
given until the restarted scan writes again (see ``petra.drivers._common``).

Cost: one slot read and one write per output, about 12 us together (10k outputs:
median 117 ms over 5 runs on the 2-core VM at load average 6), once per scan death,
in the supervisor's loop. It is done synchronously on purpose: the restart (after the
backoff) must not begin before the last mark is written, or a late mark could
overwrite the new scan's first write.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from petra.errors import PetraError
from petra.shm import Segment
from petra.types import Quality, Substatus

log = logging.getLogger("petra.supervisor")

MODES = ("uncertain", "bad", "keep")
_TARGET = {"uncertain": Quality.UNCERTAIN, "bad": Quality.BAD}


@dataclass(frozen=True, slots=True)
class MarkResult:
    """What one :meth:`ScanDownMarker.mark` did."""

    marked: int
    already: int
    failed: int


def scan_outputs(segment: Segment, names: Iterable[str]) -> list[int]:
    """Slot indices of the signals the scan writes (``names``: the plant's block
    outputs); names the segment does not hold are left out."""
    out: list[int] = []
    for name in names:
        if name in segment:
            out.append(segment.index(name))
    return sorted(out)


class ScanDownMarker:
    """Marks the scan's outputs SCAN_DOWN and remembers since when the scan is down."""

    def __init__(self, segment: Segment, mode: str = "uncertain",
                 wall: Callable[[], float] = time.time) -> None:
        if mode not in MODES:
            raise ValueError(f"scan_down must be one of {', '.join(MODES)}, got {mode!r}")
        self._seg = segment
        self.mode = mode
        self._wall = wall
        self.since: float | None = None  # wall time the scan went down, None while up
        self._seen: tuple[int, int] | None = None  # (pid, cycles) of the new scan, first look
        self.last = MarkResult(0, 0, 0)

    def scan_down(self, slots: Iterable[int]) -> MarkResult:
        """The scan is down: remember when (first call of an outage only) and mark
        ``slots`` unless the mode is ``keep``."""
        if self.since is None:
            self.since = self._wall()
        self._seen = None
        self.last = self.mark(slots) if self.mode != "keep" else MarkResult(0, 0, 0)
        return self.last

    def scan_back(self, pid: int, cycles: int) -> float | None:
        """Called with a running scan's pid and the cycle count of the statistics (which
        a new scan resets before it reports RUNNING). Returns how long the scan was down
        (s) once that scan has completed a cycle since it was first seen running, so
        its first cycle, which rewrote every output, is behind it; else None."""
        if self.since is None:
            return None
        if self._seen is None or self._seen[0] != pid:
            self._seen = (pid, cycles)
            return None
        if cycles <= self._seen[1]:
            return None
        down_s = self._wall() - self.since
        self.since = None
        self._seen = None
        return down_s

    def mark(self, slots: Iterable[int]) -> MarkResult:
        """Write each slot again with its value and source time, quality no better
        than the mode's and substatus SCAN_DOWN. A slot already marked is left alone
        (a scan that dies again before its first cycle adds no journal entries); a
        slot that cannot be written (held by another dead writer not yet repaired)
        is counted and skipped."""
        target = _TARGET[self.mode]
        seg = self._seg
        marked = already = failed = 0
        for i in slots:
            try:
                s = seg.read_index(i)
                if s.substatus == Substatus.SCAN_DOWN:
                    already += 1
                    continue
                seg.write_index(i, s.value, min(s.quality, target), s.source_ts_ns,
                                Substatus.SCAN_DOWN)
                marked += 1
            except PetraError as exc:
                failed += 1
                log.warning("event=scan_down_mark_failed slot=%d error=%r", i, str(exc))
        return MarkResult(marked, already, failed)

    def reason(self) -> str | None:
        """The /healthz reason while the scan is down, else None."""
        if self.since is None:
            return None
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.since))
        if self.mode == "keep":
            what = "outputs not marked (scan_down: keep)"
        else:
            what = f"outputs marked {_TARGET[self.mode].name}/SCAN_DOWN"
        return f"scan down since {at} ({what})"
