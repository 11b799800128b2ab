"""One live instance per name: the lock file, the state file, stale segments.

The lock is an ``flock`` on ``<runtime>/petra-<instance>.lock``: the kernel drops it
when its holder dies, however it dies, so a lock we can take means no supervisor of
that name is alive, and a segment still present under the name is stale (its
supervisor was killed) and is replaced. ``<runtime>`` is ``$PETRA_RUNTIME_DIR``,
else ``/run/petra`` when writable, else the system temp directory.

The state file ``<runtime>/petra-<instance>.json`` tells tools (``petra reload``,
tests) the supervisor's pid and where its health endpoint listens.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from petra.errors import InstanceRunningError, PetraError
from petra.shm import list_instances, unlink_instance


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


def state_path(instance: str) -> Path:
    return runtime_dir() / f"petra-{instance}.json"


def read_state(instance: str) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(state_path(instance).read_text())
    except FileNotFoundError:
        raise PetraError(f"instance {instance!r} is not running under a supervisor "
                         f"(no {state_path(instance)})") from None
    return data


class InstanceLock:
    """Held for the supervisor's lifetime."""

    def __init__(self, instance: str) -> None:
        self.instance = instance
        self.path = runtime_dir() / f"petra-{instance}.lock"
        self._fd = -1
        self.replaced_stale = False

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise InstanceRunningError(
                f"instance {self.instance!r} is already running (supervisor pid {holder}); "
                f"stop it first or choose another instance name") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        if self.instance in list_instances():
            unlink_instance(self.instance)
            self.replaced_stale = True

    def write_state(self, **fields: Any) -> None:
        path = state_path(self.instance)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "instance": self.instance, **fields}))
        tmp.replace(path)

    def release(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            state_path(self.instance).unlink()
        if self._fd >= 0:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            os.close(self._fd)
            self._fd = -1
