"""Who may do what: permissions, the roles that hold them, and the principal acting.

One table (:data:`ROLE_PERMISSIONS`) decides every access question, whatever the way
in: an API endpoint names the permission it needs, an MQTT command maps its operation
to one, ``petra write`` and petra-top ask for :attr:`Permission.SIGNAL_WRITE` like
everyone else. Roles are ordered (:class:`petra.types.AccessRole`): each holds the
permissions of the roles below it, plus its own.
"""

from __future__ import annotations

import enum
import getpass
import os
from dataclasses import dataclass

from petra.security._errors import PermissionDeniedError
from petra.types import AccessRole


class Permission(enum.StrEnum):
    """One kind of action. The value is the action's name in the audit log."""

    SIGNAL_READ = "signal.read"
    STATUS_READ = "status.read"
    ALARM_READ = "alarm.read"
    SIGNAL_WRITE = "signal.write"
    ALARM_ACK = "alarm.ack"
    ALARM_SHELVE = "alarm.shelve"
    CONFIG_RELOAD = "config.reload"
    ALARM_SERVICE = "alarm.service"  # out of service / return to service
    USER_MANAGE = "user.manage"
    AUDIT_READ = "audit.read"


_OWN: dict[AccessRole, frozenset[Permission]] = {
    AccessRole.VIEWER: frozenset({Permission.SIGNAL_READ, Permission.STATUS_READ,
                                  Permission.ALARM_READ}),
    AccessRole.OPERATOR: frozenset({Permission.SIGNAL_WRITE, Permission.ALARM_ACK,
                                    Permission.ALARM_SHELVE}),
    AccessRole.ENGINEER: frozenset({Permission.CONFIG_RELOAD, Permission.ALARM_SERVICE}),
    AccessRole.ADMIN: frozenset({Permission.USER_MANAGE, Permission.AUDIT_READ}),
}

ROLE_PERMISSIONS: dict[AccessRole, frozenset[Permission]] = {
    role: frozenset().union(*(_OWN[r] for r in AccessRole if r <= role))
    for role in AccessRole
}
"""Every permission of each role (its own and those of the roles below it)."""


def minimum_role(permission: Permission) -> AccessRole:
    """The lowest role holding ``permission``."""
    return min(r for r in AccessRole if permission in ROLE_PERMISSIONS[r])


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is acting, as the audit log records it.

    ``name``: the user (``alice``), a local OS user (``local:root``) or a broker user
    (``mqtt:scada``); ``via``: the way in (``api``, ``cli``, ``top``, ``mqtt``);
    ``source``: the peer address, or ``local`` with the pid."""

    name: str
    role: AccessRole
    via: str
    source: str = ""

    def may(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS[self.role]

    def require(self, permission: Permission) -> None:
        """Raise :class:`PermissionDeniedError` unless the role holds ``permission``."""
        if not self.may(permission):
            raise PermissionDeniedError(
                f"{self.name} ({self.role.label}) may not {permission.value}; it needs the "
                f"{minimum_role(permission).label} role")


LOCAL_ROLE = AccessRole.OPERATOR
"""The role of a local tool (``petra write``, petra-top). Such a tool maps the shared
segment read-write, which the OS grants only to root and the ``petra`` group: that file
permission is its authentication, and writing writable signals is all it does."""


def local_principal(via: str) -> Principal:
    """The OS user running this tool, as a principal (``local:alice``); a ``sudo``
    records who called it (``local:root(sudo:alice)``)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    sudo = os.environ.get("SUDO_USER")
    name = f"local:{user}" + (f"(sudo:{sudo})" if sudo and sudo != user else "")
    return Principal(name, LOCAL_ROLE, via, f"local:{os.getpid()}")
