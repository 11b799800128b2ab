"""Running one driver (or sink) as its own process against a running instance.

``main(plant_path, instance, name)`` is what the supervisor spawns and what
``petra driver`` calls: load the plant, find the entry, attach the segment, claim a
heartbeat record, run the asyncio loop until SIGTERM or SIGINT, release everything and
return an exit status (0 clean stop, 1 config/segment error).

``run_standalone(cfg, instance)`` does the same from an already parsed config object,
so tests and tools can run a driver without a plant file (it is picklable, so it is
also a ``multiprocessing`` target).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from petra.config._drivers import (
    ModbusRtuConfig,
    ModbusTcpConfig,
    MqttConfig,
    MqttInConfig,
    S7Config,
)
from petra.errors import ConfigError, PetraError
from petra.shm import HeartbeatHandle, Segment
from petra.types import SINK_MQTT_OUT, driver_role, sink_role

log = logging.getLogger("petra.drivers")

AnyDriverConfig = ModbusTcpConfig | ModbusRtuConfig | S7Config | MqttInConfig


class Runnable(Protocol):
    """What the runner needs from a driver or sink object."""

    def attach_heartbeat(self, hb: HeartbeatHandle) -> None: ...

    async def run(self, stop: asyncio.Event) -> None: ...


def build_driver(cfg: AnyDriverConfig, segment: Segment,
                 broker_default: Any = None) -> Runnable:
    """The driver object for one ``drivers:`` entry."""
    if isinstance(cfg, ModbusTcpConfig | ModbusRtuConfig):
        from petra.drivers.modbus import ModbusDriver

        return ModbusDriver(cfg, segment)
    if isinstance(cfg, S7Config):
        from petra.drivers.s7 import S7Driver

        return S7Driver(cfg, segment)
    from petra.drivers.mqtt_in import MqttInDriver

    return MqttInDriver(cfg, segment, broker_default=broker_default)


def setup_logging(level: str = "info", role: str = "driver") -> None:
    """One line per event on stderr (``petra.logs``), unless logging is configured."""
    if not logging.getLogger().handlers:
        from petra.logs import setup_logging as petra_logging

        petra_logging(level, role)


def set_cpus(cpus: Sequence[int] | None) -> None:
    """Pin this process (drivers never run on the scan's CPU; the supervisor says where)."""
    if cpus:
        os.sched_setaffinity(0, set(cpus))


def run_object(make: Callable[[Segment], Runnable], instance: str, role: str,
               cpus: Sequence[int] | None = None, log_level: str = "info") -> int:
    """Attach, register the heartbeat, run until SIGTERM/SIGINT, clean up."""
    setup_logging(log_level, role)
    set_cpus(cpus)
    seg = Segment.attach(instance)
    hb: HeartbeatHandle | None = None
    try:
        obj = make(seg)
        hb = HeartbeatHandle(seg, role, os.getpid(), cpu=min(cpus) if cpus else 0)
        obj.attach_heartbeat(hb)

        async def _main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            log.info("event=start role=%s pid=%d instance=%s", role, os.getpid(), instance)
            await obj.run(stop)
            log.info("event=stop role=%s pid=%d", role, os.getpid())

        asyncio.run(_main())
        return 0
    finally:
        if hb is not None:
            hb.release()
        seg.close()


def run_standalone(cfg: AnyDriverConfig | MqttConfig, instance: str,
                   cpus: Sequence[int] | None = None, broker_default: Any = None,
                   log_level: str = "info") -> int:
    """Run one driver (or, for an :class:`MqttConfig`, the mqtt-out sink)."""
    if isinstance(cfg, MqttConfig):
        from petra.sinks.mqtt_out import MqttOutSink

        return run_object(lambda seg: MqttOutSink(cfg, seg), instance,
                          sink_role(SINK_MQTT_OUT), cpus, log_level)
    return run_object(lambda seg: build_driver(cfg, seg, broker_default), instance,
                      driver_role(cfg.name), cpus, log_level)


def load_plant_sections(plant_path: str) -> tuple[list[AnyDriverConfig], MqttConfig | None]:
    """The ``drivers:`` entries and the ``mqtt:`` section of a plant file."""
    from petra.config import load_plant

    root = load_plant(plant_path).config
    return list(root.drivers), root.mqtt


def main(plant_path: str, instance: str, name: str,
         cpus: Sequence[int] | None = None, log_level: str = "info") -> int:
    """Run the driver ``name`` (or ``mqtt-out``) of a plant against ``instance``."""
    try:
        drivers, mqtt = load_plant_sections(plant_path)
        if name in (SINK_MQTT_OUT, sink_role(SINK_MQTT_OUT)):
            if mqtt is None:
                raise ConfigError("the plant has no mqtt: section", file=plant_path)
            return run_standalone(mqtt, instance, cpus, log_level=log_level)
        for cfg in drivers:
            if cfg.name == name:
                broker = mqtt.broker if mqtt is not None else None
                return run_standalone(cfg, instance, cpus, broker_default=broker,
                                      log_level=log_level)
        names = ", ".join(d.name for d in drivers) or "none"
        raise ConfigError(f"no driver named {name!r} (drivers: {names}; or mqtt-out)",
                          file=plant_path, key_path="drivers")
    except PetraError as exc:
        setup_logging(log_level, driver_role(name))
        log.error("event=driver_failed name=%s error=%s", name, exc)
        return 1

