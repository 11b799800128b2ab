"""Plant configuration: the YAML format, its validation, and the validated :class:`Plant`.

``load_plant(path)`` returns a :class:`Plant` or raises :class:`ConfigErrors` listing
every problem of the file, each as ``FILE:LINE:COL: key.path: message``. The format is
documented in ``docs/config.md``; ``docs/schema/plant.schema.json`` is its JSON Schema.
"""

from petra.blocks import BlockInstance
from petra.config._drivers import DriverConfig, MqttConfig, SignalRef, signal_refs
from petra.config._errors import ConfigErrors, format_path
from petra.config._models import (
    BlockConfig,
    PlantConfig,
    ScanConfig,
    SignalConfig,
    format_duration,
    parse_duration,
)
from petra.config._plant import (
    Plant,
    block_specs,
    dump_plant_yaml,
    load_plant,
    load_plant_text,
)
from petra.config._yaml import parse_scalar
from petra.errors import ConfigError

__all__ = [
    "BlockConfig",
    "BlockInstance",
    "ConfigError",
    "ConfigErrors",
    "DriverConfig",
    "MqttConfig",
    "Plant",
    "PlantConfig",
    "ScanConfig",
    "SignalConfig",
    "SignalRef",
    "block_specs",
    "dump_plant_yaml",
    "format_duration",
    "format_path",
    "load_plant",
    "load_plant_text",
    "parse_duration",
    "parse_scalar",
    "signal_refs",
]
