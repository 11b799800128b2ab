"""``petra user add|passwd|del|list|key``: manage the users file.

There is no default user: the first admin is made here (``petra user add alice --role
admin``). Passwords are asked twice on the terminal (never on the command line, where
``ps`` and shell history would keep them) or read from ``--password-file`` / stdin
(``--password-stdin``) for scripts. API keys are printed once and stored hashed.
Every change is one audit record naming the local user who made it.

The file is ``--users FILE``, else the one the plant names (``--plant``), else
``$PETRA_USERS_FILE``, else ``/etc/petra/users.json``. Exit status: 0 done, 1 refused
(unknown user, last admin, weak password), 2 usage.
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import sys
from pathlib import Path
from typing import Any

from petra.errors import PetraError

ROLES = ("viewer", "operator", "engineer", "admin")


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "user", help="manage API users: add, passwd, del, list, key",
        description="Manage the users file of the API (argon2id hashes; no default user).")
    p.add_argument("--users", default=None, help="users file (default: see petra user -h)")
    p.add_argument("--plant", default=None, help="take the users file from this plant's api:")
    p.add_argument("--audit", default=None, help="audit log (default: the plant's or the box's)")
    acts = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = acts.add_parser("add", help="add a user")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=ROLES)
    _password_args(add, allow_none=True)
    pw = acts.add_parser("passwd", help="set a user's password (revokes their tokens)")
    pw.add_argument("name")
    _password_args(pw, allow_none=False)
    rm = acts.add_parser("del", help="delete a user")
    rm.add_argument("name")
    role = acts.add_parser("role", help="change a user's role (revokes their tokens)")
    role.add_argument("name")
    role.add_argument("role", choices=ROLES)
    ls = acts.add_parser("list", help="list users (never hashes)")
    ls.add_argument("--json", action="store_true")
    key = acts.add_parser("key", help="add or delete an API key")
    key.add_argument("op", choices=("add", "del"))
    key.add_argument("name")
    key.add_argument("key_id", nargs="?", help="for del: the key's id")
    key.add_argument("--label", default="", help="for add: what the key is for")
    p.set_defaults(func=run)


def _password_args(p: argparse.ArgumentParser, *, allow_none: bool) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--password-file", default=None, help="read the password from this file")
    g.add_argument("--password-stdin", action="store_true", help="read it from stdin")
    if allow_none:
        g.add_argument("--no-password", action="store_true",
                       help="no password: the user logs in with API keys only")


def _read_password(args: argparse.Namespace) -> str | None:
    if getattr(args, "no_password", False):
        return None
    if args.password_file:
        try:
            return Path(args.password_file).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise PetraError(f"cannot read --password-file: {exc.strerror}") from None
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise PetraError("no terminal to ask for the password: use --password-file or "
                         "--password-stdin")
    first = getpass.getpass(f"password for {args.name}: ")
    if getpass.getpass("again: ") != first:
        raise PetraError("the two passwords differ; nothing changed")
    return first


def run(args: argparse.Namespace) -> int:  # noqa: PLR0911 - one branch per action
    from petra.cli._access import audit_log, users_file
    from petra.security import (
        Passwords,
        add_key,
        add_user,
        check_password_policy,
        delete_key,
        delete_user,
        local_principal,
        set_password,
        set_role,
    )
    from petra.types import AccessRole

    users = users_file(args.users, args.plant)
    if args.action == "list":
        return _list(users, args.json)
    audit = audit_log(args.audit, args.plant)
    audit.check_writable()
    # Whoever can write the users file is its admin: the file's mode is the authority.
    who = dataclasses.replace(local_principal("cli"), role=AccessRole.ADMIN)
    name = args.name
    if args.action == "add":
        password = _read_password(args)
        digest = None
        if password is not None:
            check_password_policy(password)
            digest = Passwords().hash(password)
        role = AccessRole.parse(args.role)
        users.update(lambda u: add_user(u, name, role, digest))
        audit.append(who, "user.add", name, after={"role": role.label})
        print(f"added {name} ({role.label}) to {users.path}")
        return 0
    if args.action == "passwd":
        password = _read_password(args)
        assert password is not None  # --no-password is not offered for passwd
        check_password_policy(password)
        digest = Passwords().hash(password)
        users.update(lambda u: set_password(u, name, digest))
        audit.append(who, "user.passwd", name)
        print(f"password of {name} changed; their tokens are revoked")
        return 0
    if args.action == "del":
        gone = users.update(lambda u: delete_user(u, name))
        audit.append(who, "user.del", name, before={"role": gone.role.label})
        print(f"deleted {name}")
        return 0
    if args.action == "role":
        role = AccessRole.parse(args.role)
        before = users.load().get(name)
        users.update(lambda u: set_role(u, name, role))
        audit.append(who, "user.change", name,
                     before={"role": before.role.label if before else None},
                     after={"role": role.label})
        print(f"{name} is now {role.label}; their tokens are revoked")
        return 0
    if args.op == "add":
        text, key = users.update(lambda u: add_key(u, name, args.label))
        audit.append(who, "user.key_add", name, extra={"key_id": key.id, "label": args.label})
        print(text)
        print(f"(key {key.id} of {name}: shown once, store it now)", file=sys.stderr)
        return 0
    if not args.key_id:
        print("petra user key del: give the key id (petra user list shows them)",
              file=sys.stderr)
        return 2
    users.update(lambda u: delete_key(u, name, args.key_id))
    audit.append(who, "user.key_del", name, extra={"key_id": args.key_id})
    print(f"deleted key {args.key_id} of {name}")
    return 0


def _list(users: Any, as_json: bool) -> int:
    import json

    found = users.load()
    rows = [u.public() for u in sorted(found.by_name.values(), key=lambda u: u.name)]
    if as_json:
        print(json.dumps({"file": str(users.path), "users": rows}, indent=1))
        return 0
    if not rows:
        print(f"no users in {users.path} (add the first admin: petra user add NAME "
              "--role admin)")
        return 0
    print(f"{'NAME':<20} {'ROLE':<9} {'STATE':<9} {'PASSWORD':<8} KEYS")
    for r in rows:
        keys = ", ".join(f"{k['id']}({k['label']})" if k["label"] else k["id"]
                         for k in r["keys"]) or "-"
        print(f"{r['name']:<20} {r['role']:<9} {'disabled' if r['disabled'] else 'enabled':<9} "
              f"{'yes' if r['has_password'] else 'no':<8} {keys}")
    return 0
