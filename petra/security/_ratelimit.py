"""Brute-force protection: failures counted per user and per address, with lockout.

A user name that fails ``user_failures`` times within ``window_s`` is locked for
``lockout_s``, whoever tries; an address that fails ``address_failures`` times is
locked the same way for every name. While locked, a login is refused *without*
checking the password, so a locked account gives an attacker no oracle. Unknown user
names are counted like real ones (the answer must not tell them apart). Memory is
bounded: at most ``max_entries`` names and addresses are tracked, the least recently
seen forgotten first. The clock is injectable.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from petra.security._errors import LockedOutError


@dataclass(frozen=True, slots=True)
class LockoutPolicy:
    user_failures: int = 5
    address_failures: int = 20
    window_s: float = 900.0
    lockout_s: float = 900.0
    max_entries: int = 10_000


class _Entry:
    __slots__ = ("failures", "locked_until")

    def __init__(self) -> None:
        self.failures: deque[float] = deque()
        self.locked_until = 0.0


class LoginGuard:
    def __init__(self, policy: LockoutPolicy = LockoutPolicy(),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self.clock = clock
        self._users: OrderedDict[str, _Entry] = OrderedDict()
        self._addrs: OrderedDict[str, _Entry] = OrderedDict()

    def check(self, user: str | None, address: str) -> None:
        """Raise :class:`LockedOutError` while the user or the address is locked."""
        now = self.clock()
        for table, key, what in ((self._users, _user_key(user), "this user"),
                                 (self._addrs, address, "this address")):
            if key is None:
                continue
            entry = table.get(key)
            if entry is not None and entry.locked_until > now:
                raise LockedOutError(f"too many failed attempts for {what}; try again later",
                                     entry.locked_until - now)

    def failure(self, user: str | None, address: str) -> None:
        now = self.clock()
        p = self.policy
        for table, key, limit in ((self._users, _user_key(user), p.user_failures),
                                  (self._addrs, address, p.address_failures)):
            if key is None:
                continue
            entry = self._entry(table, key)
            entry.failures.append(now)
            while entry.failures and now - entry.failures[0] > p.window_s:
                entry.failures.popleft()
            if len(entry.failures) >= limit:
                entry.locked_until = now + p.lockout_s
                entry.failures.clear()

    def success(self, user: str | None, address: str) -> None:
        """A good login clears the user's failures (the address keeps its count: one
        good password does not license guessing others from there)."""
        key = _user_key(user)
        if key is not None:
            self._users.pop(key, None)

    def _entry(self, table: OrderedDict[str, _Entry], key: str) -> _Entry:
        entry = table.get(key)
        if entry is None:
            entry = table[key] = _Entry()
            while len(table) > self.policy.max_entries:
                table.popitem(last=False)
        else:
            table.move_to_end(key)
        return entry


def _user_key(user: str | None) -> str | None:
    return user.lower()[:128] if user else None
