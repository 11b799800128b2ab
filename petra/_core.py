"""The native layer: the one module that imports the C extension ``petra._native``.

Everything C returns passes through here on its way to Python:

- **Return codes.** The C core returns 0 or a count on success and a negative
  ``PETRA_E*`` on failure. :func:`check` turns a negative code into the exception of
  the :mod:`petra.errors` tree; the codes are read from the extension's own enum, so
  they are never re-typed by hand. Functions that return a negative errno (the
  real-time helpers) are wrapped here and raise :class:`OSError` with that errno.
- **Typed wrappers** for the areas used outside the hot paths: versions, clocks, the
  real-time process set-up and the block op codes.
- **Hot paths.** The segment (``petra.shm``), the block runtime and the scan engine
  bind C functions once and call them per signal or per cycle; a Python wrapper per
  call would cost as much as the call. They take ``ffi`` and ``lib`` from this module
  (never from the extension) and still hand every return code to :func:`check`. The
  import-rule test (``tests/unit/test_import_rules.py``) lists which modules may.

Nothing above the native layer (config, the block catalogue, ``petra check``) imports
this module, so a plant can be validated on a box whose C core is not built.
"""

from __future__ import annotations

import enum
import os
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


class Rc(enum.IntEnum):
    """The C core's return codes (``petra_rc_t`` in ``csrc/petra.h``)."""

    OK = int(lib.PETRA_OK)
    EINVAL = int(lib.PETRA_EINVAL)
    ERANGE = int(lib.PETRA_ERANGE)
    EBUSY = int(lib.PETRA_EBUSY)
    ETYPE = int(lib.PETRA_ETYPE)
    EMAGIC = int(lib.PETRA_EMAGIC)
    EABI = int(lib.PETRA_EABI)
    ELAYOUT = int(lib.PETRA_ELAYOUT)
    ESIZE = int(lib.PETRA_ESIZE)
    ENOMEM = int(lib.PETRA_ENOMEM)
    EFULL = int(lib.PETRA_EFULL)


# Kept as module constants for callers that compare a code they got back.
OK, EINVAL, ERANGE, EBUSY, ETYPE = Rc.OK, Rc.EINVAL, Rc.ERANGE, Rc.EBUSY, Rc.ETYPE
EMAGIC, EABI, ELAYOUT, ESIZE, ENOMEM, EFULL = (
    Rc.EMAGIC, Rc.EABI, Rc.ELAYOUT, Rc.ESIZE, Rc.ENOMEM, Rc.EFULL)

_MESSAGES: dict[int, tuple[type[Exception], str]] = {
    Rc.ERANGE: (UnknownSignalError, "index out of range"),
    Rc.EBUSY: (SignalBusyError, "slot busy: its writer is dead or stopped, or stayed "
                                 "inside past the retry or wait limit"),
    Rc.ETYPE: (SignalTypeError, "value type does not match the slot type"),
    Rc.EMAGIC: (SegmentLayoutError, "not a Petra segment, or not initialised yet"),
    Rc.EABI: (SegmentLayoutError, "segment ABI version differs from this build"),
    Rc.ELAYOUT: (SegmentLayoutError, "segment struct layout differs from this build"),
    Rc.ESIZE: (SegmentLayoutError, "mapping is smaller than the segment header says"),
    Rc.EINVAL: (ValueOutOfRangeError, "invalid argument"),
    Rc.EFULL: (SegmentFullError, "no free record left"),
    Rc.ENOMEM: (MemoryError, "out of memory"),
}


def raise_for(rc: int, what: str = "") -> NoReturn:
    """Raise the typed exception for a negative return code."""
    suffix = f": {what}" if what else ""
    kind, message = _MESSAGES.get(rc, (PetraError, f"C core returned {rc}"))
    raise kind(f"{message}{suffix}")


def check(rc: int, what: str = "") -> int:
    """Return ``rc`` when it is not an error code, else raise its exception."""
    if rc < 0:
        raise_for(rc, what)
    return rc


def read_only(what: str) -> NoReturn:
    raise SegmentReadOnlyError(f"{what}: segment attached read-only")


def _check_errno(rc: int, what: str) -> int:
    """For the helpers that return ``-errno``: raise :class:`OSError` on failure."""
    if rc < 0:
        raise OSError(-rc, f"{what}: {os.strerror(-rc)}")
    return rc


# ---------------------------------------------------------------- versions and clocks
def layout_hash() -> int:
    return int(lib.petra_layout_hash())


def abi_version() -> int:
    return int(lib.petra_abi_version())


def now_real_ns() -> int:
    """CLOCK_REALTIME in ns, as the C core stamps writes."""
    return int(lib.petra_now_real_ns())


def now_mono_ns() -> int:
    """CLOCK_MONOTONIC in ns, as heartbeats and the scan use."""
    return int(lib.petra_now_mono_ns())


# Bound once: the scan's Python path calls these every cycle.
wait_until_raw = lib.petra_wait_until
now_mono_raw = lib.petra_now_mono_ns


def wait_until(deadline_ns: int, spin_ns: int = 0) -> int:
    """Sleep (absolute ``clock_nanosleep``) until ``deadline_ns``, spinning the last
    ``spin_ns``; return how late the wake-up was, in ns."""
    return int(wait_until_raw(deadline_ns, spin_ns))


# ---------------------------------------------------------------- real-time set-up
def set_timerslack(ns: int) -> None:
    """``prctl(PR_SET_TIMERSLACK)`` for this thread."""
    _check_errno(int(lib.petra_rt_set_timerslack(ns)), "timer slack")


def mlockall() -> None:
    """Lock current and future memory; raises OSError (EPERM, ENOMEM) when refused."""
    _check_errno(int(lib.petra_rt_mlockall()), "mlockall")


def prefault_stack(nbytes: int) -> None:
    """Touch ``nbytes`` of stack now so the loop never faults on it."""
    check(int(lib.petra_rt_prefault_stack(nbytes)), f"stack prefault of {nbytes} bytes")


def dma_latency_hold() -> int:
    """Hold ``/dev/cpu_dma_latency`` at 0; returns the fd to give back later."""
    return _check_errno(int(lib.petra_rt_dma_latency_hold()), "/dev/cpu_dma_latency")


def dma_latency_release(fd: int) -> None:
    lib.petra_rt_dma_latency_release(fd)


# ---------------------------------------------------------------- blocks
BLOCK_FLAG_FRESH = int(lib.PETRA_BF_FRESH)


def op_code(block_type: str) -> int:
    """The C kernel's op code for a built-in block type (``PETRA_OP_<TYPE>``)."""
    code = getattr(lib, f"PETRA_OP_{block_type}", None)
    if code is None:
        raise PetraError(f"the C kernel has no op for block type {block_type!r}")
    return int(code)


def instr_size() -> int:
    return int(lib.petra_blocks_instr_size())
