"""The one exception tree of Petra.

Every error Petra raises on purpose is a :class:`PetraError`. Subclasses say what went
wrong in terms a user can act on: which segment, which signal, which config key.
"""

from __future__ import annotations


class PetraError(Exception):
    """Root of every error Petra raises on purpose."""


class ConfigError(PetraError):
    """A plant configuration is invalid; names the file, the key path and the line."""

    def __init__(
        self,
        message: str,
        *,
        file: str = "<config>",
        key_path: str = "",
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.key_path = key_path
        self.line = line
        self.column = column
        super().__init__(self.format())

    def format(self) -> str:
        """``FILE:LINE:COL: key.path: message``, the form editors and scripts parse."""
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        key = f" {self.key_path}:" if self.key_path else ""
        return f"{where}:{key} {self.message}"


class SegmentError(PetraError):
    """A problem with a shared segment as a whole."""


class NoSuchSegmentError(SegmentError):
    """No segment exists under the instance name."""


class SegmentExistsError(SegmentError):
    """A segment with the instance name already exists."""


class SegmentLayoutError(SegmentError):
    """The segment is not one this build can read: magic, ABI version or layout differ."""


class SegmentPermissionError(SegmentError):
    """The operating system refused access to the segment (it is mode 0660, group petra)."""


class SegmentReadOnlyError(SegmentError):
    """A write was attempted through a read-only attachment."""


class SegmentFullError(SegmentError):
    """A fixed-size region of the segment (the heartbeat table) has no free record."""


class InstanceRunningError(PetraError):
    """Another live supervisor holds the instance name."""


class RealTimeError(PetraError):
    """A real-time requirement could not be met and the config demands it (rt mode)."""


class ReloadError(PetraError):
    """A reload was refused; the running plant continues unchanged."""


class SignalError(PetraError):
    """A problem with one signal."""


class UnknownSignalError(SignalError, KeyError):
    """No signal has that name or index."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown signal"


class SignalTypeError(SignalError, TypeError):
    """The value's type does not fit the signal's type."""


class ValueOutOfRangeError(SignalError, ValueError):
    """The value does not fit the signal: its type (int64 range, bool 0/1, finite for
    ints), its configured min/max, or it is NaN/inf where the signal allows none."""


class SignalNotWritableError(SignalError):
    """The signal is not marked writable: operators, commands and tools may not set it."""


class SignalBusyError(SignalError):
    """A writer held the slot longer than the bounded retry; the last good value stands."""


class InvalidNameError(PetraError, ValueError):
    """An instance or signal name breaks the naming rules."""
