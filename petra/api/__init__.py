"""The API process: REST and WebSocket over HTTP(S), with users, roles and audit.

See ``docs/http-api.md`` for the endpoints and ``docs/security.md`` for users, roles,
TLS and the audit log. A runtime role: it imports ``petra.io``, ``petra.shm``,
``petra.config`` and ``petra.security``, never a driver, sink or the scan.
"""

from petra.api._app import build_app, served_routes, tls_context
from petra.api._context import ApiContext, Session
from petra.api._openapi import openapi
from petra.api._rules import PREFIX, RULES, Rule
from petra.api._server import ApiServer, audit_log_for, main, make_context

__all__ = [
    "PREFIX",
    "RULES",
    "ApiContext",
    "ApiServer",
    "Rule",
    "Session",
    "audit_log_for",
    "build_app",
    "main",
    "make_context",
    "openapi",
    "served_routes",
    "tls_context",
]
