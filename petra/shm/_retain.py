"""The retain area: the scan's block state in RAM, committed once per cycle.

A shared-memory object of its own, ``/petra-retain.<instance>`` (mode 0660, like the
segment), next to the segment ``/petra.<instance>``: it outlives a scan killed with
``kill -9``, so the supervisor's restart finds the state of the last complete cycle
and resumes from it (a warm restart). The layout and the commit protocol (double
buffer, sequence numbers, every barrier) are in ``csrc/retain.h``; this module maps
the object and calls the C core.

What is in it: the block program's state array (float64) and an opaque metadata blob
(the block table, written by :mod:`petra.blocks._retain`) that says which slice of the
state belongs to which block, so a restarted or reloaded scan matches blocks by name
and type. The scan is the one writer; a reader (the restarted scan, the persister
thread, a test) may read at any time and gets the last complete commit.

Lifetime: the scan opens or creates it at start; it lives exactly as long as the
segment (``unlink_instance`` removes both: the supervisor when the plant stops, or when
it replaces a stale segment), so a ``petra run`` start is a cold start (blocks marked
``retain`` come back from their file, see :mod:`petra.scan._retain`) and only a scan
restarted under a running supervisor resumes from RAM.
"""

from __future__ import annotations

import contextlib
import mmap
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import posix_ipc

from petra._core import check, ffi, lib
from petra.errors import PetraError
from petra.shm._mapping import _give_to_petra_group
from petra.types import validate_instance_name

RETAIN_MODE = 0o660
_EMAGIC, _EABI, _ELAYOUT, _ESIZE, _ERANGE, _EBUSY = (
    int(lib.PETRA_EMAGIC), int(lib.PETRA_EABI), int(lib.PETRA_ELAYOUT), int(lib.PETRA_ESIZE),
    int(lib.PETRA_ERANGE), int(lib.PETRA_EBUSY))
_REASONS = {_EMAGIC: "not a retain area", _EABI: "retain ABI version differs",
            _ELAYOUT: "belongs to another instance", _ESIZE: "buffer out of bounds",
            _EBUSY: "commits kept racing the read"}


def retain_name(instance: str) -> str:
    """The POSIX shared-memory name of an instance's retain area."""
    return f"/petra-retain.{instance}"


def unlink_retain(instance: str) -> bool:
    """Remove an instance's retain area; True if it existed."""
    validate_instance_name(instance)
    try:
        posix_ipc.unlink_shared_memory(retain_name(instance))
    except posix_ipc.ExistentialError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class RetainSnapshot:
    """One complete commit: the metadata blob, the state array and where it came from."""

    meta: bytes
    state: npt.NDArray[np.float64]
    commit: int      # (n << 1) | buffer
    gen: int
    cycles: int
    wall_ns: int


class RetainArea:
    """A mapped retain area. Not thread-safe for writing: the scan's loop thread is
    the one writer (:meth:`prepare`, :meth:`commit`); :meth:`read` may run anywhere."""

    def __init__(self, instance: str, fd: int, mm: mmap.mmap, size: int) -> None:
        self.instance = instance
        self._fd = fd
        self._mm = mm
        self.size = size
        self._ptr: Any = ffi.from_buffer(mm)
        self._meta: Any = ffi.NULL
        self._meta_keep: bytes = b""
        self._meta_len = 0
        # Table generations start at a random value: buffers left by an earlier
        # process carry its generations, and a table must never be mistaken for one
        # of those (the C commit copies the table only when the generation differs).
        self.gen = int.from_bytes(os.urandom(6), "little") << 8
        self.commits = 0

    # ------------------------------------------------------------------ open / create
    @classmethod
    def open(cls, instance: str) -> RetainArea | None:
        """The existing, valid retain area of ``instance``; None when there is none
        (a cold start). Raises PetraError naming why an existing object is unusable."""
        validate_instance_name(instance)
        try:
            shm = posix_ipc.SharedMemory(retain_name(instance), 0)
        except posix_ipc.ExistentialError:
            return None
        except posix_ipc.PermissionsError as exc:
            raise PetraError(f"cannot open {retain_name(instance)}: {exc}") from None
        fd = shm.fd
        size = os.fstat(fd).st_size
        if size < int(lib.petra_retain_header_size()):
            os.close(fd)
            raise PetraError(f"{retain_name(instance)} is too small ({size} bytes)")
        mm = mmap.mmap(fd, size, flags=mmap.MAP_SHARED,
                       prot=mmap.PROT_READ | mmap.PROT_WRITE)
        area = cls(instance, fd, mm, size)
        rc = int(lib.petra_retain_check(area._ptr, size, instance.encode()))
        if rc < 0:
            area.close()
            raise PetraError(f"{retain_name(instance)}: {_REASONS.get(rc, rc)}")
        return area

    @classmethod
    def create(cls, instance: str) -> RetainArea:
        """A new, empty retain area (an old one of that name is replaced)."""
        validate_instance_name(instance)
        unlink_retain(instance)
        size = int(lib.petra_retain_header_size())
        try:
            shm = posix_ipc.SharedMemory(retain_name(instance), posix_ipc.O_CREX,
                                         mode=RETAIN_MODE, size=size)
        except (posix_ipc.ExistentialError, posix_ipc.PermissionsError) as exc:
            raise PetraError(f"cannot create {retain_name(instance)}: {exc}") from None
        fd = shm.fd
        try:
            os.posix_fallocate(fd, 0, size)  # see _grow
        except OSError:
            os.close(fd)
            unlink_retain(instance)
            raise
        with contextlib.suppress(OSError):
            os.fchmod(fd, RETAIN_MODE)
        _give_to_petra_group(fd)  # as the segment: tools of group petra may read it
        mm = mmap.mmap(fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        area = cls(instance, fd, mm, size)
        check(int(lib.petra_retain_init(area._ptr, size, instance.encode())),
              "initialising the retain area")
        return area

    def close(self) -> None:
        if self._ptr is not None:
            ffi.release(self._ptr)
            self._ptr = None
            self._mm.close()
            os.close(self._fd)

    def _grow(self, size: int) -> None:
        """Grow the object to ``size`` bytes and map it again (off the cycle: reloads)."""
        # Reserve the pages now: a full /dev/shm must be an error here, not a SIGBUS on
        # the loop's next memcpy into a page tmpfs could not back.
        os.posix_fallocate(self._fd, 0, size)
        mm = mmap.mmap(self._fd, size, flags=mmap.MAP_SHARED,
                       prot=mmap.PROT_READ | mmap.PROT_WRITE)
        ffi.release(self._ptr)
        self._mm.close()
        self._mm, self.size, self._ptr = mm, size, ffi.from_buffer(mm)

    # ------------------------------------------------------------------ writer
    def prepare(self, meta: bytes, state: npt.NDArray[np.float64], cycles: int = 0) -> None:
        """Start a new metadata generation (a program was bound): make room in both
        buffers and commit ``state`` with ``meta`` at once, so the area never names a
        buffer whose table does not match its state."""
        self.gen += 1
        self._meta_keep = bytes(meta)
        self._meta = ffi.from_buffer(self._meta_keep) if meta else ffi.NULL
        self._meta_len = len(meta)
        n = len(state)
        for _ in range(2):  # the buffer commit does not name, then (after one) the other
            while True:
                need = int(lib.petra_retain_place(self._ptr, self.size, self._meta_len, n))
                check(need if need < 0 else 0, "placing a retain buffer")
                if need == 0:
                    break
                self._grow(need)
            self.commit(state, cycles)

    def commit(self, state: npt.NDArray[np.float64], cycles: int = 0) -> None:
        """Commit ``state`` (the same length as at :meth:`prepare`)."""
        ptr = ffi.from_buffer("double[]", state) if len(state) else ffi.NULL
        check(int(lib.petra_retain_commit(self._ptr, self.size, self._meta, self._meta_len,
                                          self.gen, ptr, len(state), cycles)),
              "retain commit")
        self.commits += 1

    def commit_args(self, state: npt.NDArray[np.float64]) -> tuple[Any, ...]:
        """The arguments of ``lib.petra_retain_commit`` but the cycle count, for a
        loop that calls it directly (valid until the next :meth:`prepare`)."""
        ptr = ffi.from_buffer("double[]", state) if len(state) else ffi.NULL
        return (self._ptr, self.size, self._meta, self._meta_len, self.gen, ptr, len(state))

    def debug_torn(self, state: npt.NDArray[np.float64], nbytes: int) -> None:
        """Tests: begin a commit and stop after ``nbytes`` of the state, as a writer
        killed there would."""
        ptr = ffi.from_buffer("double[]", state)
        check(int(lib.petra_retain_debug_torn(self._ptr, self.size, ptr, len(state), nbytes)),
              "retain debug torn")

    # ------------------------------------------------------------------ reader
    def read(self) -> RetainSnapshot | None:
        """The last complete commit, or None when nothing was committed yet."""
        info = ffi.new("petra_retain_info_t *")
        meta_cap, n_cap = 0, 0
        for _ in range(8):
            meta = bytearray(meta_cap)
            state = np.empty(n_cap, np.float64)
            rc = int(lib.petra_retain_read(
                self._ptr, self.size, ffi.from_buffer(meta) if meta_cap else ffi.NULL,
                meta_cap, ffi.from_buffer("double[]", state) if n_cap else ffi.NULL,
                n_cap, info))
            if rc == 1:
                return None
            if rc == _ERANGE:  # sized by the info of that commit: read again
                meta_cap, n_cap = int(info.meta_len), int(info.n_state)
                continue
            if rc < 0:
                raise PetraError(f"{retain_name(self.instance)}: {_REASONS.get(rc, rc)}")
            return RetainSnapshot(bytes(meta[: int(info.meta_len)]),
                                  state[: int(info.n_state)].copy(), int(info.commit),
                                  int(info.gen), int(info.cycles), int(info.wall_ns))
        raise PetraError(f"{retain_name(self.instance)}: kept changing size while read")
