"""The aiohttp application: routes, the auth and error middlewares, TLS.

Middlewares, outermost first:

1. *errors*: every :class:`ApiError`, aiohttp HTTP exception and security error
   becomes a JSON error body with its status; anything unexpected is a logged 500
   that says nothing of the internals. Every answer gets ``Cache-Control: no-store``
   and headers that stop a browser from sniffing or framing it (HSTS under TLS).
2. *auth*: the route's rule (:mod:`petra.api._rules`) says which permission it
   needs; a bearer credential is resolved to a session and the role checked before
   the handler runs. A route with no rule is refused (and the app refuses to start).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from petra.api import _admin, _alarms, _auth, _history, _signals, _web, _ws
from petra.api._auth import CTX, SESSION
from petra.api._context import ApiContext
from petra.api._http import ApiError, error_response, json_response
from petra.api._openapi import openapi
from petra.api._rules import PREFIX, check_rules, rule_for
from petra.config._api import ApiTlsConfig
from petra.security import AuthenticationError, LockedOutError, PermissionDeniedError
from petra.types import ApiCounter

log = logging.getLogger("petra.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    ctx = request.app[CTX]
    try:
        resp = await handler(request)
    except ApiError as exc:
        resp = error_response(exc.status, exc.message, exc.headers)
    except LockedOutError as exc:
        resp = error_response(429, str(exc), {"Retry-After": str(max(1, int(exc.retry_after_s)))})
    except AuthenticationError as exc:
        resp = error_response(401, str(exc), {"WWW-Authenticate": "Bearer"})
    except PermissionDeniedError as exc:
        resp = error_response(403, str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        text = exc.reason if exc.status != 413 else "the body is too large"
        resp = error_response(exc.status, text, {
            k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")})
    except Exception:
        log.exception("event=api_internal_error method=%s path=%r", request.method,
                      request.path[:200])
        resp = error_response(500, "internal error (logged)")
    ctx.count(ApiCounter.REQUESTS)
    if 400 <= resp.status < 500:
        ctx.count(ApiCounter.REFUSED)
    if not resp.prepared:
        for key, value in SECURITY_HEADERS.items():  # the web page sets its own CSP
            resp.headers.setdefault(key, value)
        if ctx.tls:
            resp.headers["Strict-Transport-Security"] = "max-age=31536000"
    return resp


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    route = request.match_info.route
    resource = route.resource
    if resource is None:  # 404/405: let aiohttp answer
        return await handler(request)
    rule = rule_for(request.method if request.method != "HEAD" else "GET", resource.canonical)
    if rule is None:
        log.error("event=api_route_without_rule method=%s path=%s", request.method,
                  resource.canonical)
        raise ApiError(403, "this endpoint has no access rule")
    if rule.permission is None:
        return await handler(request)
    header = request.headers.get("Authorization", "")
    scheme, _, credential = header.partition(" ")
    if not header:
        if rule.ws:
            return await handler(request)  # credentials in the first message
        raise ApiError(401, "log in first: Authorization: Bearer <token or API key>",
                       {"WWW-Authenticate": "Bearer"})
    if scheme.lower() != "bearer" or not credential.strip():
        raise ApiError(401, "use Authorization: Bearer <token or API key>",
                       {"WWW-Authenticate": "Bearer"})
    ctx = request.app[CTX]
    session = ctx.authenticate(credential.strip(), request.remote or "?")
    try:
        session.principal.require(rule.permission)
    except PermissionDeniedError as exc:
        if rule.audit:
            await _alarms.audit_refusal(ctx, session.principal, rule.permission,
                                        resource.canonical, str(exc))
        raise
    request[SESSION] = session
    return await handler(request)


async def _openapi_handler(_: web.Request) -> web.Response:
    return json_response(openapi())


def build_app(ctx: ApiContext) -> web.Application:
    app = web.Application(middlewares=[errors_middleware, auth_middleware],
                          client_max_size=ctx.config.max_body_bytes)
    app[CTX] = ctx
    feed = _alarms.AlarmFeed(ctx.alarms.dir if ctx.alarms else None)
    app[_alarms.FEED] = feed
    app[_ws.HUB] = _ws.Hub(ctx, feed if ctx.alarms else None)
    r = app.router
    r.add_get(f"{PREFIX}/openapi.json", _openapi_handler)
    r.add_post(f"{PREFIX}/auth/login", _auth.login)
    r.add_post(f"{PREFIX}/auth/refresh", _auth.refresh)
    r.add_post(f"{PREFIX}/auth/logout", _auth.logout)
    r.add_get(f"{PREFIX}/me", _auth.me)
    r.add_put(f"{PREFIX}/me/password", _auth.change_password)
    r.add_get(f"{PREFIX}/signals", _signals.list_signals)
    r.add_get(f"{PREFIX}/signals/{{name}}", _signals.get_signal)
    r.add_put(f"{PREFIX}/signals/{{name}}", _signals.put_signal)
    r.add_get(f"{PREFIX}/status", _signals.status)
    r.add_post(f"{PREFIX}/reload", _signals.reload)
    r.add_get(f"{PREFIX}/users", _admin.list_users)
    r.add_post(f"{PREFIX}/users", _admin.create_user)
    r.add_get(f"{PREFIX}/users/{{name}}", _admin.get_user)
    r.add_patch(f"{PREFIX}/users/{{name}}", _admin.patch_user)
    r.add_delete(f"{PREFIX}/users/{{name}}", _admin.remove_user)
    r.add_post(f"{PREFIX}/users/{{name}}/keys", _admin.create_key)
    r.add_delete(f"{PREFIX}/users/{{name}}/keys/{{key_id}}", _admin.remove_key)
    r.add_get(f"{PREFIX}/audit", _admin.read_audit)
    r.add_get(f"{PREFIX}/audit/verify", _admin.verify)
    r.add_get(f"{PREFIX}/ws", _ws.ws_handler)
    r.add_get(f"{PREFIX}/alarms", _alarms.list_alarms)
    r.add_get(f"{PREFIX}/alarms/events", _alarms.list_events)
    r.add_get(f"{PREFIX}/alarms/status", _alarms.alarm_status)
    r.add_post(f"{PREFIX}/alarms/ack", _alarms.ack)
    r.add_post(f"{PREFIX}/alarms/reset", _alarms.reset)
    r.add_post(f"{PREFIX}/alarms/comment", _alarms.comment)
    r.add_post(f"{PREFIX}/alarms/shelve", _alarms.shelve)
    r.add_post(f"{PREFIX}/alarms/unshelve", _alarms.unshelve)
    r.add_post(f"{PREFIX}/alarms/out-of-service", _alarms.out_of_service)
    r.add_post(f"{PREFIX}/alarms/return-to-service", _alarms.return_to_service)
    r.add_post(f"{PREFIX}/alarms/twilio/sms", _alarms.twilio_sms)
    _history.add_routes(app, PREFIX)
    _web.add_routes(app)
    check_rules(served_routes(app, api_only=False))
    return app


def served_routes(app: web.Application, *, api_only: bool = True) -> list[tuple[str, str]]:
    """(method, path template) of every API route (HEAD twins left out); with
    ``api_only=False`` the web page's static routes too."""
    out = []
    for route in app.router.routes():
        if route.resource is not None and route.method != "HEAD":
            path = route.resource.canonical
            if api_only and not path.startswith(PREFIX + "/"):
                continue
            out.append((route.method, path))
    return out


def tls_context(tls: ApiTlsConfig, base: Path | None) -> ssl.SSLContext:
    """A server context: TLS 1.2+ (or 1.3), the ssl module's secure defaults (no
    compression, no renegotiation, forward-secret AEAD ciphers first), and client
    certificates checked against ``client_ca_file`` when asked for."""
    from petra.security import resolve

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = (ssl.TLSVersion.TLSv1_3 if tls.min_version == "1.3"
                           else ssl.TLSVersion.TLSv1_2)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.set_ciphers("ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!MD5:!DSS")
    ctx.load_cert_chain(resolve(tls.cert_file, base), resolve(tls.key_file, base))
    if tls.client_cert != "none" and tls.client_ca_file:
        ctx.load_verify_locations(cafile=str(resolve(tls.client_ca_file, base)))
        ctx.verify_mode = (ssl.CERT_REQUIRED if tls.client_cert == "required"
                           else ssl.CERT_OPTIONAL)
    return ctx
