"""The scan: deterministic cycles of copy-in, blocks and copy-out on absolute deadlines."""

from petra.errors import RealTimeError, ReloadError
from petra.scan._clock import Clock, FakeClock, MonotonicClock
from petra.scan._engine import BlockProgram, ScanCounters, ScanEngine, grid_base
from petra.scan._process import ScanProcess, build_program, main
from petra.scan._rt import RtSettings, RtState, apply

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
    "ScanProcess",
    "apply",
    "build_program",
    "grid_base",
    "main",
]
