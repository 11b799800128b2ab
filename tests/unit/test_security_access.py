"""Users file, passwords, API keys, tokens, lockout, roles and the authorised write
path (against a real segment)."""

from __future__ import annotations

import itertools
import json
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest

from petra.errors import SignalNotWritableError, ValueOutOfRangeError
from petra.security import (
    ROLE_PERMISSIONS,
    AccessRole,
    Argon2Cost,
    AuditLog,
    AuthenticationError,
    LockedOutError,
    LockoutPolicy,
    LoginGuard,
    Passwords,
    Permission,
    PermissionDeniedError,
    Principal,
    Secret,
    TokenIssuer,
    UsersFile,
    UsersFileError,
    add_key,
    add_user,
    authorised_write,
    delete_key,
    delete_user,
    read_secret,
    set_password,
    set_role,
    verify_audit,
)
from petra.shm import Segment, SignalDef, SignalType

FAST = Passwords(Argon2Cost(time_cost=1, memory_kib=8192))


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


# ----------------------------------------------------------------------------- roles
def test_roles_are_ordered_and_each_holds_the_ones_below() -> None:
    roles = list(AccessRole)
    for lower, higher in itertools.pairwise(roles):
        assert ROLE_PERMISSIONS[lower] < ROLE_PERMISSIONS[higher]
    assert Permission.SIGNAL_WRITE not in ROLE_PERMISSIONS[AccessRole.VIEWER]
    assert Permission.CONFIG_RELOAD not in ROLE_PERMISSIONS[AccessRole.OPERATOR]
    assert Permission.USER_MANAGE not in ROLE_PERMISSIONS[AccessRole.ENGINEER]
    assert ROLE_PERMISSIONS[AccessRole.ADMIN] == frozenset(Permission)
    with pytest.raises(ValueError, match="viewer, operator, engineer, admin"):
        AccessRole.parse("root")


# ----------------------------------------------------------------------------- users
def test_users_file_round_trip_mode_and_no_default_user(tmp_path: Path) -> None:
    f = UsersFile(tmp_path / "users.json")
    assert len(f.load()) == 0
    with pytest.raises(UsersFileError, match="petra user add"):
        f.load(missing_ok=False)
    f.update(lambda u: add_user(u, "alice", AccessRole.ADMIN, FAST.hash("a long password")))
    assert stat.S_IMODE(f.path.stat().st_mode) == 0o640
    data = json.loads(f.path.read_text())
    assert data["users"][0]["password"].startswith("$argon2id$")
    assert "a long password" not in f.path.read_text()
    users = f.load()
    assert FAST.verify(users.by_name["alice"].password, "a long password")
    assert not FAST.verify(users.by_name["alice"].password, "a long passwore")


def test_the_last_admin_cannot_go(tmp_path: Path) -> None:
    f = UsersFile(tmp_path / "users.json")
    f.update(lambda u: add_user(u, "alice", AccessRole.ADMIN, None))
    with pytest.raises(UsersFileError, match="last admin"):
        f.update(lambda u: delete_user(u, "alice"))
    with pytest.raises(UsersFileError, match="last admin"):
        f.update(lambda u: set_role(u, "alice", AccessRole.VIEWER))
    f.update(lambda u: add_user(u, "bob", AccessRole.ADMIN, None))
    f.update(lambda u: delete_user(u, "alice"))
    assert list(f.load().by_name) == ["bob"]


def test_a_failed_change_leaves_the_file_alone(tmp_path: Path) -> None:
    f = UsersFile(tmp_path / "users.json")
    f.update(lambda u: add_user(u, "alice", AccessRole.ADMIN, None))
    before = f.path.read_bytes()
    with pytest.raises(UsersFileError):
        f.update(lambda u: (add_user(u, "carl", AccessRole.VIEWER, None),
                            add_user(u, "alice", AccessRole.VIEWER, None)))
    assert f.path.read_bytes() == before


@pytest.mark.parametrize("text", ['{"format": "x", "users": []}', "[]", "{",
                                  '{"format": "petra-users/1", "users": [{"name": "a", '
                                  '"role": "boss"}]}',
                                  '{"format": "petra-users/1", "users": [{"name": "a", '
                                  '"role": "admin", "password": "plaintext"}]}'])
def test_malformed_users_files_are_refused(tmp_path: Path, text: str) -> None:
    (tmp_path / "u.json").write_text(text)
    with pytest.raises(UsersFileError):
        UsersFile(tmp_path / "u.json").load()


def test_changes_bump_the_generation(tmp_path: Path) -> None:
    f = UsersFile(tmp_path / "users.json")
    f.update(lambda u: add_user(u, "alice", AccessRole.ADMIN, None))
    f.update(lambda u: add_user(u, "bob", AccessRole.VIEWER, None))
    g0 = f.load().by_name["bob"].generation
    f.update(lambda u: set_password(u, "bob", FAST.hash("another password")))
    f.update(lambda u: set_role(u, "bob", AccessRole.OPERATOR))
    assert f.load().by_name["bob"].generation == g0 + 2


def test_api_keys_are_stored_hashed_and_checked(tmp_path: Path) -> None:
    f = UsersFile(tmp_path / "users.json")
    f.update(lambda u: add_user(u, "m", AccessRole.OPERATOR, None))
    text, key = f.update(lambda u: add_key(u, "m", "scada"))
    assert text.startswith(f"petra_{key.id}_") and text.split("_", 2)[2] not in \
        f.path.read_text()
    users = f.load()
    assert users.check_api_key(text) is not None
    assert users.check_api_key(text[:-1] + ("A" if text[-1] != "A" else "B")) is None
    assert users.check_api_key("petra_000000000000_" + "x" * 43) is None
    assert users.check_api_key("garbage") is None
    f.update(lambda u: delete_key(u, "m", key.id))
    assert f.load().check_api_key(text) is None


@pytest.mark.parametrize("pw", ["short", " leading blank x", "trailing blank x ",
                                "tab\tinside pw", "x" * 1025])
def test_password_policy(pw: str) -> None:
    with pytest.raises(UsersFileError):
        FAST.hash(pw)


def test_unknown_users_cost_a_verification_too() -> None:
    assert FAST.verify(None, "anything at all") is False
    assert FAST.verify("$argon2id$garbage", "anything") is False


def test_the_default_cost_is_argon2id_at_least_19_mib() -> None:
    digest = Passwords().hash("a long password here")
    assert digest.startswith("$argon2id$v=19$m=19456,t=3,p=1$")


# ----------------------------------------------------------------------------- CLI
def _petra(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "petra", *args], input=stdin,
                          capture_output=True, text=True, timeout=120, check=False)


def test_petra_user_add_passwd_list_del(tmp_path: Path) -> None:
    users, audit = str(tmp_path / "users.json"), str(tmp_path / "audit.log")
    base = ("user", "--users", users, "--audit", audit)
    out = _petra(*base, "add", "alice", "--role", "admin", "--password-stdin",
                 stdin="a long password\n")
    assert out.returncode == 0, out.stderr
    out = _petra(*base, "add", "bob", "--role", "viewer", "--password-stdin", stdin="short\n")
    assert out.returncode == 1 and "at least 10" in out.stderr
    assert _petra(*base, "add", "bob", "--role", "viewer", "--no-password").returncode == 0
    out = _petra(*base, "list", "--json")
    rows = json.loads(out.stdout)["users"]
    assert [(r["name"], r["role"], r["has_password"]) for r in rows] == [
        ("alice", "admin", True), ("bob", "viewer", False)]
    key = _petra(*base, "key", "add", "bob", "--label", "scada")
    assert key.returncode == 0 and key.stdout.startswith("petra_")
    assert _petra(*base, "passwd", "bob", "--password-stdin",
                  stdin="bobs new password\n").returncode == 0
    out = _petra(*base, "del", "alice")
    assert out.returncode == 1 and "last admin" in out.stderr
    assert _petra(*base, "del", "bob").returncode == 0
    actions = [json.loads(x)["action"] for x in Path(audit).read_text().splitlines()]
    assert actions == ["user.add", "user.add", "user.key_add", "user.passwd", "user.del"]
    assert verify_audit(audit).ok
    assert "a long password" not in Path(audit).read_text()


# ----------------------------------------------------------------------------- tokens
def test_tokens_expire_on_the_injected_clock() -> None:
    clock = Clock()
    issuer = TokenIssuer(Secret(b"k" * 32), "petra-api:t", access_ttl_s=60,
                         refresh_ttl_s=600, clock=clock)
    pair = issuer.issue("alice", 3)
    claims = issuer.decode(pair.access_token)
    assert (claims.user, claims.generation) == ("alice", 3)
    clock.t += 59
    issuer.decode(pair.access_token)
    clock.t += 1
    with pytest.raises(AuthenticationError, match="expired"):
        issuer.decode(pair.access_token)
    assert issuer.use_refresh(pair.refresh_token).user == "alice"
    with pytest.raises(AuthenticationError, match="already used"):
        issuer.use_refresh(pair.refresh_token)
    later = issuer.issue("alice", 3).refresh_token
    clock.t += 600
    with pytest.raises(AuthenticationError, match="expired"):
        issuer.use_refresh(later)


@pytest.mark.filterwarnings("ignore:The HMAC key")
def test_tokens_of_another_key_audience_or_algorithm_are_refused() -> None:
    a = TokenIssuer(Secret(b"k" * 32), "petra-api:one")
    b = TokenIssuer(Secret(b"j" * 32), "petra-api:one")
    c = TokenIssuer(Secret(b"k" * 32), "petra-api:two")
    token = a.issue("alice", 1).access_token
    for other in (b, c):
        with pytest.raises(AuthenticationError):
            other.decode(token)
    forged = jwt.encode({"sub": "alice", "gen": 1, "typ": "access", "aud": "petra-api:one",
                         "iat": 0, "exp": 2**40, "jti": "x"}, "k" * 32, algorithm="HS512")
    with pytest.raises(AuthenticationError):
        a.decode(forged)
    with pytest.raises(AuthenticationError):
        a.decode(a.issue("alice", 1).refresh_token)  # a refresh token is not an access one


def test_secrets_from_file_env_or_credentials_never_print(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    (tmp_path / "key").write_bytes(b"s" * 40 + b"\n")
    secret = read_secret(file=tmp_path / "key")
    assert secret is not None and secret.reveal() == b"s" * 40
    assert "s" * 10 not in repr(secret) + str(secret)
    monkeypatch.setenv("PETRA_TEST_KEY", "e" * 32)
    assert read_secret(env="PETRA_TEST_KEY") is not None
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "petra-api-token-key").write_bytes(b"c" * 32)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "creds"))
    got = read_secret(credential="petra-api-token-key", env="PETRA_TEST_KEY")
    assert got is not None and got.reveal() == b"c" * 32
    (tmp_path / "weak").write_bytes(b"short")
    from petra.security import SecretError

    with pytest.raises(SecretError) as err:
        read_secret(file=tmp_path / "weak")
    assert "short" not in str(err.value).replace("shorter", "")


# ----------------------------------------------------------------------------- lockout
def test_lockout_per_user_and_per_address() -> None:
    clock = Clock()
    guard = LoginGuard(LockoutPolicy(user_failures=3, address_failures=5, window_s=60,
                                     lockout_s=120), clock)
    for _ in range(3):
        guard.check("Alice", "10.0.0.1")
        guard.failure("Alice", "10.0.0.1")
    with pytest.raises(LockedOutError) as err:
        guard.check("alice", "10.0.0.9")  # the name is locked whatever the address
    assert 0 < err.value.retry_after_s <= 120
    guard.check("bob", "10.0.0.9")
    for _ in range(2):
        guard.failure("bob", "10.0.0.1")  # 5 failures from 10.0.0.1 in all
    with pytest.raises(LockedOutError, match="address"):
        guard.check("carol", "10.0.0.1")
    clock.t += 121
    guard.check("alice", "10.0.0.1")


def test_old_failures_are_forgotten_and_success_clears_the_user() -> None:
    clock = Clock()
    guard = LoginGuard(LockoutPolicy(user_failures=3, address_failures=100, window_s=60,
                                     lockout_s=120), clock)
    guard.failure("a", "x")
    guard.failure("a", "x")
    clock.t += 61
    guard.failure("a", "x")
    guard.check("a", "x")
    guard.failure("a", "x")
    guard.success("a", "x")
    guard.failure("a", "x")
    guard.failure("a", "x")
    guard.check("a", "x")


def test_memory_is_bounded() -> None:
    guard = LoginGuard(LockoutPolicy(max_entries=100))
    for i in range(1000):
        guard.failure(f"user{i}", f"10.0.{i // 256}.{i % 256}")
    assert len(guard._users) <= 100 and len(guard._addrs) <= 100


# ----------------------------------------------------------------------------- write path
@pytest.fixture
def seg() -> Iterator[Segment]:
    s = Segment.create(f"t{uuid.uuid4().hex[:12]}", [
        SignalDef("sp", SignalType.FLOAT, writable=True, minimum=0, maximum=10, initial=1.0),
        SignalDef("ro", SignalType.INT)])
    yield s
    s.unlink()
    s.close()


def test_authorised_write_records_before_and_after(seg: Segment, tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.log", instance=seg.instance, fsync=False)
    op = Principal("local:alice", AccessRole.OPERATOR, "cli", "local:1")
    result = authorised_write(seg, op, "sp", 4.5, audit)
    assert (result.before, result.after, seg.get("sp")) == (1.0, 4.5, 4.5)
    rec = audit.read()[-1]
    assert (rec["user"], rec["via"], rec["before"], rec["after"], rec["outcome"]) == (
        "local:alice", "cli", 1.0, 4.5, "ok")


@pytest.mark.parametrize(("role", "name", "value", "error"), [
    (AccessRole.VIEWER, "sp", 2.0, PermissionDeniedError),
    (AccessRole.ADMIN, "sp", 11.0, ValueOutOfRangeError),
    (AccessRole.ADMIN, "ro", 1, SignalNotWritableError),
])
def test_refusals_write_nothing_and_are_recorded(  # noqa: PLR0917 - parametrized
        seg: Segment, tmp_path: Path, role: AccessRole, name: str, value: object,
        error: type[Exception]) -> None:
    audit = AuditLog(tmp_path / "audit.log", fsync=False)
    before = seg.read(name)
    with pytest.raises(error):
        authorised_write(seg, Principal("x", role, "api", "1.2.3.4"), name, value, audit)
    assert seg.read(name) == before
    rec = audit.read()[-1]
    assert rec["outcome"] == "refused" and rec["requested"] == value and rec["reason"]
