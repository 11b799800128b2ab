"""Field drivers: Modbus TCP/RTU, Siemens S7 and MQTT in, one process each.

Drivers are connected processes (:mod:`petra.io`) and never import the sinks.
``main(plant_path, instance, name)`` runs one configured driver until SIGTERM; the
driver classes (``ModbusDriver``, ``S7Driver``, ``MqttInDriver``) take a parsed config
entry and a :class:`petra.shm.Segment`, so they run without a plant file too. See
``docs/drivers.md``.
"""

from petra.config._s7_address import S7Address, S7AddressError, parse_s7_address
from petra.drivers._runner import build_driver, main, run_standalone
from petra.types import ConnState, DriverCounter

__all__ = [
    "ConnState",
    "DriverCounter",
    "S7Address",
    "S7AddressError",
    "build_driver",
    "main",
    "parse_s7_address",
    "run_standalone",
]
