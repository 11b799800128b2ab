"""petra-top: a live monitor of a running Petra instance.

Sampling (:class:`Sampler`, reading the shared segment into a plain :class:`Snapshot`)
is kept apart from rendering (the panel and column registry in ``_columns``, used by
the textual UI and by the ``--once`` text and JSON output). :class:`InstanceSource`
follows an instance across restarts; :class:`SignalWriter` is the operator's write
action, through the segment's checked write path.
"""

from petra.top._columns import (
    DETAIL_FIELDS,
    HEADER_METERS,
    PANELS,
    PROCESS_PANEL,
    SIGNAL_PANEL,
    Column,
    Meter,
    Panel,
    render_detail,
    render_text,
    select_rows,
    spark_label,
    spark_values,
    sparkline,
)
from petra.top._main import main
from petra.top._sampler import SINK_CURSOR_COUNTER, Clock, Sampler, SignalMeta, SystemClock
from petra.top._snapshot import (
    JSON_SCHEMA_VERSION,
    AlarmsView,
    ConsumerLag,
    JournalView,
    ProcessView,
    ScanView,
    SignalDetail,
    SignalView,
    Snapshot,
)
from petra.top._source import InstanceSource
from petra.top._write import SignalWriter

__all__ = [
    "DETAIL_FIELDS",
    "HEADER_METERS",
    "JSON_SCHEMA_VERSION",
    "PANELS",
    "PROCESS_PANEL",
    "SIGNAL_PANEL",
    "SINK_CURSOR_COUNTER",
    "AlarmsView",
    "Clock",
    "Column",
    "ConsumerLag",
    "InstanceSource",
    "JournalView",
    "Meter",
    "Panel",
    "ProcessView",
    "Sampler",
    "ScanView",
    "SignalDetail",
    "SignalMeta",
    "SignalView",
    "SignalWriter",
    "Snapshot",
    "SystemClock",
    "main",
    "render_detail",
    "render_text",
    "select_rows",
    "spark_label",
    "spark_values",
    "sparkline",
]
