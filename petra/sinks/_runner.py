"""Running one sink as its own process against a running instance.

``main(plant_path, instance, name)`` is what ``petra sink`` (and so the supervisor)
calls; ``run_standalone(cfg, instance)`` runs a sink from its parsed config section,
for tests and tools (picklable, so also a ``multiprocessing`` target).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from petra.config._drivers import MqttConfig
from petra.errors import ConfigError, PetraError
from petra.io import run_process, setup_logging
from petra.security import AuditLog, plant_audit_log
from petra.types import SINK_MQTT_OUT, sink_role

log = logging.getLogger("petra.sinks")

SINK_NAMES = (SINK_MQTT_OUT,)


def run_standalone(cfg: MqttConfig, instance: str, cpus: Sequence[int] | None = None,
                   log_level: str = "info", audit: AuditLog | None = None) -> int:
    """Run the mqtt-out sink from its parsed ``mqtt:`` section until SIGTERM/SIGINT;
    commands are recorded in ``audit`` (default: the box's audit log)."""
    from petra.sinks.mqtt_out import MqttOutSink

    return run_process(lambda seg: MqttOutSink(cfg, seg, audit=audit), instance,
                       sink_role(SINK_MQTT_OUT), cpus, log_level)


def main(plant_path: str, instance: str, name: str = SINK_MQTT_OUT,
         cpus: Sequence[int] | None = None, log_level: str = "info", *,
         plant_data: str | None = None) -> int:
    """Run the sink ``name`` of a plant against ``instance`` (``plant_data``: see
    ``petra.config._handed``)."""
    setup_logging(log_level, sink_role(SINK_MQTT_OUT))  # the one sink this runs
    try:
        if name not in SINK_NAMES and name not in map(sink_role, SINK_NAMES):
            raise ConfigError(f"no sink named {name!r} (sinks: {', '.join(SINK_NAMES)})",
                              file=plant_path)
        from petra.config._handed import child_config

        config = child_config(plant_path, plant_data, instance, log)
        mqtt = config.mqtt
        if mqtt is None:
            raise ConfigError("the plant has no mqtt: section", file=plant_path)
        audit = plant_audit_log(config.api, Path(plant_path).resolve().parent, instance)
        return run_standalone(mqtt, instance, cpus, log_level=log_level, audit=audit)
    except PetraError as exc:
        log.error("event=sink_failed name=%s error=%s", name, exc)
        return 1
