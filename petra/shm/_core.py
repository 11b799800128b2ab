"""The one module that imports the C extension and turns its return codes into errors.

Every other module calls ``lib`` through the names re-exported here and passes each
return code through :func:`check`.
"""

from __future__ import annotations

from typing import Any, NoReturn

from petra import _native
from petra.errors import (
    PetraError,
    SegmentFullError,
    SegmentLayoutError,
    SegmentReadOnlyError,
    SignalBusyError,
    SignalTypeError,
    UnknownSignalError,
    ValueOutOfRangeError,
)

ffi: Any = _native.ffi
lib: Any = _native.lib

OK = 0
EINVAL = -1
ERANGE = -2
EBUSY = -3
ETYPE = -4
EMAGIC = -5
EABI = -6
ELAYOUT = -7
ESIZE = -8
ENOMEM = -9
EFULL = -10


def raise_for(rc: int, what: str = "") -> NoReturn:
    """Raise the typed exception for a negative return code."""
    suffix = f": {what}" if what else ""
    if rc == ERANGE:
        raise UnknownSignalError(f"index out of range{suffix}")
    if rc == EBUSY:
        raise SignalBusyError(f"slot busy past the retry limit{suffix}")
    if rc == ETYPE:
        raise SignalTypeError(f"value type does not match the slot type{suffix}")
    if rc == EMAGIC:
        raise SegmentLayoutError(f"not a Petra segment, or not initialised yet{suffix}")
    if rc == EABI:
        raise SegmentLayoutError(f"segment ABI version differs from this build{suffix}")
    if rc == ELAYOUT:
        raise SegmentLayoutError(f"segment struct layout differs from this build{suffix}")
    if rc == ESIZE:
        raise SegmentLayoutError(f"mapping is smaller than the segment header says{suffix}")
    if rc == EINVAL:
        raise ValueOutOfRangeError(f"invalid argument{suffix}")
    if rc == EFULL:
        raise SegmentFullError(f"no free record left{suffix}")
    if rc == ENOMEM:
        raise MemoryError(f"out of memory{suffix}")
    raise PetraError(f"C core returned {rc}{suffix}")




def check(rc: int, what: str = "") -> int:
    """Return ``rc`` when it is not an error code, else raise its exception."""
    if rc < 0:
        raise_for(rc, what)
    return rc


def read_only(what: str) -> NoReturn:
    raise SegmentReadOnlyError(f"{what}: segment attached read-only")


def layout_hash() -> int:
    return int(lib.petra_layout_hash())


def abi_version() -> int:
    return int(lib.petra_abi_version())


def now_real_ns() -> int:
    return int(lib.petra_now_real_ns())


def now_mono_ns() -> int:
    return int(lib.petra_now_mono_ns())
