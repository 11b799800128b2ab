"""Where security data lives by default, and the file modes it is created with.

- The users file is box-wide: ``$PETRA_USERS_FILE``, else ``/etc/petra/users.json``.
- The audit log is box-wide too (each record names its instance): ``$PETRA_DATA_DIR``,
  else ``/var/lib/petra`` when it can be used, else ``$XDG_STATE_HOME/petra`` (or
  ``~/.local/state/petra``), then ``audit/audit.log`` below it.

Both files are created with mode 0660/0640 and handed to the ``petra`` group when it
exists, like the shared segment: the group is what lets the API process, a sink and
an operator's ``petra write`` append to the same audit chain, and nobody else.
"""

from __future__ import annotations

import contextlib
import grp
import os
from pathlib import Path

PETRA_GROUP = "petra"
AUDIT_MODE = 0o660  # every petra process appends (API, sinks, petra write, petra-top)
USERS_MODE = 0o640  # the API reads; the owner (root or petra) writes
DIR_MODE = 0o2770  # setgid: files below inherit the petra group


def data_dir() -> Path:
    """The directory of Petra's persistent data on this box (see module docstring)."""
    env = os.environ.get("PETRA_DATA_DIR")
    if env:
        return Path(env)
    var = Path("/var/lib/petra")
    with contextlib.suppress(OSError):
        var.mkdir(parents=True, exist_ok=True)
        if os.access(var, os.W_OK):
            return var
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "petra"


def default_users_file() -> Path:
    env = os.environ.get("PETRA_USERS_FILE")
    return Path(env) if env else Path("/etc/petra/users.json")


def default_audit_file() -> Path:
    return data_dir() / "audit" / "audit.log"


def resolve(path: str | os.PathLike[str], base: Path | None) -> Path:
    """``path`` as given when absolute, else relative to ``base`` (the plant file's
    directory) when given, else to the working directory."""
    p = Path(path)
    if p.is_absolute() or base is None:
        return p
    return base / p


def petra_gid() -> int | None:
    try:
        return grp.getgrnam(PETRA_GROUP).gr_gid
    except KeyError:
        return None


def give_to_group(fd: int, mode: int) -> None:
    """Set ``mode`` on an open file and hand it to the petra group when there is one
    (a failure to chown is not fatal: the mode still keeps others out)."""
    gid = petra_gid()
    if gid is not None:
        with contextlib.suppress(OSError):
            os.fchown(fd, -1, gid)
    with contextlib.suppress(OSError):
        os.fchmod(fd, mode)


def make_dir(path: Path) -> None:
    """Create ``path`` (and parents) for security data: group petra, no access for others."""
    if path.is_dir():
        return
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        give_to_group(fd, DIR_MODE)
    finally:
        os.close(fd)
