"""The users file: who may log in, with which role, and their API keys.

A JSON file (box-wide, default ``/etc/petra/users.json``, mode 0640, group ``petra``)::

    {"format": "petra-users/1",
     "users": [{"name": "alice", "role": "admin", "password": "$argon2id$v=19$...",
                "generation": 3, "disabled": false,
                "keys": [{"id": "3f9c0a1b2c4d", "sha256": "...", "label": "scada",
                          "created": "2026-12-01T10:00:00Z"}],
                "created": "...", "changed": "..."}]}

There is no default user and no default password: the file starts empty and the first
admin is made by ``petra user add NAME --role admin``. Passwords are argon2id hashes;
API keys (``petra_<id>_<secret>``, 256 random bits) are stored as SHA-256 of the
secret: a high-entropy key needs no slow hash, and the stored digest is useless for
logging in. ``generation`` grows with every password, role or state change: tokens
carry the generation they were issued at, so a change revokes them at once.

Every change takes an ``flock`` on ``users.json.lock``, reads the file, changes it and
replaces it atomically (write, fsync, rename): ``petra user`` and the API's admin
endpoints can change it at the same time without losing either change.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from petra.security._errors import UsersFileError
from petra.security._paths import USERS_MODE, give_to_group
from petra.types import AccessRole

FORMAT = "petra-users/1"
USERNAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
KEY_PREFIX = "petra"
KEY_ID_HEX = 12
KEY_RE = re.compile(r"petra_([0-9a-f]{12})_([A-Za-z0-9_-]{20,128})")
MAX_KEYS_PER_USER = 16
MAX_LABEL_CHARS = 64
_DUMMY_DIGEST = hashlib.sha256(b"petra-dummy-key").hexdigest()

T = TypeVar("T")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def validate_username(name: object) -> str:
    if not isinstance(name, str) or not USERNAME_RE.fullmatch(name):
        raise UsersFileError(
            f"user name {str(name)[:80]!r} is invalid: 1-64 characters of A-Z a-z 0-9 _ . -, "
            "starting with a letter")
    return name


@dataclass(slots=True)
class ApiKey:
    id: str
    sha256: str
    label: str = ""
    created: str = ""


@dataclass(slots=True)
class User:
    name: str
    role: AccessRole
    password: str | None = None  # argon2id hash; None: API keys only
    generation: int = 1
    disabled: bool = False
    keys: list[ApiKey] = field(default_factory=list)
    created: str = ""
    changed: str = ""

    def public(self) -> dict[str, Any]:
        """What an admin may see: never a hash."""
        return {"name": self.name, "role": self.role.label, "disabled": self.disabled,
                "has_password": self.password is not None,
                "keys": [{"id": k.id, "label": k.label, "created": k.created}
                         for k in self.keys],
                "created": self.created, "changed": self.changed}

    def touch(self) -> None:
        """Record a change that must revoke this user's tokens."""
        self.generation += 1
        self.changed = _now()


def new_api_key() -> tuple[str, ApiKey]:
    """(the key to show once, what is stored)."""
    kid = secrets.token_hex(KEY_ID_HEX // 2)
    secret = secrets.token_urlsafe(32)
    return (f"{KEY_PREFIX}_{kid}_{secret}",
            ApiKey(kid, hashlib.sha256(secret.encode()).hexdigest(), created=_now()))


def parse_api_key(text: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed key, else None."""
    m = KEY_RE.fullmatch(text)
    return (m.group(1), m.group(2)) if m else None


class Users:
    """The users of one file, by name (a value object: change through
    :meth:`UsersFile.update`)."""

    def __init__(self, users: dict[str, User] | None = None) -> None:
        self.by_name: dict[str, User] = users or {}
        self._by_key: dict[str, tuple[User, ApiKey]] = {
            k.id: (u, k) for u in self.by_name.values() for k in u.keys}

    def __contains__(self, name: object) -> bool:
        return name in self.by_name

    def __len__(self) -> int:
        return len(self.by_name)

    def get(self, name: str) -> User | None:
        return self.by_name.get(name)

    def admins(self) -> list[str]:
        return [u.name for u in self.by_name.values()
                if u.role is AccessRole.ADMIN and not u.disabled]

    def check_api_key(self, key: str) -> User | None:
        """The enabled user owning ``key``; compared in constant time (a well-formed
        key with an unknown id costs the same hash and comparison)."""
        parsed = parse_api_key(key)
        secret = parsed[1] if parsed else key[:128]
        digest = hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()
        found = self._by_key.get(parsed[0]) if parsed else None
        stored = found[1].sha256 if found else _DUMMY_DIGEST
        match = hmac.compare_digest(digest, stored)
        if found is None or not match or found[0].disabled:
            return None
        return found[0]

    # ----------------------------------------------------------------- (de)serialise
    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "users": [
            {"name": u.name, "role": u.role.label, "password": u.password,
             "generation": u.generation, "disabled": u.disabled,
             "keys": [{"id": k.id, "sha256": k.sha256, "label": k.label,
                       "created": k.created} for k in u.keys],
             "created": u.created, "changed": u.changed}
            for u in sorted(self.by_name.values(), key=lambda u: u.name)]}

    @classmethod
    def from_json(cls, data: object, where: str) -> Users:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise UsersFileError(f"{where}: not a Petra users file (format {FORMAT!r})")
        raw = data.get("users")
        if not isinstance(raw, list):
            raise UsersFileError(f"{where}: 'users' must be a list")
        users: dict[str, User] = {}
        for i, entry in enumerate(raw):
            try:
                user = _user_from(entry)
            except (UsersFileError, ValueError, TypeError, KeyError) as exc:
                raise UsersFileError(f"{where}: users[{i}]: {exc}") from None
            if user.name in users:
                raise UsersFileError(f"{where}: user {user.name!r} appears twice")
            users[user.name] = user
        return cls(users)


def _user_from(entry: object) -> User:
    if not isinstance(entry, dict):
        raise UsersFileError("an entry must be an object")
    name = validate_username(entry["name"])
    password = entry.get("password")
    if password is not None and (not isinstance(password, str)
                                 or not password.startswith("$argon2id$")):
        raise UsersFileError("password must be an argon2id hash (use petra user passwd)")
    gen = entry.get("generation", 1)
    if not isinstance(gen, int) or isinstance(gen, bool) or gen < 1:
        raise UsersFileError("generation must be an integer >= 1")
    keys = []
    for k in entry.get("keys", []):
        if not isinstance(k, dict) or not re.fullmatch(r"[0-9a-f]{12}", str(k.get("id"))) \
                or not re.fullmatch(r"[0-9a-f]{64}", str(k.get("sha256"))):
            raise UsersFileError("a key needs an id of 12 hex digits and a sha256 digest")
        keys.append(ApiKey(k["id"], k["sha256"], str(k.get("label", "")),
                           str(k.get("created", ""))))
    return User(name, AccessRole.parse(entry["role"]), password, gen,
                bool(entry.get("disabled", False)), keys, str(entry.get("created", "")),
                str(entry.get("changed", "")))


class UsersFile:
    """One users file on disk."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    def load(self, *, missing_ok: bool = True) -> Users:
        """The users in the file (none when it does not exist and ``missing_ok``)."""
        try:
            text = self.path.read_bytes()
        except FileNotFoundError:
            if missing_ok:
                return Users()
            raise UsersFileError(f"no users file at {self.path} (create the first admin "
                                 "with `petra user add NAME --role admin`)") from None
        except OSError as exc:
            raise UsersFileError(f"cannot read the users file {self.path}: "
                                 f"{exc.strerror}") from None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise UsersFileError(f"{self.path}: not valid JSON ({exc})") from None
        return Users.from_json(data, str(self.path))

    def update(self, change: Callable[[Users], T]) -> T:
        """Lock, load, apply ``change`` to a copy, save; returns what ``change`` did.
        When ``change`` raises, the file is left as it was."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._locked():
            users = self.load()
            work = Users(copy.deepcopy(users.by_name))
            result = change(work)
            self._save(Users(work.by_name))
            return result

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, USERS_MODE)
        except OSError as exc:
            raise UsersFileError(f"cannot lock the users file {self.path}: "
                                 f"{exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _save(self, users: Users) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        data = json.dumps(users.to_json(), indent=1).encode() + b"\n"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                         USERS_MODE)
            try:
                give_to_group(fd, USERS_MODE)
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise UsersFileError(f"cannot write the users file {self.path}: "
                                 f"{exc.strerror}") from None


class UsersCache:
    """The API's view of the users file, re-read when the file changes (one ``stat``
    per call), so a change by ``petra user`` applies to the next request."""

    def __init__(self, file: UsersFile) -> None:
        self.file = file
        self._stamp: tuple[int, int, int] | None = None
        self._users = Users()

    def get(self) -> Users:
        try:
            st = self.file.path.stat()
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = (0, 0, 0)
        if stamp != self._stamp:
            self._users = self.file.load()
            self._stamp = stamp
        return self._users


# ---------------------------------------------------------------------- changes
def add_user(users: Users, name: str, role: AccessRole, password_hash: str | None) -> User:
    validate_username(name)
    if name in users:
        raise UsersFileError(f"user {name!r} exists already")
    now = _now()
    user = User(name, role, password_hash, created=now, changed=now)
    users.by_name[name] = user
    return user


def require_user(users: Users, name: str) -> User:
    user = users.get(name)
    if user is None:
        raise UsersFileError(f"no user named {name!r}")
    return user


def delete_user(users: Users, name: str) -> User:
    user = require_user(users, name)
    if user.role is AccessRole.ADMIN and users.admins() == [name]:
        raise UsersFileError(f"{name!r} is the last admin; add another admin first")
    del users.by_name[name]
    return user


def set_role(users: Users, name: str, role: AccessRole) -> User:
    user = require_user(users, name)
    if user.role is AccessRole.ADMIN and role is not AccessRole.ADMIN \
            and users.admins() == [name]:
        raise UsersFileError(f"{name!r} is the last admin; add another admin first")
    user.role = role
    user.touch()
    return user


def set_disabled(users: Users, name: str, disabled: bool) -> User:
    user = require_user(users, name)
    if disabled and users.admins() == [name]:
        raise UsersFileError(f"{name!r} is the last admin; add another admin first")
    user.disabled = disabled
    user.touch()
    return user


def set_password(users: Users, name: str, password_hash: str | None) -> User:
    user = require_user(users, name)
    user.password = password_hash
    user.touch()
    return user


def add_key(users: Users, name: str, label: str = "") -> tuple[str, ApiKey]:
    user = require_user(users, name)
    if len(user.keys) >= MAX_KEYS_PER_USER:
        raise UsersFileError(f"{name!r} has {MAX_KEYS_PER_USER} keys already; delete one")
    if len(label) > MAX_LABEL_CHARS or any(ord(c) < 32 for c in label):
        raise UsersFileError(f"a key label is at most {MAX_LABEL_CHARS} printable characters")
    text, key = new_api_key()
    key.label = label
    user.keys.append(key)
    user.changed = _now()
    return text, key


def delete_key(users: Users, name: str, key_id: str) -> ApiKey:
    user = require_user(users, name)
    for k in user.keys:
        if k.id == key_id:
            user.keys.remove(k)
            user.changed = _now()
            return k
    raise UsersFileError(f"{name!r} has no key {key_id[:20]!r}")
