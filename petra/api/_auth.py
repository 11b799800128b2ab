"""Login, refresh, logout, who-am-I and changing one's own password.

A login answers 401 with the same words whether the name or the password was wrong,
after the same argon2id work (a dummy hash for unknown names), and 429 with
``Retry-After`` while the name or the address is locked out (the password is then
not even checked). Every login, good or bad, is one audit record.
"""

from __future__ import annotations

import asyncio
import math

from aiohttp import web

from petra.api._context import VIA, ApiContext, Session
from petra.api._http import ApiError, json_response, read_object
from petra.security import (
    AuthenticationError,
    Permission,
    Principal,
    UsersFileError,
    check_password_policy,
    set_password,
)
from petra.types import ApiCounter

CTX = web.AppKey("ctx", ApiContext)
SESSION = "petra.session"
WRONG = "wrong user name or password"


def ctx_of(request: web.Request) -> ApiContext:
    return request.app[CTX]


def session_of(request: web.Request) -> Session:
    session: Session = request[SESSION]
    return session


def peer(request: web.Request) -> str:
    return request.remote or "?"


def _locked(exc: Exception, retry_after: float) -> ApiError:
    return ApiError(429, str(exc), {"Retry-After": str(max(1, math.ceil(retry_after)))})


def _tokens_body(ctx: ApiContext, name: str, generation: int, role: str) -> dict[str, object]:
    pair = ctx.tokens.issue(name, generation)
    return {"access_token": pair.access_token, "refresh_token": pair.refresh_token,
            "token_type": "Bearer", "expires_in": pair.expires_in,
            "refresh_expires_in": pair.refresh_expires_in, "user": name, "role": role}


async def login(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    body = await read_object(request, {"username": str, "password": str},
                             ("username", "password"))
    name, password = body["username"], body["password"]
    if not name or len(name) > 128:
        raise ApiError(400, "username must be 1-128 characters")
    addr = peer(request)
    locked = ctx.check_locked(name, addr)
    if locked is not None:
        ctx.count(ApiCounter.LOGIN_FAILURES)
        await ctx.record(None, "login", ctx.audit_name(name), outcome="refused",
                         reason=str(locked),
                         user=ctx.audit_name(name), source=addr, via=VIA)
        raise _locked(locked, locked.retry_after_s)
    user = ctx.users.get().get(name)
    stored = user.password if user is not None and not user.disabled else None
    async with ctx.login_slots:
        ok = await _verify(ctx, stored, password)
    if not ok or user is None:
        ctx.guard.failure(name, addr)
        ctx.count(ApiCounter.LOGIN_FAILURES)
        await ctx.record(None, "login", ctx.audit_name(name), outcome="failed",
                         reason=WRONG, user=ctx.audit_name(name), source=addr, via=VIA)
        raise ApiError(401, WRONG, {"WWW-Authenticate": "Bearer"})
    ctx.guard.success(name, addr)
    ctx.count(ApiCounter.LOGINS)
    await ctx.record(Principal(user.name, user.role, VIA, addr), "login", name)
    return json_response(_tokens_body(ctx, user.name, user.generation, user.role.label))


async def _verify(ctx: ApiContext, stored: str | None, password: str) -> bool:
    return await asyncio.to_thread(ctx.passwords.verify, stored, password)


async def refresh(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    body = await read_object(request, {"refresh_token": str}, ("refresh_token",))
    addr = peer(request)
    locked = ctx.check_locked("", addr)
    if locked is not None:
        raise _locked(locked, locked.retry_after_s)
    try:
        claims = ctx.tokens.use_refresh(body["refresh_token"])
    except AuthenticationError as exc:
        ctx.guard.failure(None, addr)
        raise ApiError(401, str(exc), {"WWW-Authenticate": "Bearer"}) from None
    user = ctx.users.get().get(claims.user)
    if user is None or user.disabled or user.generation != claims.generation:
        raise ApiError(401, "token revoked", {"WWW-Authenticate": "Bearer"})
    return json_response(_tokens_body(ctx, user.name, user.generation, user.role.label))


async def logout(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    body = await read_object(request, {"refresh_token": str}, ("refresh_token",))
    try:
        claims = ctx.tokens.decode(body["refresh_token"], "refresh")
        if claims.user != session_of(request).principal.name:
            raise ApiError(403, "that refresh token belongs to another user")
        ctx.tokens.revoke_refresh(body["refresh_token"])
    except AuthenticationError as exc:
        raise ApiError(422, f"refresh_token: {exc}") from None
    await ctx.record(session_of(request).principal, "logout", claims.user)
    return web.Response(status=204)


async def me(request: web.Request) -> web.Response:
    s = session_of(request)
    perms = sorted(p.value for p in Permission if s.principal.may(p))
    return json_response({"user": s.principal.name, "role": s.principal.role.label,
                          "permissions": perms, "credential": s.credential,
                          "expires": s.expires})


async def change_password(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    s = session_of(request)
    body = await read_object(request, {"old_password": str, "new_password": str},
                             ("old_password", "new_password"))
    try:
        check_password_policy(body["new_password"])
    except UsersFileError as exc:
        raise ApiError(422, str(exc)) from None
    addr = peer(request)
    locked = ctx.check_locked(s.user.name, addr)
    if locked is not None:
        raise _locked(locked, locked.retry_after_s)
    async with ctx.login_slots:
        ok = await _verify(ctx, s.user.password, body["old_password"])
    if not ok:
        ctx.guard.failure(s.user.name, addr)
        await ctx.record(s.principal, "user.passwd", s.user.name, outcome="failed",
                         reason="wrong old password")
        raise ApiError(403, "the old password is wrong")

    new_hash = await asyncio.to_thread(ctx.passwords.hash, body["new_password"])
    await asyncio.to_thread(ctx.users.file.update,
                            lambda u: set_password(u, s.user.name, new_hash))
    await ctx.record(s.principal, "user.passwd", s.user.name)
    return web.Response(status=204)
