"""Users, roles, tokens, audit and the one authorised write path.

Pure Python on the vocabulary layer (no C core, no segment): ``petra user`` and
``petra audit`` run on a box whose C extension is not built, and every runtime role
and tool (the API, the MQTT command sink, ``petra write``, petra-top) can import it
without importing each other. See ``docs/security.md``.
"""

from petra.security._audit import (
    GENESIS,
    AuditLog,
    VerifyReport,
    audit_files,
    json_safe,
    plant_audit_log,
    record_hash,
    verify_audit,
)
from petra.security._authorise import CheckedSegment, WriteResult, authorised_write
from petra.security._errors import (
    AuditError,
    AuthenticationError,
    LockedOutError,
    PermissionDeniedError,
    SecretError,
    SecurityError,
    UsersFileError,
)
from petra.security._passwords import (
    DEFAULT_COST,
    MIN_PASSWORD_CHARS,
    Argon2Cost,
    Passwords,
    check_password_policy,
)
from petra.security._paths import (
    data_dir,
    default_audit_file,
    default_users_file,
    resolve,
)
from petra.security._ratelimit import LockoutPolicy, LoginGuard
from petra.security._roles import (
    LOCAL_ROLE,
    ROLE_PERMISSIONS,
    Permission,
    Principal,
    local_principal,
    minimum_role,
)
from petra.security._secrets import Secret, read_secret
from petra.security._tokens import Claims, TokenIssuer, TokenPair
from petra.security._users import (
    ApiKey,
    User,
    Users,
    UsersCache,
    UsersFile,
    add_key,
    add_user,
    delete_key,
    delete_user,
    parse_api_key,
    require_user,
    set_disabled,
    set_password,
    set_role,
    validate_username,
)
from petra.types import AccessRole

__all__ = [
    "DEFAULT_COST",
    "GENESIS",
    "LOCAL_ROLE",
    "MIN_PASSWORD_CHARS",
    "ROLE_PERMISSIONS",
    "AccessRole",
    "ApiKey",
    "Argon2Cost",
    "AuditError",
    "AuditLog",
    "AuthenticationError",
    "CheckedSegment",
    "Claims",
    "LockedOutError",
    "LockoutPolicy",
    "LoginGuard",
    "Passwords",
    "Permission",
    "PermissionDeniedError",
    "Principal",
    "Secret",
    "SecretError",
    "SecurityError",
    "TokenIssuer",
    "TokenPair",
    "User",
    "Users",
    "UsersCache",
    "UsersFile",
    "UsersFileError",
    "VerifyReport",
    "WriteResult",
    "add_key",
    "add_user",
    "audit_files",
    "authorised_write",
    "check_password_policy",
    "data_dir",
    "default_audit_file",
    "default_users_file",
    "delete_key",
    "delete_user",
    "json_safe",
    "local_principal",
    "minimum_role",
    "parse_api_key",
    "plant_audit_log",
    "read_secret",
    "record_hash",
    "require_user",
    "resolve",
    "set_disabled",
    "set_password",
    "set_role",
    "validate_username",
    "verify_audit",
]
