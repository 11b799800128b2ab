"""What local tools (``petra write``, petra-top, ``petra user``) share: the audit log
of an instance and the users file named on the command line or by the plant.

Kept free of the C core at import time like every subcommand module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from petra.errors import PetraError
from petra.security import AuditLog, UsersFile, default_audit_file, default_users_file, resolve


def instance_audit(instance: str) -> AuditLog:
    """The audit log a running instance records to: what its supervisor announced in
    its state file, else the default location."""
    from petra.supervisor import read_state

    try:
        state: dict[str, Any] = read_state(instance)
    except (PetraError, OSError, ValueError):  # no supervisor: the default applies
        state = {}
    path = state.get("audit_file")
    rotate, keep = state.get("audit_rotate_bytes"), state.get("audit_keep")
    log = AuditLog(Path(path) if isinstance(path, str) else default_audit_file(),
                   instance=instance)
    if isinstance(rotate, int) and isinstance(keep, int):
        log = AuditLog(log.path, instance=instance, rotate_bytes=rotate, keep=keep)
    return log


def plant_paths(plant: str | None) -> tuple[Path | None, Path | None, Any]:
    """(users file, audit file, api config) named by a plant's ``api:`` section."""
    if plant is None:
        return None, None, None
    from petra.config import load_plant

    cfg = load_plant(plant).config
    api = cfg.api
    base = Path(plant).resolve().parent
    users = resolve(api.users_file, base) if api is not None and api.users_file else None
    audit = resolve(api.audit_file, base) if api is not None and api.audit_file else None
    return users, audit, cfg


def users_file(explicit: str | None, plant: str | None) -> UsersFile:
    if explicit:
        return UsersFile(explicit)
    users, _, _ = plant_paths(plant)
    return UsersFile(users or default_users_file())


def audit_log(explicit: str | None, plant: str | None) -> AuditLog:
    if explicit:
        return AuditLog(explicit)
    _, audit, cfg = plant_paths(plant)
    instance = cfg.instance if cfg is not None else ""
    return AuditLog(audit or default_audit_file(), instance=instance)
