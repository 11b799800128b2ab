"""The petra-top TUI through textual's headless pilot: keys in, tables out.

Snapshots come from a scripted source (or, in the last test, a real sampler over a
real segment); the refresh interval is set far beyond the test's length, so every
redraw is one the test asked for.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

from test_top_columns import sig, snapshot
from textual.widgets import DataTable, Input, Static

from petra.shm import HeartbeatHandle, ProcessState, Segment, SignalDef, SignalType, StatsWriter
from petra.top import Sampler, Snapshot
from petra.top._app import CHANGED_STYLE, TopApp

NEVER = 3600.0


class Script:
    """Hands out the snapshots it was given, repeating the last one."""

    def __init__(self, *snaps: Snapshot) -> None:
        self.snaps = list(snaps)
        self.calls = 0

    def __call__(self) -> Snapshot:
        self.calls += 1
        return self.snaps[min(self.calls, len(self.snaps)) - 1]


def run(app: TopApp, body: Callable[[Any], Coroutine[Any, Any, None]]) -> None:
    async def main() -> None:
        async with app.run_test(size=(140, 50)) as pilot:
            await pilot.pause()
            await body(pilot)

    asyncio.run(main())


def table_rows(app: TopApp, table_id: str) -> list[list[str]]:
    table = app.query_one(table_id, DataTable)
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


def names(app: TopApp) -> list[str]:
    return [row[0] for row in table_rows(app, "#signals")]


def title(app: TopApp) -> str:
    return str(app.query_one("#signals-title", Static).content)


def test_tables_show_the_snapshot() -> None:
    app = TopApp(Script(snapshot()), interval_s=NEVER)

    async def body(pilot: Any) -> None:
        procs = table_rows(app, "#processes")
        assert [r[0] for r in procs] == ["scan", "driver:plc1"]
        assert procs[0][:6] == ["scan", "100", "running", "12.5%", "40.0M", "0"]
        assert procs[1][2] == "degraded?"
        assert names(app) == ["tank.level", "pump.run", "pump.starts", "Tank.temp"]
        assert table_rows(app, "#signals")[0][:5] == ["tank.level", "1.5", "m", "good", "2 ms"]
        header = str(app.query_one("#header", Static).content)
        assert "demo" in header and "p99.9 >1 ms" in header and "lag 10" in header
        assert title(app) == "Signals (4)"

    run(app, body)


def test_filter_with_slash_and_clear_with_escape() -> None:
    app = TopApp(Script(snapshot()), interval_s=NEVER)

    async def body(pilot: Any) -> None:
        await pilot.press("slash")
        box = app.query_one("#filter", Input)
        assert box.has_class("visible") and box.has_focus
        await pilot.press(*"tank", "enter")
        await pilot.pause()
        assert names(app) == ["tank.level", "Tank.temp"]
        assert "filter 'tank'" in title(app)
        assert not box.has_class("visible")
        await pilot.press("slash")
        await pilot.press("backspace", "backspace", "backspace", "backspace", *"pump.s*",
                          "enter")
        await pilot.pause()
        assert names(app) == ["pump.starts"]
        await pilot.press("escape")
        await pilot.pause()
        assert len(names(app)) == 4
        assert app.pattern == ""

    run(app, body)


def test_sort_cycles_columns_and_reverse() -> None:
    app = TopApp(Script(snapshot()), interval_s=NEVER)

    async def body(pilot: Any) -> None:
        await pilot.press("s")  # NAME
        assert names(app) == ["Tank.temp", "pump.run", "pump.starts", "tank.level"]
        assert "sort NAME" in title(app)
        await pilot.press("s")  # VALUE
        assert names(app) == ["Tank.temp", "pump.run", "tank.level", "pump.starts"]
        await pilot.press("r")
        assert names(app) == ["pump.starts", "tank.level", "pump.run", "Tank.temp"]
        assert "sort VALUE desc" in title(app)
        await pilot.press("r", *("s" * 6))  # UNIT .. OWNER, then back to slot order
        assert names(app) == ["tank.level", "pump.run", "pump.starts", "Tank.temp"]
        assert "sort" not in title(app)

    run(app, body)


def test_pause_freezes_and_changes_are_highlighted() -> None:
    first = snapshot()
    moved = replace(first, signals=(sig(0, "tank.level", 1.75, unit="m"), *first.signals[1:]))
    script = Script(first, moved, moved)
    app = TopApp(script, interval_s=NEVER)

    async def body(pilot: Any) -> None:
        await pilot.press("p")
        assert app.paused and "PAUSED" in title(app)
        app.refresh_snapshot()
        assert script.calls == 1  # paused: no sampling
        assert table_rows(app, "#signals")[0][1] == "1.5"
        await pilot.press("p")
        app.refresh_snapshot()
        await pilot.pause()
        assert script.calls == 2
        assert table_rows(app, "#signals")[0][1] == "1.75"
        table = app.query_one("#signals", DataTable)
        assert str(table.get_row_at(0)[1].style) == CHANGED_STYLE
        assert str(table.get_row_at(1)[1].style) == ""
        assert app.changed == {"tank.level"}
        app.refresh_snapshot()  # same values again: nothing highlighted
        await pilot.pause()
        assert app.changed == set()

    run(app, body)


def test_q_quits() -> None:
    app = TopApp(Script(snapshot()), interval_s=NEVER)
    seen: list[bool] = []

    async def body(pilot: Any) -> None:
        await pilot.press("q")
        await pilot.pause()
        seen.append(app.is_running)

    run(app, body)
    assert seen == [False]


def test_live_segment_through_the_sampler() -> None:
    seg = Segment.create(f"topapp-{uuid.uuid4().hex[:8]}", [
        SignalDef("line.speed", SignalType.FLOAT, unit="m/s"),
        SignalDef("line.on", SignalType.BOOL),
    ], heartbeats=4)
    try:
        stats = StatsWriter(seg, 10_000_000)
        for _ in range(50):
            stats.record(30_000, 5_000)
        hb = HeartbeatHandle(seg, "scan", os.getpid(), cpu=1)
        hb.beat(ProcessState.RUNNING)
        seg.write("line.speed", 0.5)
        gone = [False]
        with Sampler.attach(seg.instance) as sampler:
            app = TopApp(sampler.sample, interval_s=NEVER, present=lambda: not gone[0])

            async def body(pilot: Any) -> None:
                assert table_rows(app, "#signals")[0][:3] == ["line.speed", "0.5", "m/s"]
                assert table_rows(app, "#processes")[0][:3] == ["scan", str(os.getpid()),
                                                                "running"]
                header = str(app.query_one("#header", Static).content)
                assert "10.00 ms" in header and "50" in header
                seg.write("line.speed", 0.75)
                seg.write("line.on", True)
                gone[0] = True
                app.refresh_snapshot()
                await pilot.pause()
                rows = table_rows(app, "#signals")
                assert [r[1] for r in rows] == ["0.75", "true"]
                assert app.changed == {"line.speed", "line.on"}
                assert "instance has stopped" in str(app.query_one("#header", Static).content)

            run(app, body)
    finally:
        seg.unlink()
        seg.close()
