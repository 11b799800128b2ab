"""Sinks: processes that consume the change journal and send it elsewhere.

``petra.sinks.mqtt_out.main(plant_path, instance)`` runs the MQTT publisher; see
``docs/drivers.md``.
"""

from petra.sinks.mqtt_out import MqttOutSink, main

__all__ = ["MqttOutSink", "main"]
