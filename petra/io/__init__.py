"""The connected-process layer: what every driver and sink process is built on.

A connected process owns one connection (a device, a broker, a database) and one
heartbeat record. This package gives it the lifecycle and state machine
(:class:`ConnectedProcess`), backoff and poll timing, telemetry counters, a
rate-limited log, the MQTT broker link (:class:`MqttLink`), bounded parsers for external
input (:func:`parse_number`, :func:`parse_json`), the runner that attaches the segment
and runs the process (:func:`run_process`), and a durable request spool
(:class:`RequestSpool`) through which front ends hand requests to a process. Drivers and
sinks build on it and never import each other.
"""

from petra.io._input import InputError, parse_json, parse_number
from petra.io._mqtt_link import MqttLink, read_password
from petra.io._process import ConnectedProcess, describe
from petra.io._runner import Runnable, run_process, set_cpus, setup_logging
from petra.io._spool import Request, RequestSpool
from petra.io._tasks import cancel_and_wait
from petra.io._telemetry import RATE_LOG_MAX_KEYS, RateLimitedLog, Telemetry
from petra.io._timing import Backoff, Clock, IoLimits, next_due, wait_or_stop

__all__ = [
    "RATE_LOG_MAX_KEYS",
    "Backoff",
    "Clock",
    "ConnectedProcess",
    "InputError",
    "IoLimits",
    "MqttLink",
    "RateLimitedLog",
    "Request",
    "RequestSpool",
    "Runnable",
    "Telemetry",
    "cancel_and_wait",
    "describe",
    "next_due",
    "parse_json",
    "parse_number",
    "read_password",
    "run_process",
    "set_cpus",
    "setup_logging",
    "wait_or_stop",
]
