"""The interactive petra-top: a textual application over the column registry.

The app never reads the segment itself: every ``interval`` it asks its source for a
:class:`Snapshot` (and, for the detail pane, a :class:`SignalDetail` of the signal
under the cursor) and redraws the header, the sparkline, the two tables and the pane
from the registry in ``_columns.py``. Writes go to a writer callable (normally
:class:`SignalWriter`, the segment's checked write path).

Keys: ``/`` filter signals by name (substring, or a glob with ``* ? [``), ``Esc`` clear
the filter, ``s`` sort by the next column, ``a`` sort by age (oldest first), ``u`` sort
by quality (worst first), ``r`` reverse, ``d`` show/hide the detail pane, ``w`` write
the selected signal (writable ones only: type a value, Enter, then ``y`` to confirm),
``p`` pause, ``q`` quit.

Nothing the source hands over may crash the view: non-finite numbers are formatted
(``_columns.py``), the latency line is drawn from finite data scaled from zero (an
interval beyond the histogram is a full bar; textual's Sparkline both rejected inf
and scaled from the minimum, so a flat line of overflows looked like silence), and a
sample that fails (the segment unreadable) is shown in the header while the last good
snapshot stays up.

A signal whose value changed since the previous refresh is drawn highlighted for
that refresh. Tables are rebuilt on each refresh (simple and cheap at display sizes);
the signals table shows at most :data:`MAX_SIGNAL_ROWS` rows, filter to see others.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any, ClassVar

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.css.query import NoMatches
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Input, Static

from petra.top._columns import (
    HEADER_METERS,
    PROCESS_PANEL,
    SIGNAL_PANEL,
    Panel,
    fmt_limit,
    fmt_value,
    render_detail,
    select_rows,
    spark_label,
    spark_text,
)
from petra.top._snapshot import SignalDetail, SignalView, Snapshot

log = logging.getLogger("petra.top")

MAX_SIGNAL_ROWS = 2000
CHANGED_STYLE = "bold black on yellow"
STALE_STYLE = "red"
BAD_QUALITY_STYLE = "red"

Sample = Callable[[], Snapshot]
Detail = Callable[[str], SignalDetail]
Write = Callable[[str, str], object]


class WriteScreen(ModalScreen[str | None]):
    """Ask for a value, then for a confirmation; dismissed with the text or None."""

    CSS = """
    WriteScreen { align: center middle; }
    #dialog { width: 70; height: auto; padding: 1 2; border: thick $accent;
              background: $surface; }
    #confirm { height: auto; margin-top: 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("y", "confirm", "Yes", show=False),
        Binding("n", "cancel", "No", show=False),
    ]

    def __init__(self, signal: SignalView, check: Callable[[str], str | None],
                 limits: str = "") -> None:
        """``check`` returns an error message for text that is no value, else None;
        ``limits`` is shown in the prompt (``0 .. 5``) when known."""
        super().__init__()
        self.signal = signal
        self._check = check
        self._limits = limits
        self.text: str | None = None

    def compose(self) -> ComposeResult:
        s = self.signal
        unit = f" {s.unit}" if s.unit else ""
        about = ", ".join(x for x in (s.type, s.unit, self._limits) if x)
        with Vertical(id="dialog"):
            yield Static(f"Write {s.name} ({about}), now {fmt_value(s.value)}{unit}",
                         markup=False)
            yield Input(placeholder="new value, e.g. 2.5 or true", id="value")
            yield Static("Enter: next   Esc: cancel", id="confirm", markup=False)

    def on_mount(self) -> None:
        self.query_one("#value", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        problem = self._check(event.value)
        confirm = self.query_one("#confirm", Static)
        if problem:
            confirm.update(problem)
            return
        self.text = event.value.strip()
        event.input.disabled = True
        confirm.update(f"Write {self.signal.name} = {self.text}?  y: yes   n/Esc: no")
        self.focus()

    def action_confirm(self) -> None:
        if self.text is not None:
            self.dismiss(self.text)

    def action_cancel(self) -> None:
        self.dismiss(None)


class TopApp(App[None]):
    """petra-top's terminal UI."""

    TITLE = "petra-top"
    CSS = """
    #header { height: auto; padding: 0 1; }
    #spark { height: 1; padding: 0 1; }
    .title { height: 1; padding: 0 1; background: $boost; text-style: bold; }
    #processes { height: auto; max-height: 12; }
    #signals { height: 1fr; }
    #detail { height: auto; padding: 0 1; border-top: solid $accent; }
    #detail.hidden { display: none; }
    #filter { display: none; }
    #filter.visible { display: block; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("slash", "filter", "Filter"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("s", "sort", "Sort"),
        Binding("a", "sort_age", "Age"),
        Binding("u", "sort_quality", "Quality"),
        Binding("r", "reverse", "Reverse"),
        Binding("d", "toggle_detail", "Detail"),
        Binding("w", "write", "Write"),
        Binding("p", "pause", "Pause"),
    ]

    def __init__(self, sample: Sample, *, interval_s: float = 1.0, pattern: str = "",
                 present: Callable[[], bool] | None = None, detail: Detail | None = None,
                 write: Write | None = None, check: Callable[[str, str], str | None] | None
                 = None) -> None:
        """``sample`` returns a fresh snapshot (normally the source's ``sample``);
        ``present`` says whether the instance's segment still exists; ``detail`` reads
        one signal in full; ``write(name, text)`` writes a value through the checked
        path (raising on refusal) and ``check(name, text)`` says what is wrong with a
        text before asking for confirmation. Without ``write`` the view is read-only."""
        super().__init__()
        self._sample = sample
        self._present = present
        self._detail = detail
        self._write = write
        self._check = check
        self._interval = interval_s
        self.pattern = pattern
        self.paused = False
        self.sort_index: int | None = None  # into SIGNAL_PANEL.columns; None: slot order
        self.reverse = False
        self.snapshot: Snapshot | None = None
        self._prev_values: dict[str, object] = {}
        self.changed: set[str] = set()
        self.gone = False
        self.error: str | None = None
        """Why the last sample failed (shown in the header), or None."""
        self.show_detail = True
        self.last_write: str | None = None
        """What the last write did, as the notification said it."""

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield Static(id="header")
        yield Static(id="spark")
        with Vertical():
            yield Static(PROCESS_PANEL.title, id="processes-title", classes="title")
            yield DataTable(id="processes", cursor_type="row", zebra_stripes=True)
            yield Static(SIGNAL_PANEL.title, id="signals-title", classes="title")
            yield Input(placeholder="filter signals: substring or glob (* ? [])",
                        id="filter")
            yield DataTable(id="signals", cursor_type="row", zebra_stripes=True)
            yield Static(id="detail")
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
        try:
            snap = self._sample()
            self.error = None
        except Exception as exc:  # shown; the view outlives a bad read
            log.debug("event=sample_failed error=%r", str(exc))
            self.error = f"{type(exc).__name__}: {exc}"
            self.redraw()
            return
        if self._present is not None:
            self.gone = not self._present()
        prev = self.snapshot
        if prev is not None and snap.uptime_s + 1.0 < prev.uptime_s:
            self._prev_values = {}  # a new segment: nothing "changed" against the old one
            self.notify(f"instance {snap.instance} restarted: showing the new one",
                        markup=False)
        values: dict[str, object] = {s.name: s.value for s in snap.signals}
        self.changed = {n for n, v in values.items()
                        if n in self._prev_values and not _same(self._prev_values[n], v)}
        self._prev_values = values
        self.snapshot = snap
        self.redraw()

    def redraw(self) -> None:
        """Draw the current snapshot; nothing once the widgets are gone (a timer tick
        or a table event can still arrive while the app shuts down)."""
        try:
            self._redraw()
        except NoMatches:
            log.debug("event=redraw_skipped reason='widgets not mounted'")

    def _redraw(self) -> None:
        snap = self.snapshot
        if snap is None:
            self._draw_error_only()
            return
        self._draw_header(snap)
        self._draw_spark(snap)
        self._fill(PROCESS_PANEL, "#processes", list(snap.processes), self._process_style)
        rows = self.signal_rows()
        shown = rows[:MAX_SIGNAL_ROWS]
        self._fill(SIGNAL_PANEL, "#signals", shown, self._signal_style)
        self.query_one("#signals-title", Static).update(self._signals_title(len(rows),
                                                                             len(shown)))
        self.query_one("#processes-title", Static).update(
            f"{PROCESS_PANEL.title} ({len(snap.processes)})")
        self._draw_detail()

    def signal_rows(self) -> list[SignalView]:
        """The signals the table shows, filtered and sorted as the keys set them."""
        if self.snapshot is None:
            return []
        key = None if self.sort_index is None else SIGNAL_PANEL.columns[self.sort_index].key
        return select_rows(SIGNAL_PANEL, self.snapshot, pattern=self.pattern,
                           sort_key=key, reverse=self.reverse)

    def selected_signal(self) -> SignalView | None:
        """The signal under the cursor of the signals table."""
        table = self.query_one("#signals", DataTable)
        if self.snapshot is None or not table.row_count:
            return None
        if not 0 <= table.cursor_row < table.row_count:
            return None
        name = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return next((s for s in self.snapshot.signals if s.name == name), None)

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
        if self.error:
            text.append(f"\ncannot read the segment: {self.error}", style="bold red")
        self.query_one("#header", Static).update(text)

    def _draw_spark(self, snap: Snapshot) -> None:
        """Wake-up p99 of each refresh interval, bars from zero to the largest (an
        interval beyond the histogram is a full bar and the scale says so)."""
        spark = self.query_one("#spark", Static)
        label = spark_label(snap)
        width = (spark.size.width or self.size.width) - len(label) - 4
        bars = spark_text(snap, max(8, width))
        text = Text()
        text.append(label + "  ", style="bold")
        text.append(bars, style="green")
        spark.update(text)

    def _draw_error_only(self) -> None:
        if self.error:
            self.query_one("#header", Static).update(
                Text(f"cannot read the segment: {self.error}", style="bold red"))

    def _draw_detail(self) -> None:
        pane = self.query_one("#detail", Static)
        pane.set_class(not self.show_detail, "hidden")
        if not self.show_detail or self.paused:
            return  # paused: the pane stays as it was, like everything else
        sig = self.selected_signal()
        if sig is None:
            pane.update(Text("no signal selected", style="dim"))
            return
        if self._detail is None:
            pane.update(Text(f"{sig.name}: no detail source", style="dim"))
            return
        try:
            detail = self._detail(sig.name)
        except Exception as exc:  # a vanished signal must not end the view
            pane.update(Text(f"{sig.name}: {exc}", style="red"))
            return
        lines = render_detail(detail)
        width = max(len(label) for label, _ in lines)
        text = Text()
        for i, (label, value) in enumerate(lines):
            if i:
                text.append("\n")
            text.append(label.ljust(width) + "  ", style="bold")
            text.append(value)
        pane.update(text)

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
    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "signals":
            with contextlib.suppress(NoMatches):  # shutting down: no pane to draw
                self._draw_detail()

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
        if event.input.id == "filter":
            self.pattern = event.value
            self.redraw()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "filter":
            return
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

    def _sort_by(self, key: str, *, reverse: bool) -> None:
        self.sort_index = [c.key for c in SIGNAL_PANEL.columns].index(key)
        self.reverse = reverse
        self.redraw()

    def action_sort_age(self) -> None:
        """Oldest value first: what stopped updating."""
        self._sort_by("age", reverse=True)

    def action_sort_quality(self) -> None:
        """Worst quality first: bad, uncertain, good."""
        self._sort_by("quality", reverse=False)

    def action_reverse(self) -> None:
        self.reverse = not self.reverse
        self.redraw()

    def action_toggle_detail(self) -> None:
        self.show_detail = not self.show_detail
        with contextlib.suppress(NoMatches):
            self._draw_detail()

    def action_pause(self) -> None:
        self.paused = not self.paused
        self.redraw()

    def action_write(self) -> None:
        sig = self.selected_signal()
        if sig is None:
            return
        if self._write is None:
            self._tell("this view is read-only (no writer)", error=True)
            return
        if not sig.writable:
            self._tell(f"{sig.name} is read-only: only signals marked writable: true "
                       "in the plant can be written", error=True)
            return
        name = sig.name

        def check(text: str) -> str | None:
            return None if self._check is None else self._check(name, text)

        def done(text: str | None) -> None:
            if text is not None:
                self.do_write(name, text)

        limits = ""
        if self._detail is not None:
            with contextlib.suppress(Exception):  # the prompt only loses its limits
                d = self._detail(name)
                if d.minimum is not None or d.maximum is not None:
                    limits = f"{fmt_limit(d.minimum)} .. {fmt_limit(d.maximum)}"
        self.push_screen(WriteScreen(sig, check, limits), done)

    def do_write(self, name: str, text: str) -> None:
        """Write through the writer and say how it went (a refusal is a message)."""
        if self._write is None:
            return
        try:
            value = self._write(name, text)
        except Exception as exc:  # every refusal is shown, never raised
            self._tell(f"not written: {exc}", error=True)
            return
        self._tell(f"{name} = {fmt_value(value)} written")
        self.refresh_snapshot()

    def _tell(self, message: str, *, error: bool = False) -> None:
        self.last_write = message
        self.notify(message, severity="error" if error else "information", markup=False)


def _same(a: object, b: object) -> bool:
    """Equality that counts NaN as equal to NaN (a NaN that stays NaN did not change)."""
    return a == b or (a != a and b != b)  # noqa: PLR0124  # the NaN test
