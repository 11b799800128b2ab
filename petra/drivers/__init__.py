"""Field drivers: Modbus TCP/RTU, Siemens S7 and MQTT in, one process each.

``main(plant_path, instance, name)`` runs one configured driver until SIGTERM; the
driver classes (``ModbusDriver``, ``S7Driver``, ``MqttInDriver``) take a parsed config
entry and a :class:`petra.shm.Segment`, so they run without a plant file too. See
``docs/drivers.md``.
"""

from petra.config._s7_address import S7Address, S7AddressError, parse_s7_address
from petra.drivers._common import Backoff, DriverLimits
from petra.drivers._runner import build_driver, main, run_standalone
from petra.types import ConnState, DriverCounter, SinkCounter

__all__ = [
    "Backoff",
    "ConnState",
    "DriverCounter",
    "DriverLimits",
    "S7Address",
    "S7AddressError",
    "SinkCounter",
    "build_driver",
    "main",
    "parse_s7_address",
    "run_standalone",
]
