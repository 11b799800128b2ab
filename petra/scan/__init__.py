"""The scan: deterministic cycles of copy-in, blocks and copy-out on absolute deadlines.

The names below are imported on first use (PEP 562), not with the package: the scan's
plant loader (:mod:`petra.scan._plant`) runs in a short-lived child process that needs
none of the engine, numpy or the segment, and each reload starts one.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from petra.errors import RealTimeError, ReloadError

if TYPE_CHECKING:
    from petra.scan._clock import Clock, FakeClock, MonotonicClock
    from petra.scan._engine import BlockProgram, ScanCounters, ScanEngine, grid_base
    from petra.scan._plant import ScanPlant
    from petra.scan._process import ScanProcess, build_program, main
    from petra.scan._rt import RtSettings, RtState, apply

_HOMES = {
    "Clock": "_clock", "FakeClock": "_clock", "MonotonicClock": "_clock",
    "BlockProgram": "_engine", "ScanCounters": "_engine", "ScanEngine": "_engine",
    "grid_base": "_engine",
    "ScanPlant": "_plant",
    "ScanProcess": "_process", "build_program": "_process", "main": "_process",
    "RtSettings": "_rt", "RtState": "_rt", "apply": "_rt",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'petra.scan' has no attribute {name!r}")
    return getattr(import_module(f"petra.scan.{home}"), name)


__all__ = [
    "BlockProgram",
    "Clock",
    "FakeClock",
    "MonotonicClock",
    "RealTimeError",
    "ReloadError",
    "RtSettings",
    "RtState",
    "ScanCounters",
    "ScanEngine",
    "ScanPlant",
    "ScanProcess",
    "apply",
    "build_program",
    "grid_base",
    "main",
]
