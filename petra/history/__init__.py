"""History: every recorded sample goes to a local write-ahead log, then to Parquet files
on the box and to ClickHouse; nothing is lost or written twice across crashes.

Pieces (each its own module): :class:`Recorder` (which journal entries become
samples), :class:`Wal` (the log), :class:`ParquetDestination` and
:class:`ClickHouseDestination`, :class:`HistorySink` (the process tying them together)
and :func:`query` (reading the Parquet files back). pyarrow and clickhouse-connect are
imported only where used, so importing this package stays cheap.
"""

from petra.history._recorder import Recorder
from petra.history._runner import main, run_standalone
from petra.history._samples import Samples, SignalTable
from petra.history._status import Alarm, load_epoch, read_status, resolve_dir, write_status
from petra.history._wal import (
    Record,
    Recovery,
    Wal,
    WalError,
    WalFullError,
    WalRead,
    crc32c,
    read_segment,
    scan_segment,
)

__all__ = [
    "Alarm",
    "Record",
    "Recorder",
    "Recovery",
    "Samples",
    "SignalTable",
    "Wal",
    "WalError",
    "WalFullError",
    "WalRead",
    "crc32c",
    "load_epoch",
    "main",
    "read_segment",
    "read_status",
    "resolve_dir",
    "run_standalone",
    "scan_segment",
    "write_status",
]
