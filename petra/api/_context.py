"""What every handler of the API process shares: the segment, users, tokens, the
login guard, the audit log, and the counters the heartbeat reports.

Authentication lives here (:meth:`ApiContext.authenticate`): a bearer credential is
either an API key (``petra_<id>_<secret>``, checked against the users file in
constant time) or an access token (PyJWT); either way the user must still exist, be
enabled and, for a token, be at the generation the token was issued for, so a
password change, a role change or a deletion takes effect at the next request.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from petra.config._api import ApiConfig
from petra.security import (
    AuditLog,
    AuthenticationError,
    LockedOutError,
    LoginGuard,
    Passwords,
    Principal,
    TokenIssuer,
    User,
    UsersCache,
    parse_api_key,
)
from petra.shm import Segment
from petra.types import ApiCounter

if TYPE_CHECKING:
    from petra.api._alarms import AlarmsLink

log = logging.getLogger("petra.api")

VIA = "api"
LOGIN_CONCURRENCY = 2  # argon2 verifications at once (each ~100 ms of one core)


@dataclass(slots=True)
class Session:
    """An authenticated caller: the principal and how long its credential lasts."""

    principal: Principal
    user: User
    expires: float | None  # token expiry (time.time()); None for an API key
    credential: str  # "token" or "api_key"
    key_id: str = ""  # the API key's id, for an API key session


@dataclass
class ApiContext:
    segment: Segment
    config: ApiConfig
    users: UsersCache
    passwords: Passwords
    tokens: TokenIssuer
    guard: LoginGuard
    audit: AuditLog
    instance: str
    state_file: Path | None = None
    tls: bool = False
    alarms: AlarmsLink | None = None  # the plant's alarm manager, when it has alarms:
    history_dir: Path | None = None  # the Parquet store read by GET /history
    counters: list[int] = field(default_factory=lambda: [0] * len(ApiCounter))
    login_slots: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(LOGIN_CONCURRENCY))

    def count(self, counter: ApiCounter, n: int = 1) -> None:
        self.counters[counter] += n

    def authenticate(self, credential: str, address: str) -> Session:
        """The session for a bearer credential; AuthenticationError (or LockedOutError
        for an address that failed too often) otherwise."""
        self.guard.check(None, address)
        users = self.users.get()
        try:
            if parse_api_key(credential) is not None:
                user = users.check_api_key(credential)
                if user is None:
                    raise AuthenticationError("invalid API key")
                kid = parse_api_key(credential)
                return Session(Principal(user.name, user.role, VIA, address), user, None,
                               "api_key", kid[0] if kid else "")
            claims = self.tokens.decode(credential)
            found = users.get(claims.user)
            if found is None or found.disabled or found.generation != claims.generation:
                raise AuthenticationError("token revoked")
            return Session(Principal(found.name, found.role, VIA, address), found,
                           claims.expires, "token")
        except AuthenticationError:
            if credential.startswith("petra_"):
                # a wrong API key is a guess like a wrong password
                self.guard.failure(None, address)
            raise

    def check_locked(self, name: str, address: str) -> LockedOutError | None:
        try:
            self.guard.check(name, address)
        except LockedOutError as exc:
            return exc
        return None

    def audit_name(self, name: str) -> str:
        """How a login name goes into the audit log: as typed when it is a user, else
        a fingerprint (people type passwords into the name field)."""
        if name in self.users.get():
            return name
        return "unknown:" + hashlib.sha256(name.encode("utf-8", "replace")).hexdigest()[:12]

    async def record(self, principal: Principal | None, action: str, target: str = "",
                     **kw: Any) -> dict[str, Any]:
        """Append to the audit log off the event loop (it fsyncs)."""
        return await asyncio.to_thread(self.audit.append, principal, action, target, **kw)
