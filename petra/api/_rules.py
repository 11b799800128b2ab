"""Which permission each endpoint needs: the one table the auth middleware reads.

Every route the app serves must have a rule here; :func:`check_rules` runs when the
app is built and refuses to start an API with an endpoint nobody thought about
(``tests/integration/test_api_roles.py`` also walks every route against every role).
``PUBLIC`` routes need no credentials: the login itself, the token refresh (the
refresh token is the credential), the OpenAPI description, the web page's static
files and Twilio's SMS-reply webhook (it checks Twilio's request signature itself).
"""

from __future__ import annotations

from dataclasses import dataclass

from petra.errors import PetraError
from petra.security import Permission

PREFIX = "/api/v1"


@dataclass(frozen=True, slots=True)
class Rule:
    permission: Permission | None  # None: public
    ws: bool = False  # a WebSocket: credentials may come in the first message instead
    audit: bool = False  # a refusal for role is audited (the action never reaches its owner)


PUBLIC = Rule(None)
P = Permission

RULES: dict[tuple[str, str], Rule] = {
    ("GET", f"{PREFIX}/openapi.json"): PUBLIC,
    ("POST", f"{PREFIX}/auth/login"): PUBLIC,
    ("POST", f"{PREFIX}/auth/refresh"): PUBLIC,
    ("POST", f"{PREFIX}/auth/logout"): Rule(P.SIGNAL_READ),
    ("GET", f"{PREFIX}/me"): Rule(P.SIGNAL_READ),
    ("PUT", f"{PREFIX}/me/password"): Rule(P.SIGNAL_READ),
    ("GET", f"{PREFIX}/signals"): Rule(P.SIGNAL_READ),
    ("GET", f"{PREFIX}/signals/{{name}}"): Rule(P.SIGNAL_READ),
    ("PUT", f"{PREFIX}/signals/{{name}}"): Rule(P.SIGNAL_WRITE),
    ("GET", f"{PREFIX}/status"): Rule(P.STATUS_READ),
    ("POST", f"{PREFIX}/reload"): Rule(P.CONFIG_RELOAD),
    ("GET", f"{PREFIX}/users"): Rule(P.USER_MANAGE),
    ("POST", f"{PREFIX}/users"): Rule(P.USER_MANAGE),
    ("GET", f"{PREFIX}/users/{{name}}"): Rule(P.USER_MANAGE),
    ("PATCH", f"{PREFIX}/users/{{name}}"): Rule(P.USER_MANAGE),
    ("DELETE", f"{PREFIX}/users/{{name}}"): Rule(P.USER_MANAGE),
    ("POST", f"{PREFIX}/users/{{name}}/keys"): Rule(P.USER_MANAGE),
    ("DELETE", f"{PREFIX}/users/{{name}}/keys/{{key_id}}"): Rule(P.USER_MANAGE),
    ("GET", f"{PREFIX}/audit"): Rule(P.AUDIT_READ),
    ("GET", f"{PREFIX}/audit/verify"): Rule(P.AUDIT_READ),
    ("GET", f"{PREFIX}/ws"): Rule(P.SIGNAL_READ, ws=True),
    ("GET", f"{PREFIX}/alarms"): Rule(P.ALARM_READ),
    ("GET", f"{PREFIX}/alarms/events"): Rule(P.ALARM_READ),
    ("GET", f"{PREFIX}/alarms/status"): Rule(P.ALARM_READ),
    ("POST", f"{PREFIX}/alarms/ack"): Rule(P.ALARM_ACK, audit=True),
    ("POST", f"{PREFIX}/alarms/reset"): Rule(P.ALARM_ACK, audit=True),
    ("POST", f"{PREFIX}/alarms/comment"): Rule(P.ALARM_ACK, audit=True),
    ("POST", f"{PREFIX}/alarms/shelve"): Rule(P.ALARM_SHELVE, audit=True),
    ("POST", f"{PREFIX}/alarms/unshelve"): Rule(P.ALARM_SHELVE, audit=True),
    ("POST", f"{PREFIX}/alarms/out-of-service"): Rule(P.ALARM_SERVICE, audit=True),
    ("POST", f"{PREFIX}/alarms/return-to-service"): Rule(P.ALARM_SERVICE, audit=True),
    # Twilio's SMS-reply webhook: authenticated by Twilio's signature, not a bearer
    ("POST", f"{PREFIX}/alarms/twilio/sms"): PUBLIC,
    ("GET", f"{PREFIX}/history"): Rule(P.SIGNAL_READ),
    # The web page's static files (petra/api/_web.py): no data in them, so public.
    ("GET", "/"): PUBLIC,
    ("GET", "/ui/{file}"): PUBLIC,
}


def rule_for(method: str, path: str) -> Rule | None:
    return RULES.get((method, path))


def check_rules(routes: list[tuple[str, str]]) -> None:
    """Raise unless every (method, path) served has a rule and every rule is served."""
    served = {(m, p) for m, p in routes if m != "HEAD"}
    missing = sorted(served - set(RULES))
    stale = sorted(set(RULES) - served)
    if missing or stale:
        raise PetraError(f"API routes without a rule: {missing}; rules without a route: "
                         f"{stale}")
