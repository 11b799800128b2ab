"""The shared segment: signal table, change journal, scan stats and heartbeats.

Public surface of the package; the implementation lives in the ``_*.py`` modules.
See ``docs/api.md`` for a walk-through and ``docs/design/shared-segment.md`` for the
layout and protocols.
"""

from petra.shm._journal import JournalBatch, JournalConsumer
from petra.shm._monitor import (
    Heartbeat,
    HeartbeatHandle,
    ScanStats,
    StatsWriter,
    add_restart,
    hist_percentile_us,
    read_heartbeats,
    read_stats,
    release_heartbeat,
)
from petra.shm._retain import RetainArea, RetainSnapshot, retain_name, unlink_retain
from petra.shm._segment import (
    BatchRead,
    BatchWrite,
    LockStats,
    RepairReport,
    Segment,
    SegmentInfo,
    SignalInfo,
    decode_bits,
    list_instances,
    segment_name,
    unlink_instance,
)
from petra.shm._table import SignalArrays
from petra.types import (
    ProcessState,
    Quality,
    Sample,
    SignalDef,
    SignalType,
    Substatus,
    Value,
    validate_instance_name,
    validate_signal_name,
)

__all__ = [
    "BatchRead",
    "BatchWrite",
    "Heartbeat",
    "HeartbeatHandle",
    "JournalBatch",
    "JournalConsumer",
    "LockStats",
    "ProcessState",
    "Quality",
    "RepairReport",
    "RetainArea",
    "RetainSnapshot",
    "Sample",
    "ScanStats",
    "Segment",
    "SegmentInfo",
    "SignalArrays",
    "SignalDef",
    "SignalInfo",
    "SignalType",
    "StatsWriter",
    "Substatus",
    "Value",
    "add_restart",
    "decode_bits",
    "hist_percentile_us",
    "list_instances",
    "read_heartbeats",
    "read_stats",
    "release_heartbeat",
    "retain_name",
    "segment_name",
    "unlink_instance",
    "unlink_retain",
    "validate_instance_name",
    "validate_signal_name",
]
