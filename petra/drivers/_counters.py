"""What the eight heartbeat counters of a driver or sink process mean.

Each process owns one heartbeat record in the segment with eight u64 counters
(``HeartbeatHandle.set_counter``). petra-top, ``/metrics`` and the tests read them with
``read_heartbeats``; this module is the one place that says which index is which.

Roles: drivers register as ``driver:<name>``, the MQTT publisher as ``sink:mqtt-out``.
"""

from __future__ import annotations

import enum


class ConnState(enum.IntEnum):
    """Connection state machine of a driver or sink (counter 0).

    DISCONNECTED -> CONNECTING -> UP; a failure goes to BACKOFF, which waits (never
    zero: exponential with jitter) and goes back to CONNECTING."""

    DISCONNECTED = 0
    CONNECTING = 1
    UP = 2
    BACKOFF = 3


class DriverCounter(enum.IntEnum):
    """Counter indices of a field driver's heartbeat record."""

    STATE = 0  # ConnState
    READS = 1  # successful read requests (Modbus/S7) or accepted messages (MQTT in)
    WRITES = 2  # successful device writes
    ERRORS = 3  # failed requests: timeouts, exception replies, connection losses
    RECONNECTS = 4  # connection attempts after the first
    LAST_RTT_US = 5  # round-trip time of the last request, microseconds
    REJECTED = 6  # malformed/unexpected replies or bad payloads, never written
    WRITE_FAILURES = 7  # device writes given up after the retry policy


class SinkCounter(enum.IntEnum):
    """Counter indices of the mqtt-out sink's heartbeat record.

    Index 7 is the sink's journal cursor for every ``sink:*`` role: petra-top shows a
    sink's lag as journal head minus this position (``petra.top.SINK_CURSOR_COUNTER``).
    """

    STATE = 0  # ConnState
    PUBLISHED = 1  # messages handed to the broker connection
    DROPPED = 2  # messages dropped: full offline queue, or journal entries lost
    ERRORS = 3  # publish errors and connection losses
    RECONNECTS = 4  # connection attempts after the first
    QUEUED = 5  # messages waiting (offline queue plus in-flight window)
    REJECTED = 6  # commands refused (unknown signal, not writable, bad request)
    JOURNAL_POSITION = 7  # the sink's journal cursor (next position it will read)
