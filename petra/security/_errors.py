"""The security branch of the :class:`~petra.errors.PetraError` tree.

Each class says what the caller does next: ask again (authentication), stop (not
allowed), wait (locked out), or refuse the action because it cannot be recorded
(audit). The API maps them to 401, 403, 429 and 503.
"""

from __future__ import annotations

from petra.errors import PetraError


class SecurityError(PetraError):
    """Root of the security errors."""


class AuthenticationError(SecurityError):
    """Who is asking is not established: wrong password, bad or expired token, unknown
    API key. The message never says which of user and password was wrong."""


class PermissionDeniedError(SecurityError):
    """The principal is known but its role does not allow the action."""


class LockedOutError(AuthenticationError):
    """Too many failed attempts for this user or from this address; try again after
    :attr:`retry_after_s` seconds."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class UsersFileError(SecurityError):
    """The users file is missing, unreadable or malformed, or a change to it is not
    valid (unknown user, duplicate name, bad role, weak password)."""


class AuditError(SecurityError):
    """The audit log cannot be appended to (or is unreadable); an action that cannot
    be recorded is not done."""


class SecretError(SecurityError):
    """A configured secret (file, environment variable, systemd credential) is
    missing or unusable. The message names where it was looked for, never its value."""
