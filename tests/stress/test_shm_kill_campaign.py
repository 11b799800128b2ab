"""Thousands of writers of every kind killed -9 (and stopped) at random moments, each
repaired by the supervisor's side as ``petra run`` does: nothing torn, lost without
being counted, left unusable or failed without a dead or stopped writer to blame.

Bounded for CI (at least 2,000 kills, normally 10-30 s); ``PETRA_SOAK_SECONDS=N``
keeps killing for N seconds. See ``kill_campaign.py`` for the processes involved.
"""

from __future__ import annotations

import uuid

import pytest
from kill_campaign import KINDS, STALL_TIMEOUT_S, run_campaign
from shm_checks import soak_seconds

pytestmark = pytest.mark.stress

MIN_KILLS = 2000
# What "no stall beyond one retry window" allows on a loaded 2-core box: the stall
# timeout, plus the checker not being scheduled for a while.
STALL_SLACK_S = 0.75


def test_kill_campaign() -> None:
    res = run_campaign(f"kill-{uuid.uuid4().hex[:10]}", seconds=soak_seconds(0.0),
                       min_kills=MIN_KILLS)
    print(f"\nkill campaign: {res.total_kills} kills in {res.seconds:.1f} s "
          f"({dict(res.kills)}), {res.stops} stop/continue; repaired {dict(res.repaired)}; "
          f"honest writes {res.honest_writes}, failures {dict(res.honest_failures)}; "
          f"samples {res.samples}, torn {res.torn}; journal seen {res.journal_seen} "
          f"(repairs {res.journal_repairs}), received {res.received} + lost {res.lost} == "
          f"{res.positions}; longest consumer wait {res.max_stall_s * 1e3:.0f} ms")
    assert not res.problems, res.problems
    assert res.total_kills >= MIN_KILLS
    assert set(res.kills) == set(KINDS) and min(res.kills.values()) >= MIN_KILLS // 10
    assert res.stops > 0
    # Kills landed inside sections of every kind, and repair found them all.
    assert res.repaired["slots_torn"] > 0 and res.repaired["entries"] > 0
    assert res.repaired["stats"] > 0 and res.repaired["heartbeats"] > 0
    assert res.unusable_after_repair == 0
    # Zero torn samples; every journal entry checks out and is in its writer's order.
    assert res.samples > 0 and res.torn == 0
    assert res.journal_seen > 0 and res.journal_bad == 0 and res.journal_disorder == 0
    assert res.received + res.lost == res.positions
    # No write failed without a dead or stopped holder to blame.
    assert res.honest_writes > 0
    assert res.honest_failures["live"] == 0 and res.honest_failures["nowait"] == 0
    assert res.honest_failures["unexplained"] == 0
    # No consumer waited at one position longer than one retry window (plus slack).
    assert res.max_stall_s < STALL_TIMEOUT_S + STALL_SLACK_S
