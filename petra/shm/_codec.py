"""Values and arrays on their way between Python and the C core.

- The value codec: a Python ``bool``/``int``/``float`` to a slot's 64-bit pattern and
  back, a signal's initial value, the directory's limits (NaN means none).
- Array checks for the batch APIs. An output array is handed to C as a pointer and C
  writes ``n`` entries from its start, so it must be exactly the right dtype, 1-D,
  contiguous, writable and long enough: :func:`out_array` refuses anything else with a
  TypeError/ValueError before a byte is written. Input arrays are converted (never
  reinterpreted) by :func:`as_array`.
- The unpacking of ``petra_sample_t`` in one ``struct`` call, checked against cffi's
  offsets at import.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import numpy.typing as npt

from petra._core import ffi
from petra.errors import SignalTypeError, ValueOutOfRangeError
from petra.types import SignalDef, SignalType, Value, coerce_value

# petra_sample_t unpacked in one call: value, source_ts, write_ts, writer, type,
# quality, substatus (layout checked against cffi's offsets just below).
F_SAMPLE = struct.Struct("=dqqIBBB").unpack_from
I_SAMPLE = struct.Struct("=qqqIBBB").unpack_from

if (ffi.offsetof("petra_sample_t", "writer"), ffi.offsetof("petra_sample_t", "quality")) != (
    24, 29):  # pragma: no cover - a build whose struct layout moved
    raise ImportError("petra_sample_t layout differs from the unpack format in _codec.py")



NO_INDICES: npt.NDArray[np.uint32] = np.zeros(0, np.uint32)
NO_INDICES.flags.writeable = False

def out_array(arr: object, dtype: np.dtype[Any], n: int, what: str) -> npt.NDArray[Any]:
    """Check a caller's output array before C writes ``n`` entries into it: exactly
    ``dtype`` (native byte order), one-dimensional, C-contiguous, writable and at
    least ``n`` long. Anything else is refused (TypeError / ValueError): C writes
    ``n * itemsize`` bytes from the array's start and must never pass its end."""
    if isinstance(arr, np.ndarray) and arr.dtype == dtype and arr.ndim == 1:
        flags = arr.flags
        if flags.c_contiguous and flags.writeable and len(arr) >= n:
            return arr
    name = dtype.name  # slow in numpy 2 (microseconds): only on the way to an error
    if not isinstance(arr, np.ndarray):
        raise SignalTypeError(f"{what} must be a numpy array of {name}, "
                              f"got {type(arr).__name__}")
    if arr.dtype != dtype:
        raise SignalTypeError(f"{what} must be a numpy array of {name}, got {arr.dtype}")
    if arr.ndim != 1:
        raise SignalTypeError(f"{what} must be one-dimensional, got {arr.ndim} dimensions")
    if not arr.flags.c_contiguous:
        raise SignalTypeError(f"{what} must be contiguous (a strided view cannot be "
                              "written through)")
    if not arr.flags.writeable:
        raise SignalTypeError(f"{what} is read-only")
    raise ValueOutOfRangeError(f"{what} holds {len(arr)} entries, {n} needed")


def out_ptr(ctype: str, arr: object, dtype: np.dtype[Any], n: int, what: str) -> Any:
    """:func:`out_array` and the C pointer in one step, cheaper on the hot path: the
    dtype, shape and length are checked here, and contiguity and writability by
    ``ffi.from_buffer`` itself (it refuses both), whose refusal is then explained."""
    if (arr.__class__ is np.ndarray and arr.dtype is dtype
            and arr.ndim == 1 and len(arr) >= n):
        try:
            return ffi.from_buffer(ctype, arr, require_writable=True)
        except ValueError:
            pass
    return ffi.from_buffer(ctype, out_array(arr, dtype, n, what), require_writable=True)


U64, U8, I64, F64 = (np.dtype(np.uint64), np.dtype(np.uint8), np.dtype(np.int64),
                         np.dtype(np.float64))


def as_array(arr: Any, dtype: type[np.generic], what: str,
              convert: str = "") -> npt.NDArray[Any]:
    """``arr`` as a contiguous 1-D array of ``dtype``. Arrays of another dtype are refused
    (a silent reinterpretation of bits would be worse than an error) unless their kind
    is in ``convert`` and every element survives the conversion unchanged; sequences
    (lists, tuples) are converted the same way."""
    a = np.asarray(arr)
    if a.dtype != dtype:
        if a.size == 0:
            a = a.astype(dtype)
        elif a.dtype.kind in convert:
            conv = a.astype(dtype)
            if not np.array_equal(conv.astype(a.dtype), a, equal_nan=a.dtype.kind == "f"):
                raise ValueOutOfRangeError(f"{what} do not fit {np.dtype(dtype).name}")
            a = conv
        else:
            raise SignalTypeError(f"{what} must be a numpy array of {np.dtype(dtype).name}, "
                                  f"got {a.dtype}")
    if a.ndim != 1:
        raise SignalTypeError(f"{what} must be one-dimensional")
    return np.ascontiguousarray(a)


def ptr(ctype: str, arr: npt.NDArray[Any] | None) -> Any:
    return ffi.NULL if arr is None else ffi.from_buffer(ctype, arr)


def limit(x: float) -> float | None:
    """A directory limit as Python sees it: NaN (no limit) becomes None."""
    return None if math.isnan(x) else x


def format_limit(x: float | None, unbounded: str) -> str:
    return unbounded if x is None else f"{x:g}"


def initial(sig: SignalDef) -> Value:
    if sig.initial is not None:
        return sig.initial
    return {SignalType.BOOL: False, SignalType.INT: 0, SignalType.FLOAT: 0.0}[sig.type]


def encode(sig_type: SignalType, value: Value, name: str) -> int:
    v = coerce_value(sig_type, value, name=name)
    if sig_type is SignalType.FLOAT:
        return int(np.array([v], dtype=np.float64).view(np.uint64)[0])
    return int(v) & 0xFFFFFFFFFFFFFFFF


def decode_bits(sig_type: SignalType | int, bits: int) -> Value:
    """The Python value of a slot's raw 64-bit pattern."""
    if sig_type == SignalType.FLOAT:
        return float(np.array([bits], dtype=np.uint64).view(np.float64)[0])
    signed = bits - (1 << 64) if bits >= 1 << 63 else bits
    return signed if sig_type == SignalType.INT else signed == 1
