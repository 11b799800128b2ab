"""petra-top: a live, read-only monitor of a running Petra instance.

Sampling (:class:`Sampler`, reading the shared segment into a plain :class:`Snapshot`)
is kept apart from rendering (the panel and column registry in ``_columns``, used by
the textual UI and by the ``--once`` text and JSON output).
"""

from petra.top._columns import (
    HEADER_METERS,
    PANELS,
    PROCESS_PANEL,
    SIGNAL_PANEL,
    Column,
    Meter,
    Panel,
    render_text,
    select_rows,
    sparkline,
)
from petra.top._main import main
from petra.top._sampler import SINK_CURSOR_COUNTER, Clock, Sampler, SystemClock
from petra.top._snapshot import (
    JSON_SCHEMA_VERSION,
    ConsumerLag,
    JournalView,
    ProcessView,
    ScanView,
    SignalView,
    Snapshot,
)

__all__ = [
    "HEADER_METERS",
    "JSON_SCHEMA_VERSION",
    "PANELS",
    "PROCESS_PANEL",
    "SIGNAL_PANEL",
    "SINK_CURSOR_COUNTER",
    "Clock",
    "Column",
    "ConsumerLag",
    "JournalView",
    "Meter",
    "Panel",
    "ProcessView",
    "Sampler",
    "ScanView",
    "SignalView",
    "Snapshot",
    "SystemClock",
    "main",
    "render_text",
    "select_rows",
    "sparkline",
]
