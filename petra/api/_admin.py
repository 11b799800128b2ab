"""Users and the audit log, for admins.

A change to a user goes through :meth:`petra.security.UsersFile.update` (locked,
atomic), the same as ``petra user``, and is one audit record. The audit log is read
in pages (``after`` a seq) and can be verified in place.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from petra.api._auth import ctx_of, session_of
from petra.api._http import ApiError, int_param, json_response, query, read_object
from petra.security import (
    UsersFileError,
    add_key,
    add_user,
    delete_key,
    delete_user,
    require_user,
    set_disabled,
    set_password,
    set_role,
    validate_username,
    verify_audit,
)
from petra.types import AccessRole


def _role(text: object) -> AccessRole:
    try:
        return AccessRole.parse(text)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None


def _name(request: web.Request) -> str:
    name = request.match_info["name"]
    try:
        return validate_username(name)
    except UsersFileError:
        raise ApiError(404, f"no user named {name[:80]!r}") from None


async def _update(request: web.Request, change: Any) -> Any:
    ctx = ctx_of(request)
    try:
        return await asyncio.to_thread(ctx.users.file.update, change)
    except UsersFileError as exc:
        text = str(exc)
        status = (404 if text.startswith("no user") or " has no key " in text
                  else 422 if "label" in text else 409)
        raise ApiError(status, text) from None


async def list_users(request: web.Request) -> web.Response:
    query(request, ())
    users = ctx_of(request).users.get()
    return json_response({"users": [u.public() for u in sorted(
        users.by_name.values(), key=lambda u: u.name)]})


async def get_user(request: web.Request) -> web.Response:
    query(request, ())
    name = _name(request)
    user = ctx_of(request).users.get().get(name)
    if user is None:
        raise ApiError(404, f"no user named {name!r}")
    return json_response(user.public())


async def create_user(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    query(request, ())
    body = await read_object(request, {"name": str, "role": str, "password": str},
                             ("name", "role"))
    try:
        name = validate_username(body["name"])
    except UsersFileError as exc:
        raise ApiError(422, str(exc)) from None
    role = _role(body["role"])
    digest = None
    if "password" in body:
        try:
            digest = await asyncio.to_thread(ctx.passwords.hash, body["password"])
        except UsersFileError as exc:
            raise ApiError(422, str(exc)) from None
    user = await _update(request, lambda u: add_user(u, name, role, digest))
    await ctx.record(session_of(request).principal, "user.add", name,
                     after={"role": role.label})
    return json_response(user.public(), 201)


async def patch_user(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    query(request, ())
    name = _name(request)
    body = await read_object(request, {"role": str, "password": str, "disabled": bool})
    if not body:
        raise ApiError(400, "nothing to change: give role, password or disabled")
    role = _role(body["role"]) if "role" in body else None
    digest = None
    if "password" in body:
        try:
            digest = await asyncio.to_thread(ctx.passwords.hash, body["password"])
        except UsersFileError as exc:
            raise ApiError(422, str(exc)) from None

    def change(users: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        user = require_user(users, name)
        before = {"role": user.role.label, "disabled": user.disabled}
        if role is not None:
            set_role(users, name, role)
        if "disabled" in body:
            set_disabled(users, name, bool(body["disabled"]))
        if digest is not None:
            set_password(users, name, digest)
        after = {"role": user.role.label, "disabled": user.disabled}
        return before, after

    before, after = await _update(request, change)
    if digest is not None:
        after["password"] = "changed"
    await ctx.record(session_of(request).principal, "user.change", name, before=before,
                     after=after)
    user = ctx.users.get().get(name)
    return json_response(user.public() if user else {"name": name})


async def remove_user(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    query(request, ())
    name = _name(request)
    user = await _update(request, lambda u: delete_user(u, name))
    await ctx.record(session_of(request).principal, "user.del", name,
                     before={"role": user.role.label})
    return web.Response(status=204)


async def create_key(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    query(request, ())
    name = _name(request)
    body = await read_object(request, {"label": str})
    label = body.get("label", "")
    text, key = await _update(request, lambda u: add_key(u, name, label))
    await ctx.record(session_of(request).principal, "user.key_add", name,
                     extra={"key_id": key.id, "label": label})
    return json_response({"id": key.id, "key": text, "label": label,
                          "note": "shown once: store it now"}, 201)


async def remove_key(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    query(request, ())
    name = _name(request)
    key_id = request.match_info["key_id"]
    await _update(request, lambda u: delete_key(u, name, key_id))
    await ctx.record(session_of(request).principal, "user.key_del", name,
                     extra={"key_id": key_id[:20]})
    return web.Response(status=204)


async def read_audit(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    params = query(request, ("after", "limit"))
    after = int_param(params, "after", 0, 0, 1 << 62)
    limit = int_param(params, "limit", 100, 1, 1000)
    records = await asyncio.to_thread(ctx.audit.read, after, limit)
    return json_response({"records": records,
                          "last_seq": records[-1]["seq"] if records else after})


async def verify(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    query(request, ())
    report = await asyncio.to_thread(verify_audit, ctx.audit.path)
    return json_response({"ok": report.ok, "records": report.records,
                          "first_seq": report.first_seq, "last_seq": report.last_seq,
                          "problems": report.problems, "notes": report.notes})
