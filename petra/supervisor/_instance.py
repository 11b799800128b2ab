"""One live instance per segment name: the instance lock, the state file, stale segments.

Why the lock lives in ``/dev/shm``
----------------------------------
The segment ``/petra.<instance>`` is a name in the machine's (more exactly the IPC
mount's) one shared-memory directory, whatever ``PETRA_RUNTIME_DIR`` says. A lock kept
in the runtime directory let a second ``petra run`` with another runtime directory take
"its" lock, find the live segment, call it stale, unlink it and start a second scan.
So the lock is a file named for the segment next to it: ``/dev/shm/petra-lock.<instance>``
(a dash, so ``petra.*`` globs listing segments never see it). It is visible exactly where
the segment is: two containers sharing ``/dev/shm`` share the lock too; two with private
``/dev/shm`` directories have separate segments as well.

An advisory lock on the segment object itself was the other choice; it was set aside
because a segment is created and locked in two steps (``shm_open(O_EXCL)``, then
``flock``): between them a second supervisor could lock the new, still unlocked segment,
judge it stale and unlink it. The lock file is taken *before* the segment is touched,
so the judgement "stale" is always made under the lock.

The lock is an ``flock`` held for the supervisor's life; the kernel drops it when its
holder dies, however it dies, so a lock we can take means no supervisor of that name is
alive, and a segment still present under the name is stale and is replaced. Opening is
hardened against a hostile user of the world-writable directory: ``O_NOFOLLOW`` (a
symlink to ``/etc/shadow`` is refused, not truncated), the descriptor must be a regular
file with one link, and after locking the path must still name the locked file (a
holder that unlinked it on release and a newcomer that created a new one would
otherwise both "hold" the lock). A file of another user that we cannot open is
reported as such: squatting on the name blocks the instance, as squatting on the
segment name would.

Proof for ``petra reload``
--------------------------
The state file ``<runtime>/petra-<instance>.json`` (``<runtime>`` is
``$PETRA_RUNTIME_DIR``, else ``/run/petra`` when writable, else the temp directory)
tells tools the supervisor's pid and health port. It can be stale (a ``kill -9``
leaves it) and the pid in it can have been reused by a stranger, so it is never proof.
:func:`supervisor_pid` asks the kernel instead: ``/proc/locks`` lists the pid holding
the lock on the lock file's inode. ``petra reload`` opens a pidfd on that pid, checks
again that the pid holds the lock (so the pidfd names the holder, not a newcomer that
got the pid), and signals through the pidfd.

Every function validates the instance name first, before any path is built from it:
``x/../../victim`` never reaches the file system.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import signal
import stat
import tempfile
from pathlib import Path
from typing import Any

from petra.errors import InstanceRunningError, PetraError
from petra.shm import list_instances, unlink_instance
from petra.types import validate_instance_name

LOCK_DIR = Path("/dev/shm")
LOCK_PREFIX = "petra-lock."
LOCK_MODE = 0o644
STATE_MAX_BYTES = 1 << 20


def runtime_dir() -> Path:
    env = os.environ.get("PETRA_RUNTIME_DIR")
    if env:
        path = Path(env)
        path.mkdir(parents=True, exist_ok=True)
        return path
    run = Path("/run/petra")
    with contextlib.suppress(OSError):
        run.mkdir(parents=True, exist_ok=True)
        if os.access(run, os.W_OK):
            return run
    return Path(tempfile.gettempdir())


def lock_path(instance: str) -> Path:
    """The lock file of ``instance`` (validated first)."""
    validate_instance_name(instance)
    return LOCK_DIR / f"{LOCK_PREFIX}{instance}"


def state_path(instance: str) -> Path:
    """The state file of ``instance`` (validated first)."""
    validate_instance_name(instance)
    return runtime_dir() / f"petra-{instance}.json"


def read_state(instance: str) -> dict[str, Any]:
    """The supervisor's state file as a dict; a missing, unreadable or corrupt file is
    a :class:`PetraError` that says so (never proof that a supervisor runs)."""
    path = state_path(instance)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise PetraError(f"instance {instance!r} is not running under a supervisor "
                         f"(no {path})") from None
    except OSError as exc:
        raise PetraError(f"cannot read the state file {path}: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise PetraError(f"the state file {path} is not a regular file")
        raw = os.read(fd, STATE_MAX_BYTES)
    finally:
        os.close(fd)
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise PetraError(f"the state file {path} is corrupt (not a JSON object); is "
                         f"instance {instance!r} running? (`petra segment list`)")
    return data


def _lock_inode(instance: str) -> tuple[int, int] | None:
    """(device, inode) of the lock file, or None when there is none."""
    try:
        st = os.stat(lock_path(instance), follow_symlinks=False)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _holders(dev: int, ino: int, locks: str) -> list[int]:
    """Pids holding a lock on (dev, ino) per ``/proc/locks`` text. A line reads
    ``1: FLOCK  ADVISORY  WRITE 812 00:1a:4711 0 EOF``; blocked waiters (``->``) are
    not holders."""
    want = f"{os.major(dev):02x}:{os.minor(dev):02x}:{ino}"
    out: list[int] = []
    for line in locks.splitlines():
        parts = line.split()
        if len(parts) < 6 or parts[1] == "->":
            continue
        with contextlib.suppress(ValueError):
            if parts[5] == want:
                out.append(int(parts[4]))
    return out


def supervisor_pid(instance: str) -> int | None:
    """The pid holding ``instance``'s lock, per the kernel (``/proc/locks``), or None
    when no process holds it (no supervisor runs, whatever the state file says)."""
    ident = _lock_inode(instance)
    if ident is None:
        return None
    try:
        with open("/proc/locks") as f:
            text = f.read()
    except OSError as exc:  # pragma: no cover - procfs is there on Linux
        raise PetraError(f"cannot read /proc/locks to find the supervisor: {exc}") from None
    holders = [p for p in _holders(*ident, text) if p > 0]
    return holders[0] if holders else None


def signal_supervisor(instance: str, sig: signal.Signals) -> int:
    """Send ``sig`` to the supervisor of ``instance``, proved by the lock; its pid.

    Raises :class:`PetraError` when no process holds the lock. The signal goes through
    a pidfd opened on the holder and checked to be the holder after opening, so a pid
    reused between the check and the signal cannot receive it.
    """
    for _ in range(3):
        pid = supervisor_pid(instance)
        if pid is None:
            raise PetraError(f"instance {instance!r} is not running: no process holds its "
                             f"lock {lock_path(instance)}")
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue  # the holder just died; look again
        except OSError as exc:
            if exc.errno != errno.ENOSYS:
                raise
            pidfd = -1  # a kernel without pidfds: plain kill after the check below
        try:
            if supervisor_pid(instance) != pid:
                continue  # the holder changed while we opened the pidfd
            try:
                if pidfd >= 0:
                    signal.pidfd_send_signal(pidfd, sig)
                else:
                    os.kill(pid, sig)
            except PermissionError:
                raise PetraError(f"not permitted to signal the supervisor of {instance!r} "
                                 f"(pid {pid}); run as its user or root") from None
            except ProcessLookupError:
                continue
            return pid
        finally:
            if pidfd >= 0:
                os.close(pidfd)
    raise PetraError(f"the supervisor of {instance!r} kept changing; try again")


class InstanceLock:
    """Held for the supervisor's lifetime; see the module text for the rules."""

    def __init__(self, instance: str) -> None:
        validate_instance_name(instance)  # before any path is made from it
        self.instance = instance
        self.path = lock_path(instance)
        self._fd = -1
        self.replaced_stale = False

    def _open(self) -> int:
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags, LOCK_MODE)
        except OSError as exc:
            owner = ""
            with contextlib.suppress(OSError):
                owner = f" (owned by uid {os.stat(self.path, follow_symlinks=False).st_uid})"
            raise PetraError(f"cannot open the lock {self.path} of instance "
                             f"{self.instance!r}{owner}: {exc.strerror}") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            os.close(fd)
            raise PetraError(f"the lock {self.path} of instance {self.instance!r} is not a "
                             "plain file (another user's trap?); remove it")
        return fd

    def acquire(self) -> None:
        for _ in range(10):
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = supervisor_pid(self.instance) or "?"
                os.close(fd)
                raise InstanceRunningError(
                    f"instance {self.instance!r} is already running (supervisor pid "
                    f"{holder}); stop it first or choose another instance name") from None
            # A holder that released and unlinked the file between our open and our
            # lock leaves us holding an orphan inode: open the new file instead.
            try:
                same = os.stat(self.path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        else:  # pragma: no cover - ten lost races in a row
            raise InstanceRunningError(f"could not take the lock of {self.instance!r}")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        if self.instance in list_instances():
            unlink_instance(self.instance)
            self.replaced_stale = True

    def write_state(self, **fields: Any) -> None:
        """Replace the state file atomically (a private temp file, then rename)."""
        path = state_path(self.instance)
        data = json.dumps({"pid": os.getpid(), "instance": self.instance, **fields})
        fd, tmp = tempfile.mkstemp(prefix=f".petra-{self.instance}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(data)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def release(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            state_path(self.instance).unlink()
        if self._fd >= 0:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()  # while still locked: see acquire() for the race
            os.close(self._fd)
            self._fd = -1
