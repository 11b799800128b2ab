"""Running one configured driver as its own process against a running instance.

``main(plant_path, instance, name)`` is what ``petra driver`` (and so the supervisor)
calls: load the plant, find the entry, and run it with :func:`petra.io.run_process`.
It returns an exit status: 0 clean stop, 1 config/segment error or a failed task.

``run_standalone(cfg, instance)`` does the same from an already parsed config entry,
so tests and tools can run a driver without a plant file (it is picklable, so it is
also a ``multiprocessing`` target).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from petra.config._drivers import (
    BrokerConfig,
    ModbusRtuConfig,
    ModbusTcpConfig,
    MqttInConfig,
    S7Config,
)
from petra.errors import ConfigError, PetraError
from petra.io import Runnable, run_process, setup_logging
from petra.shm import Segment
from petra.types import driver_role

log = logging.getLogger("petra.drivers")

AnyDriverConfig = ModbusTcpConfig | ModbusRtuConfig | S7Config | MqttInConfig


def build_driver(cfg: AnyDriverConfig, segment: Segment,
                 broker_default: BrokerConfig | None = None) -> Runnable:
    """The driver object for one ``drivers:`` entry."""
    if isinstance(cfg, ModbusTcpConfig | ModbusRtuConfig):
        from petra.drivers.modbus import ModbusDriver

        return ModbusDriver(cfg, segment)
    if isinstance(cfg, S7Config):
        from petra.drivers.s7 import S7Driver

        return S7Driver(cfg, segment)
    from petra.drivers.mqtt_in import MqttInDriver

    return MqttInDriver(cfg, segment, broker_default=broker_default)


def run_standalone(cfg: AnyDriverConfig, instance: str, cpus: Sequence[int] | None = None,
                   broker_default: Any = None, log_level: str = "info") -> int:
    """Run one driver from its parsed config entry until SIGTERM/SIGINT."""
    return run_process(lambda seg: build_driver(cfg, seg, broker_default), instance,
                       driver_role(cfg.name), cpus, log_level)


def main(plant_path: str, instance: str, name: str,
         cpus: Sequence[int] | None = None, log_level: str = "info", *,
         plant_data: str | None = None) -> int:
    """Run the driver ``name`` of a plant against ``instance``; ``plant_data`` is the
    supervisor's validated plant (``petra.config._handed``), else the file is loaded."""
    setup_logging(log_level, driver_role(name))
    try:
        from petra.config._handed import child_config

        root = child_config(plant_path, plant_data, instance, log)
        for cfg in root.drivers:
            if cfg.name == name:
                broker = root.mqtt.broker if root.mqtt is not None else None
                return run_standalone(cfg, instance, cpus, broker_default=broker,
                                      log_level=log_level)
        names = ", ".join(d.name for d in root.drivers) or "none"
        raise ConfigError(f"no driver named {name!r} (drivers: {names})",
                          file=plant_path, key_path="drivers")
    except PetraError as exc:
        log.error("event=driver_failed name=%s error=%s", name, exc)
        return 1
