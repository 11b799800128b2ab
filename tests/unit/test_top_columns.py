"""The rendering registry: formatters, columns, panels, filtering, the text dump.

Pure functions over hand-made snapshots: no segment, no terminal.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from petra import top
from petra.top import (
    HEADER_METERS,
    PANELS,
    PROCESS_PANEL,
    SIGNAL_PANEL,
    ProcessView,
    ScanView,
    SignalView,
    Snapshot,
    render_text,
    select_rows,
    sparkline,
)
from petra.top._columns import (
    fmt_age_ms,
    fmt_bytes,
    fmt_cpus,
    fmt_percent,
    fmt_percentile,
    fmt_rate,
    fmt_uptime,
    fmt_us,
    fmt_value,
    matches,
    render_detail,
    spark_label,
    spark_values,
)
from petra.top._snapshot import ConsumerLag, JournalView, SignalDetail


def scan_view(**kw: object) -> ScanView:
    base: dict[str, object] = dict(
        period_us=1000.0, cycles=12345, overruns=2, skipped=1, exec_last_us=12.5,
        exec_avg_us=11.0, exec_max_us=80.0, wake_last_us=20.0, wake_avg_us=22.0,
        wake_max_us=950.0, wake_p50_us=18.0, wake_p90_us=30.0, wake_p99_us=61.0,
        wake_p999_us=math.inf, running_s=12.3, cycles_per_s=1000.0,
        history=(10.0, 20.0, 40.0))
    base.update(kw)
    return ScanView(**base)  # type: ignore[arg-type]


def sig(index: int, name: str, value: bool | int | float, *, quality: str = "good",
        age_ms: float = 5.0, unit: str = "") -> SignalView:
    t = "bool" if isinstance(value, bool) else "int" if isinstance(value, int) else "float"
    return SignalView(slot=index, name=name, type=t, value=value, quality=quality,
                      age_ms=age_ms, unit=unit, owner="scan")


def snapshot() -> Snapshot:
    return Snapshot(
        instance="demo", taken_ns=1, uptime_s=3725.0, scan=scan_view(),
        processes=(
            ProcessView(record=0, role="scan", pid=100, state="running", restarts=0, cpu=1,
                        alive=True, cpu_percent=12.5, rss_bytes=40 << 20,
                        heartbeat_age_ms=3.0, counters=(0,) * 8, affinity=(1,),
                        pinned=True),
            ProcessView(record=1, role="driver:plc1", pid=101, state="degraded", restarts=3,
                        cpu=0, alive=False, cpu_percent=None, rss_bytes=None,
                        heartbeat_age_ms=4200.0, counters=(2, 0, 17, 0, 0, 0, 0, 0)),
        ),
        signals=(
            sig(0, "tank.level", 1.5, unit="m", age_ms=2.0),
            sig(1, "pump.run", True, age_ms=900.0),
            sig(2, "pump.starts", 42, quality="bad", age_ms=61_000.0),
            sig(3, "Tank.temp", -3.25, quality="uncertain", unit="degC", age_ms=30.0),
        ),
        journal=JournalView(head=5000, capacity=1 << 16, producer_drops=0, rate_per_s=2500.0,
                            consumers=(ConsumerLag("sink:mqtt", 4990, 10),)),
    )


@pytest.mark.parametrize(("us", "text"), [
    (None, "-"), (0.5, "0.50 us"), (12.34, "12.3 us"), (1500.0, "1.50 ms"),
    (2_500_000.0, "2.50 s"), (math.inf, ">1 ms")])
def test_fmt_us(us: float | None, text: str) -> None:
    assert fmt_us(us) == text


@pytest.mark.parametrize(("ms", "text"), [
    (None, "-"), (3.4, "3 ms"), (1500.0, "1.5 s"), (90_000.0, "1.5 min"),
    (7_200_000.0, "2.0 h"), (2 * 86_400_000.0, "2.0 d")])
def test_fmt_age(ms: float | None, text: str) -> None:
    assert fmt_age_ms(ms) == text


def test_small_formatters() -> None:
    assert fmt_bytes(None) == "-"
    assert fmt_bytes(512) == "512B"
    assert fmt_bytes(40 << 20) == "40.0M"
    assert fmt_bytes(300 << 20) == "300M"
    assert fmt_bytes(5 << 40) == "5.0T"
    assert fmt_percent(None) == "-"
    assert fmt_percent(3.14159) == "3.1%"
    assert fmt_rate(None) == "-"
    assert fmt_rate(250.4) == "250/s"
    assert fmt_rate(25_000.0) == "25.0k/s"
    assert fmt_rate(3_200_000.0) == "3.20M/s"
    assert fmt_uptime(59.9) == "00:00:59"
    assert fmt_uptime(3725.0) == "01:02:05"
    assert fmt_uptime(2 * 86400 + 61.0) == "2d 00:01:01"
    assert fmt_value(True) == "true"
    assert fmt_value(False) == "false"
    assert fmt_value(7) == "7"
    assert fmt_value(1 / 3) == "0.333333"
    assert fmt_value(float("nan")) == "nan"


def test_sparkline() -> None:
    assert sparkline([], 10) == ""
    assert sparkline([0.0, 0.0], 10) == "▁▁"
    assert sparkline([0.0, 50.0, 100.0], 10) == "▁▅█"
    assert sparkline([1.0, 2.0, 3.0, 4.0], 2) == "▆█"  # the last values, rescaled
    assert sparkline([5.0, math.inf], 5, top=10.0) == "▅█"
    # Beyond the histogram draws the tallest bar, NaN the lowest, without a top too.
    assert sparkline([5.0, math.inf, 10.0], 5) == "▅██"
    assert sparkline([math.nan, 4.0, -1.0], 5) == "▁█▁"
    assert sparkline([math.inf, math.inf], 5) == "██"


def test_spark_values_are_always_drawable() -> None:
    """textual's Sparkline turns each value into an int: inf and NaN crashed it."""
    assert spark_values([]) == []
    assert spark_values([3.0, math.inf, math.nan, -2.0]) == [3.0, 3.0, 0.0, 0.0]
    assert spark_values([math.inf]) == [1.0]
    assert all(math.isfinite(v) for v in spark_values([math.inf, -math.inf, math.nan]))


@pytest.mark.parametrize(("us", "top", "text"), [
    (math.inf, 1000.0, ">1 ms"), (math.inf, 1_000_000.0, ">1 s"),
    (math.inf, 250.0, ">250 us"), (math.inf, math.inf, "overflow"),
    (61.0, 1000.0, "61.0 us"), (math.nan, 1000.0, "-"),
    (0.0, 1000.0, "0.00 us")])
def test_fmt_percentile(us: float, top: float, text: str) -> None:
    assert fmt_percentile(us, top) == text


def test_formatters_take_any_number() -> None:
    """NaN, inf and negative numbers are cells, never exceptions."""
    for x in (math.nan, math.inf, -math.inf):
        for fmt in (fmt_us, fmt_age_ms, fmt_percent, fmt_rate, fmt_uptime):
            assert isinstance(fmt(x), str)
        assert isinstance(fmt_percentile(x, 1000.0), str)
    for opt in (fmt_us, fmt_age_ms, fmt_percent, fmt_rate):
        assert opt(None) == "-"
    assert fmt_age_ms(-5.0) == "0 ms"  # a source timestamp in the future
    assert fmt_age_ms(math.inf) == "never"
    assert fmt_uptime(math.nan) == "-"
    assert fmt_value(math.inf) == "inf" and fmt_value(-math.inf) == "-inf"


def test_cpu_column_shows_the_affinity() -> None:
    assert fmt_cpus(None) == "-"
    assert fmt_cpus("all") == "all"
    assert fmt_cpus((1,)) == "1"
    assert fmt_cpus((0, 2)) == "0,2"
    assert fmt_cpus((0, 1, 2, 3, 6)) == "0-3,6"
    scan, drv = snapshot().processes
    col = PROCESS_PANEL.column("cpu")
    assert col.cell(scan) == "1"
    assert col.cell(replace(scan, pinned=False, affinity=(0, 1))) == "all"
    assert col.cell(drv) == "-"  # gone: the OS cannot say


def test_quality_sorts_worst_first() -> None:
    rows = select_rows(SIGNAL_PANEL, snapshot(), sort_key="quality")
    assert [s.quality for s in rows] == ["bad", "uncertain", "good", "good"]


def test_detail_fields() -> None:
    d = SignalDetail(name="tank.sp", type="float", unit="m", owner="", writable=True,
                     value=math.nan, quality="bad", substatus="writer_died",
                     source_age_ms=1500.0, write_age_ms=20.0, writer_pid=42,
                     writer_role="driver:plc", minimum=0.0, maximum=5.0,
                     description="Level setpoint")
    lines = dict(render_detail(d))
    assert lines["Signal"] == "tank.sp  (float, m, writable)"
    assert lines["Description"] == "Level setpoint"
    assert lines["Value"] == "nan m"
    assert lines["Quality"] == "bad (writer_died)"
    assert lines["Limits"] == "0 .. 5"
    assert lines["Last writer"] == "driver:plc (pid 42)"
    assert lines["Age"] == "source 1.5 s, written 20 ms ago"
    bare = dict(render_detail(replace(d, minimum=None, maximum=None, writer_role=None,
                                      substatus="none", description="", writable=False)))
    assert bare["Limits"] == "-" and bare["Description"] == "-"
    assert bare["Last writer"] == "pid 42" and bare["Quality"] == "bad"
    assert bare["Signal"].endswith("read-only)")


def test_registry_is_consistent() -> None:
    assert set(PANELS) == {"processes", "signals"}
    for panel in PANELS.values():
        keys = [c.key for c in panel.columns]
        assert len(keys) == len(set(keys))
        assert all(c.width > 0 and c.title for c in panel.columns)
        assert panel.column(keys[0]) is panel.columns[0]
        with pytest.raises(KeyError):
            panel.column("nope")
    assert {m.key for m in HEADER_METERS} >= {"instance", "uptime", "period", "exec", "wake",
                                              "overruns", "journal"}


def test_cells() -> None:
    snap = snapshot()
    scan, drv = snap.processes
    cells = {c.key: c.cell(drv) for c in PROCESS_PANEL.columns}
    assert cells["state"] == "degraded?"  # the pid is gone
    assert cells["cpu_percent"] == "-"
    assert cells["restarts"] == "3"
    assert cells["heartbeat"] == "4.2 s"
    assert cells["counters"] == "2 17"
    assert cells["link"] == "up"  # driver counter 0 (ConnState) by name
    assert PROCESS_PANEL.column("link").cell(scan) == "-"
    assert PROCESS_PANEL.column("rss").cell(scan) == "40.0M"
    level = snap.signals[0]
    assert [c.cell(level) for c in SIGNAL_PANEL.columns] == [
        "tank.level", "1.5", "m", "good", "2 ms", "float", "scan", ""]
    cut = level._replace(quality="bad", substatus="not_connected")
    assert SIGNAL_PANEL.column("substatus").cell(cut) == "not_connected"


def test_filter_semantics() -> None:
    assert matches("", "anything")
    assert matches("tank", "plant.Tank.level")  # substring, case-insensitive
    assert not matches("tank", "pump.run")
    assert matches("tank.*", "Tank.temp")  # glob when it has * ? [
    assert not matches("tank.*", "big.tank.level")
    assert matches("pump.[rs]*", "pump.starts")


def test_select_rows_filters_and_sorts() -> None:
    snap = snapshot()
    names = [s.name for s in select_rows(SIGNAL_PANEL, snap, pattern="tank")]
    assert names == ["tank.level", "Tank.temp"]
    by_value = select_rows(SIGNAL_PANEL, snap, sort_key="value")
    assert [s.name for s in by_value] == ["Tank.temp", "pump.run", "tank.level",
                                          "pump.starts"]
    by_age = select_rows(SIGNAL_PANEL, snap, sort_key="age", reverse=True)
    assert by_age[0].name == "pump.starts"
    by_name = select_rows(SIGNAL_PANEL, snap, sort_key="name")
    assert [s.name for s in by_name] == ["Tank.temp", "pump.run", "pump.starts",
                                         "tank.level"]
    procs = select_rows(PROCESS_PANEL, snap, sort_key="cpu_percent")
    assert [p.role for p in procs] == ["driver:plc1", "scan"]  # unknown sorts first


def test_render_text() -> None:
    text = render_text(snapshot(), pattern="pump")
    lines = text.splitlines()
    assert lines[0].split() == ["Instance", "demo"]
    assert "Uptime    01:02:05" in text
    assert "p99 61.0 us  p99.9 >1 ms" in text
    assert "Overruns  2 (skipped 1)" in text
    assert "lag 10" in text
    assert "Processes (2)" in text
    assert "Signals (2)" in text
    assert "pump.starts" in text and "tank.level" not in text
    header = next(line for line in lines if line.startswith("NAME"))
    assert header.split() == ["NAME", "VALUE", "UNIT", "QUALITY", "AGE", "TYPE", "OWNER", "WHY"]


def test_snapshot_json_shape() -> None:
    data = snapshot().to_json()
    assert set(data) >= {"instance", "scan", "processes", "signals", "journal"}
    assert data["scan"]["wake_us"]["p999"] is None
    assert data["processes"][1]["cpu_percent"] is None
    assert data["signals"]["pump.run"] == {"value": True, "quality": "good",
                                           "substatus": "none", "age_ms": 900.0,
                                           "unit": "", "type": "bool", "owner": "scan",
                                           "writable": False}
    assert data["journal"] == {"head": 5000, "capacity": 1 << 16, "producer_drops": 0,
                               "rate_per_s": 2500.0, "lag": 10,
                               "consumers": [{"role": "sink:mqtt", "position": 4990,
                                              "lag": 10}]}


def test_public_exports() -> None:
    assert sorted(top.__all__) == sorted(set(top.__all__))
    for name in top.__all__:
        assert hasattr(top, name), name


def test_spark_label_names_the_full_bar() -> None:
    snap = snapshot()  # history (10, 20, 40)
    assert spark_label(snap) == "p99/refresh 0..40.0 us"
    over = replace(snap, scan=scan_view(history=(10.0, math.inf)))
    assert spark_label(over) == "p99/refresh 0..>1 ms"
    assert "▁█" in render_text(over)  # 10 us against the 1 ms top; beyond it: full
    assert spark_label(replace(snap, scan=scan_view(history=()))) == "p99/refresh 0..0.00 us"
