"""The petra-top TUI through textual's headless pilot: keys in, tables out.

Snapshots come from a scripted source (or, in the last test, a real sampler over a
real segment); the refresh interval is set far beyond the test's length, so every
redraw is one the test asked for.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from test_top_columns import scan_view, sig, snapshot
from textual.widgets import DataTable, Input, Static

from petra.errors import SegmentLayoutError, UnknownSignalError, ValueOutOfRangeError
from petra.shm import HeartbeatHandle, ProcessState, Segment, SignalDef, SignalType, StatsWriter
from petra.top import Sampler, SignalDetail, SignalWriter, Snapshot
from petra.top._app import CHANGED_STYLE, TopApp, WriteScreen

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
        await pilot.press("r", *("s" * 7))  # UNIT .. WHY, then back to slot order
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


# --------------------------------------------------------------------------- rough data
def rough_snapshots() -> list[Snapshot]:
    """An empty histogram, then everything beyond it, NaN and inf values, a process
    that vanished and one that came back under a new pid."""
    base = snapshot()
    empty = replace(base, scan=scan_view(cycles=0, wake_p50_us=0.0, wake_p90_us=0.0,
                                         wake_p99_us=0.0, wake_p999_us=0.0, history=()))
    over = replace(base, scan=scan_view(
        wake_p50_us=math.inf, wake_p90_us=math.inf, wake_p99_us=math.inf,
        wake_p999_us=math.inf, history=(math.inf, math.inf, math.nan, 12.0),
        cycles_per_s=math.nan, exec_avg_us=math.nan),
        signals=(sig(0, "tank.level", math.nan, unit="m", age_ms=math.nan),
                 sig(1, "pump.run", True, age_ms=-3.0),
                 sig(2, "pump.starts", 42, quality="bad", age_ms=math.inf),
                 sig(3, "Tank.temp", math.inf, quality="uncertain")))
    scan_p, drv = base.processes
    gone = replace(over, processes=(scan_p, replace(drv, alive=False, cpu_percent=None,
                                                    rss_bytes=None, affinity=None,
                                                    pinned=None)))
    back = replace(over, processes=(scan_p, replace(drv, pid=202, restarts=4, alive=True,
                                                    cpu_percent=math.nan)),
                   signals=(sig(0, "tank.level", -math.inf, unit="m"), *over.signals[1:]))
    return [empty, over, gone, back, empty]


def test_rough_data_never_crashes_the_view() -> None:
    script = Script(*rough_snapshots())
    app = TopApp(script, interval_s=NEVER)

    async def body(pilot: Any) -> None:
        header = str(app.query_one("#header", Static).content)
        assert "p50 0.00 us" in header  # the empty histogram
        for _ in range(3):  # beyond the histogram, the process gone, back
            app.refresh_snapshot()
            await pilot.press("s", "a", "u", "r")
            await pilot.pause()
            assert app.is_running
        procs = table_rows(app, "#processes")
        assert procs[1][1] == "202" and procs[1][5] == "4"
        app.refresh_snapshot()  # and an empty histogram again
        await pilot.pause()
        assert "p99.9 0.00 us" in str(app.query_one("#header", Static).content)

    run(app, body)
    assert script.calls == 5


def test_percentiles_beyond_the_histogram_read_as_its_top() -> None:
    snaps = rough_snapshots()
    app = TopApp(Script(snaps[1]), interval_s=NEVER)

    async def body(pilot: Any) -> None:
        header = str(app.query_one("#header", Static).content)
        assert "p50 >1 ms  p90 >1 ms  p99 >1 ms  p99.9 >1 ms" in header
        assert "Rate      -" in header
        values = {r[0]: r[1] for r in table_rows(app, "#signals")}
        assert values["tank.level"] == "nan" and values["Tank.temp"] == "inf"
        ages = {r[0]: r[4] for r in table_rows(app, "#signals")}
        assert ages["tank.level"] == "-" and ages["pump.starts"] == "never"

    run(app, body)


def test_a_failing_sample_is_shown_and_the_view_goes_on() -> None:
    good = snapshot()
    calls = [0]

    def sample() -> Snapshot:
        calls[0] += 1
        if calls[0] == 2:
            raise SegmentLayoutError("segment 'demo' is empty (still being created?)")
        return good

    app = TopApp(sample, interval_s=NEVER)

    async def body(pilot: Any) -> None:
        app.refresh_snapshot()
        await pilot.pause()
        header = str(app.query_one("#header", Static).content)
        assert "cannot read the segment: SegmentLayoutError" in header
        assert names(app)[0] == "tank.level"  # the last good snapshot stays up
        app.refresh_snapshot()
        await pilot.pause()
        assert "cannot read" not in str(app.query_one("#header", Static).content)

    run(app, body)


def test_a_nan_that_stays_nan_is_not_a_change() -> None:
    snaps = rough_snapshots()
    app = TopApp(Script(snaps[1], snaps[1]), interval_s=NEVER)

    async def body(pilot: Any) -> None:
        app.refresh_snapshot()
        await pilot.pause()
        assert "tank.level" not in app.changed

    run(app, body)


# --------------------------------------------------------------------------- keys
def test_sort_by_age_and_by_quality_keys() -> None:
    app = TopApp(Script(snapshot()), interval_s=NEVER)

    async def body(pilot: Any) -> None:
        await pilot.press("a")
        assert names(app) == ["pump.starts", "pump.run", "Tank.temp", "tank.level"]
        assert "sort AGE desc" in title(app)
        await pilot.press("u")
        assert names(app)[:2] == ["pump.starts", "Tank.temp"]  # bad, then uncertain
        assert "sort QUALITY" in title(app) and "desc" not in title(app)

    run(app, body)


def detail_of(name: str) -> SignalDetail:
    return SignalDetail(name=name, type="float", unit="m", owner="scan", writable=False,
                        value=1.5, quality="good", substatus="none", source_age_ms=2.0,
                        write_age_ms=2.0, writer_pid=100, writer_role="scan",
                        minimum=0.0, maximum=10.0, description=f"about {name}")


def test_detail_pane_follows_the_cursor_and_hides() -> None:
    asked: list[str] = []

    def detail(name: str) -> SignalDetail:
        asked.append(name)
        if name == "pump.starts":
            raise UnknownSignalError("no signal named 'pump.starts'")
        return detail_of(name)

    app = TopApp(Script(snapshot()), interval_s=NEVER, detail=detail)

    def pane() -> str:
        return str(app.query_one("#detail", Static).content)

    async def body(pilot: Any) -> None:
        assert "about tank.level" in pane() and "0 .. 10" in pane()
        assert "scan (pid 100)" in pane()
        await pilot.press("down")
        await pilot.pause()
        assert "about pump.run" in pane()
        await pilot.press("down")
        await pilot.pause()
        assert "no signal named" in pane()  # shown, not raised
        await pilot.press("d")
        await pilot.pause()
        assert not app.query_one("#detail", Static).display
        await pilot.press("d")
        await pilot.pause()
        assert app.query_one("#detail", Static).display

    run(app, body)
    assert {"tank.level", "pump.run", "pump.starts"} <= set(asked)


# --------------------------------------------------------------------------- writes
def writable_snapshot() -> Snapshot:
    base = snapshot()
    sp = sig(4, "tank.sp", 2.5, unit="m")._replace(writable=True)
    return replace(base, signals=(*base.signals, sp))


class Recorder:
    def __init__(self, refuse: Exception | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.refuse = refuse

    def __call__(self, name: str, text: str) -> object:
        self.calls.append((name, text))
        if self.refuse is not None:
            raise self.refuse
        return float(text)


def check(name: str, text: str) -> str | None:
    try:
        float(text)
    except ValueError:
        return f"signal {name!r}: not a value: {text!r}"
    return None


async def select(pilot: Any, app: TopApp, name: str) -> None:
    while (sel := app.selected_signal()) is not None and sel.name != name:
        await pilot.press("down")
    await pilot.pause()


def test_write_asks_for_a_value_and_a_confirmation() -> None:
    writer = Recorder()
    script = Script(writable_snapshot())
    app = TopApp(script, interval_s=NEVER, write=writer, check=check)

    async def body(pilot: Any) -> None:
        await select(pilot, app, "tank.sp")
        await pilot.press("w")
        await pilot.pause()
        assert isinstance(app.screen, WriteScreen)
        await pilot.press(*"abc", "enter")
        await pilot.pause()
        assert "not a value" in str(app.screen.query_one("#confirm", Static).content)
        await pilot.press(*("backspace",) * 3, *"3.25", "enter")
        await pilot.pause()
        assert "Write tank.sp = 3.25?" in str(app.screen.query_one("#confirm", Static).content)
        assert writer.calls == []  # nothing before the confirmation
        await pilot.press("y")
        await pilot.pause()
        assert not isinstance(app.screen, WriteScreen)
        assert writer.calls == [("tank.sp", "3.25")]
        assert app.last_write == "tank.sp = 3.25 written"
        assert script.calls == 2  # re-sampled to show the new value

    run(app, body)


def test_write_cancel_readonly_and_refusal() -> None:
    writer = Recorder(refuse=ValueOutOfRangeError(
        "signal 'tank.sp': 9.0 is outside its limits [0, 5]"))
    app = TopApp(Script(writable_snapshot()), interval_s=NEVER, write=writer, check=check)

    async def body(pilot: Any) -> None:
        await pilot.press("w")  # tank.level: read-only
        await pilot.pause()
        assert not isinstance(app.screen, WriteScreen)
        assert app.last_write is not None and "tank.level is read-only" in app.last_write
        await select(pilot, app, "tank.sp")
        await pilot.press("w", *"1", "escape")
        await pilot.pause()
        assert not isinstance(app.screen, WriteScreen) and writer.calls == []
        await pilot.press("w", *"9", "enter", "n")
        await pilot.pause()
        assert not isinstance(app.screen, WriteScreen) and writer.calls == []
        await pilot.press("w", *"9", "enter", "y")
        await pilot.pause()
        assert writer.calls == [("tank.sp", "9")]
        assert app.last_write == ("not written: signal 'tank.sp': 9.0 is outside its "
                                  "limits [0, 5]")

    run(app, body)


def test_without_a_writer_the_view_is_read_only() -> None:
    app = TopApp(Script(writable_snapshot()), interval_s=NEVER)

    async def body(pilot: Any) -> None:
        await select(pilot, app, "tank.sp")
        await pilot.press("w")
        await pilot.pause()
        assert not isinstance(app.screen, WriteScreen)
        assert app.last_write == "this view is read-only (no writer)"

    run(app, body)


def test_write_key_goes_through_the_checked_path_of_a_real_segment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PETRA_DATA_DIR", str(tmp_path))  # the audit log of the writes
    seg = Segment.create(f"topwrite-{uuid.uuid4().hex[:8]}", [
        SignalDef("tank.sp", SignalType.FLOAT, unit="m", writable=True, minimum=0.0,
                  maximum=5.0, initial=2.5),
        SignalDef("tank.level", SignalType.FLOAT, unit="m"),
    ], heartbeats=2)
    try:
        writer = SignalWriter(seg.instance)
        with Sampler.attach(seg.instance) as sampler:
            app = TopApp(sampler.sample, interval_s=NEVER, detail=sampler.detail,
                         write=writer.write, check=lambda n, t: None)

            async def body(pilot: Any) -> None:
                assert app.selected_signal() is not None
                await pilot.press("w", *"9", "enter", "y")  # above max: refused
                await pilot.pause()
                assert app.last_write == ("not written: signal 'tank.sp': 9.0 is outside "
                                          "its limits [0, 5]")
                await pilot.press("w", *"nan", "enter", "y")
                await pilot.pause()
                assert app.last_write is not None and "not a finite number" in app.last_write
                await pilot.press("w", *"4.25", "enter", "y")
                await pilot.pause()
                assert app.last_write == "tank.sp = 4.25 written"
                assert table_rows(app, "#signals")[0][1] == "4.25"
                await pilot.press("down", "w")  # tank.level: read-only
                await pilot.pause()
                assert app.last_write is not None and "read-only" in app.last_write

            run(app, body)
        assert seg.get("tank.sp") == 4.25
        assert seg.read("tank.sp").writer == os.getpid()
        records = [json.loads(x) for x in
                   (tmp_path / "audit" / "audit.log").read_text().splitlines()]
        assert [(r["via"], r["outcome"]) for r in records] == [
            ("top", "refused"), ("top", "refused"), ("top", "ok")]  # read-only: never sent
        assert records[2]["before"] == 2.5 and records[2]["after"] == 4.25
    finally:
        seg.unlink()
        seg.close()
