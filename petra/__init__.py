"""Petra: a real-time automation runtime (soft PLC and telemetry gateway)."""

from petra.errors import ConfigError, PetraError

__version__ = "0.1.0"

__all__ = ["ConfigError", "PetraError", "__version__"]
