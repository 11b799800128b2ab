"""Sinks: processes that consume the change journal and send it elsewhere.

``petra.sinks.main(plant_path, instance, name)`` runs one sink of a plant (today
``mqtt-out``, the MQTT publisher and command handler); see ``docs/drivers.md``. Sinks
are connected processes (:mod:`petra.io`) and never import the drivers.
"""

from petra.sinks._runner import SINK_NAMES, main, run_standalone
from petra.sinks.mqtt_out import MqttOutSink

__all__ = ["SINK_NAMES", "MqttOutSink", "main", "run_standalone"]
