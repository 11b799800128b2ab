"""The interactive petra-top: a textual application over the column registry.

The app never reads the segment itself: every ``interval`` it asks the sampler for a
:class:`Snapshot` and redraws the header, the sparkline and the two tables from the
panels declared in ``_columns.py``. Keys: ``/`` filter signals by name (substring, or
a glob with ``* ? [``), ``Esc`` clear the filter, ``s`` sort by the next column,
``r`` reverse the sort, ``p`` pause, ``q`` quit.

A signal whose value changed since the previous refresh is drawn highlighted for
that refresh. Tables are rebuilt on each refresh (simple and cheap at display sizes);
the signals table shows at most :data:`MAX_SIGNAL_ROWS` rows, filter to see others.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import DataTable, Footer, Input, Sparkline, Static

from petra.top._columns import (
    HEADER_METERS,
    PROCESS_PANEL,
    SIGNAL_PANEL,
    Panel,
    select_rows,
)
from petra.top._snapshot import SignalView, Snapshot

MAX_SIGNAL_ROWS = 2000
CHANGED_STYLE = "bold black on yellow"
STALE_STYLE = "red"
BAD_QUALITY_STYLE = "red"


class TopApp(App[None]):
    """petra-top's terminal UI."""

    TITLE = "petra-top"
    CSS = """
    #header { height: auto; padding: 0 1; }
    #spark { height: 2; margin: 0 1; }
    .title { height: 1; padding: 0 1; background: $boost; text-style: bold; }
    #processes { height: auto; max-height: 12; }
    #signals { height: 1fr; }
    #filter { display: none; }
    #filter.visible { display: block; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("slash", "filter", "Filter"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("s", "sort", "Sort"),
        Binding("r", "reverse", "Reverse"),
        Binding("p", "pause", "Pause"),
    ]

    def __init__(self, sample: Callable[[], Snapshot], *, interval_s: float = 1.0,
                 pattern: str = "", present: Callable[[], bool] | None = None) -> None:
        """``sample`` returns a fresh snapshot (normally ``Sampler.sample``);
        ``present`` says whether the instance's segment still exists."""
        super().__init__()
        self._sample = sample
        self._present = present
        self._interval = interval_s
        self.pattern = pattern
        self.paused = False
        self.sort_index: int | None = None  # into SIGNAL_PANEL.columns; None: slot order
        self.reverse = False
        self.snapshot: Snapshot | None = None
        self._prev_values: dict[str, object] = {}
        self.changed: set[str] = set()
        self.gone = False

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield Static(id="header")
        yield Sparkline([], id="spark", summary_function=max)
        with Vertical():
            yield Static(PROCESS_PANEL.title, id="processes-title", classes="title")
            yield DataTable(id="processes", cursor_type="row", zebra_stripes=True)
            yield Static(SIGNAL_PANEL.title, id="signals-title", classes="title")
            yield Input(placeholder="filter signals: substring or glob (* ? [])",
                        id="filter")
            yield DataTable(id="signals", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        for panel, table_id in ((PROCESS_PANEL, "#processes"), (SIGNAL_PANEL, "#signals")):
            table = self.query_one(table_id, DataTable)
            for col in panel.columns:
                table.add_column(col.title, width=col.width, key=col.key)
        self.refresh_snapshot()
        self.set_interval(self._interval, self.refresh_snapshot)
        self.query_one("#signals", DataTable).focus()

    # ------------------------------------------------------------------ data
    def refresh_snapshot(self) -> None:
        """Take a sample and redraw (nothing while paused)."""
        if self.paused:
            return
        snap = self._sample()
        if self._present is not None:
            self.gone = not self._present()
        values: dict[str, object] = {s.name: s.value for s in snap.signals}
        self.changed = {n for n, v in values.items()
                        if n in self._prev_values and self._prev_values[n] != v}
        self._prev_values = values
        self.snapshot = snap
        self.redraw()

    def redraw(self) -> None:
        snap = self.snapshot
        if snap is None:
            return
        self._draw_header(snap)
        self.query_one("#spark", Sparkline).data = list(snap.scan.history) or [0.0]
        self._fill(PROCESS_PANEL, "#processes", list(snap.processes), self._process_style)
        rows = self.signal_rows()
        shown = rows[:MAX_SIGNAL_ROWS]
        self._fill(SIGNAL_PANEL, "#signals", shown, self._signal_style)
        self.query_one("#signals-title", Static).update(self._signals_title(len(rows),
                                                                             len(shown)))
        self.query_one("#processes-title", Static).update(
            f"{PROCESS_PANEL.title} ({len(snap.processes)})")

    def signal_rows(self) -> list[SignalView]:
        """The signals the table shows, filtered and sorted as the keys set them."""
        if self.snapshot is None:
            return []
        key = None if self.sort_index is None else SIGNAL_PANEL.columns[self.sort_index].key
        return select_rows(SIGNAL_PANEL, self.snapshot, pattern=self.pattern,
                           sort_key=key, reverse=self.reverse)

    def _signals_title(self, total: int, shown: int) -> str:
        parts = [f"{SIGNAL_PANEL.title} ({total}"
                 + (f", showing {shown}" if shown < total else "") + ")"]
        if self.pattern:
            parts.append(f"filter '{self.pattern}'")
        if self.sort_index is not None:
            col = SIGNAL_PANEL.columns[self.sort_index]
            parts.append(f"sort {col.title}{' desc' if self.reverse else ''}")
        if self.paused:
            parts.append("PAUSED")
        return "  |  ".join(parts)

    def _draw_header(self, snap: Snapshot) -> None:
        width = max(len(m.label) for m in HEADER_METERS)
        text = Text()
        for i, m in enumerate(HEADER_METERS):
            if i:
                text.append("\n")
            text.append(m.label.ljust(width) + "  ", style="bold")
            text.append(m.fmt(m.get(snap)))
        if self.paused:
            text.append("   [PAUSED]", style="bold reverse")
        if self.gone:
            text.append("\nsegment removed: the instance has stopped", style="bold red")
        self.query_one("#header", Static).update(text)

    def _process_style(self, row: Any, key: str) -> str:
        if key == "state" and (row.state not in ("running", "starting") or not row.alive):
            return STALE_STYLE
        return ""

    def _signal_style(self, row: Any, key: str) -> str:
        if key == "value" and row.name in self.changed:
            return CHANGED_STYLE
        if key == "quality" and row.quality != "good":
            return BAD_QUALITY_STYLE
        return ""

    def _fill(self, panel: Panel[Any], table_id: str, rows: list[Any],
              style: Callable[[Any, str], str]) -> None:
        table = self.query_one(table_id, DataTable)
        cursor_key = None
        if table.row_count and 0 <= table.cursor_row < table.row_count:
            cursor_key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        table.clear()
        target = 0
        for i, row in enumerate(rows):
            key = panel.row_key(row)
            if key == cursor_key:
                target = i
            cells = [Text(col.cell(row), style=style(row, col.key),
                          justify="right" if col.align == "right" else "left")
                     for col in panel.columns]
            table.add_row(*cells, key=key)
        if rows:
            table.move_cursor(row=target, animate=False)

    # ------------------------------------------------------------------ keys
    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("visible")
        box.value = self.pattern
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.remove_class("visible")
        self.pattern = ""
        self.redraw()
        self.query_one("#signals", DataTable).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.pattern = event.value
        self.redraw()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.pattern = event.value
        event.input.remove_class("visible")
        self.query_one("#signals", DataTable).focus()
        self.redraw()

    def action_sort(self) -> None:
        """Cycle: slot order, then each column in turn."""
        n = len(SIGNAL_PANEL.columns)
        self.sort_index = 0 if self.sort_index is None else self.sort_index + 1
        if self.sort_index >= n:
            self.sort_index = None
        self.redraw()

    def action_reverse(self) -> None:
        self.reverse = not self.reverse
        self.redraw()

    def action_pause(self) -> None:
        self.paused = not self.paused
        self.redraw()
