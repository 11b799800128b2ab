"""Local time for people: on-call windows and quiet hours in a contact's time zone.

A window is a day set and a start and end time of day, read in the contact's zone
(``zoneinfo``, so daylight saving time is the zone's business, not ours):

- ``start < end``: that span on each listed day (``08:00``-``17:00``);
- ``end < start``: it runs past midnight and belongs to the day it *starts* on
  (``mon 22:00-06:00`` covers Monday 22:00 to Tuesday 06:00);
- ``start == end``: the whole of each listed day.

On a spring-forward night a local time that does not exist is skipped by the clock
itself; on a fall-back night the repeated hour is inside the window both times.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import lru_cache

from petra.config._alarms import DAYS, hhmm_minutes


@lru_cache(maxsize=64)
def zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


def local(now_ns: int, tz: str) -> datetime:
    return datetime.fromtimestamp(now_ns / 1e9, zone(tz))


def in_window(dt: datetime, days: Sequence[str], start: str, end: str) -> bool:
    """Whether local time ``dt`` is inside the window (see the module doc)."""
    minute = dt.hour * 60 + dt.minute
    day = DAYS[dt.weekday()]
    prev = DAYS[(dt.weekday() - 1) % 7]
    a, b = hhmm_minutes(start), hhmm_minutes(end)
    if a < b:
        return day in days and a <= minute < b
    if a == b:
        return day in days
    return (day in days and minute >= a) or (prev in days and minute < b)


def on_call(now_ns: int, tz: str, windows: Sequence[tuple[Sequence[str], str, str]]) -> bool:
    """On call now: no windows means always."""
    if not windows:
        return True
    dt = local(now_ns, tz)
    return any(in_window(dt, days, a, b) for days, a, b in windows)


def quiet_until(now_ns: int, tz: str, start: str, end: str) -> int | None:
    """When the quiet hours around ``now_ns`` end (ns), or None when it is not quiet."""
    dt = local(now_ns, tz)
    if not in_window(dt, DAYS, start, end):
        return None
    b = hhmm_minutes(end)
    target = dt.replace(hour=b // 60, minute=b % 60, second=0, microsecond=0)
    if target <= dt:
        target = (dt + timedelta(days=1)).replace(hour=b // 60, minute=b % 60, second=0,
                                                   microsecond=0)
    return int(target.timestamp() * 1e9)
