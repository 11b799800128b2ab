"""The OpenAPI 3.1 description of the REST API, served at ``/api/v1/openapi.json``.

Written next to the routes it describes and tested against the live server
(``tests/integration/test_api_schema.py`` runs schemathesis against it, and a unit
test checks every route has a path here and every path a route). Every operation
lists the error codes it can answer, each with the same error body.
"""

from __future__ import annotations

from typing import Any

import petra
from petra.api._rules import PREFIX, RULES
from petra.security import minimum_role

ERROR = {"$ref": "#/components/schemas/Error"}
SCALAR = {"anyOf": [{"type": "boolean"}, {"type": "number"},
                    {"type": "string", "enum": ["NaN", "Infinity", "-Infinity"]}]}
NAME = {"type": "string", "minLength": 1, "maxLength": 200}


def _schemas() -> dict[str, Any]:
    signal = {"type": "object", "required": ["name", "type", "value", "quality"],
              "properties": {
                  "name": {"type": "string"},
                  "type": {"type": "string", "enum": ["bool", "int", "float"]},
                  "unit": {"type": "string"}, "writable": {"type": "boolean"},
                  "min": {"type": ["number", "null"]}, "max": {"type": ["number", "null"]},
                  "value": SCALAR,
                  "quality": {"type": "string", "enum": ["BAD", "UNCERTAIN", "GOOD"]},
                  "substatus": {"type": "string"},
                  "source_ts_ns": {"type": "integer"}, "write_ts_ns": {"type": "integer"}}}
    user = {"type": "object", "required": ["name", "role", "disabled"],
            "properties": {
                "name": {"type": "string"},
                "role": {"type": "string", "enum": ["viewer", "operator", "engineer", "admin"]},
                "disabled": {"type": "boolean"}, "has_password": {"type": "boolean"},
                "keys": {"type": "array", "items": {"type": "object"}},
                "created": {"type": "string"}, "changed": {"type": "string"}}}
    tokens = {"type": "object",
              "required": ["access_token", "refresh_token", "token_type", "expires_in"],
              "properties": {
                  "access_token": {"type": "string"}, "refresh_token": {"type": "string"},
                  "token_type": {"const": "Bearer"}, "expires_in": {"type": "integer"},
                  "refresh_expires_in": {"type": "integer"}, "user": {"type": "string"},
                  "role": {"type": "string"}}}
    return {
        "Error": {"type": "object", "required": ["error", "status"],
                  "properties": {"error": {"type": "string"}, "status": {"type": "integer"}}},
        "Signal": signal,
        "SignalList": {"type": "object", "required": ["signals", "total"],
                       "properties": {"signals": {"type": "array",
                                                  "items": {"$ref": "#/components/schemas/Signal"}},
                                      "total": {"type": "integer"},
                                      "offset": {"type": "integer"},
                                      "limit": {"type": "integer"}}},
        "WriteResult": {"type": "object", "required": ["signal", "before", "after"],
                        "properties": {"signal": {"type": "string"}, "before": SCALAR,
                                       "after": SCALAR, "audit_seq": {"type": "integer"}}},
        "User": user,
        "Tokens": tokens,
        "AlarmList": {"type": "object", "required": ["alarms", "updated_ns"],
                      "properties": {"alarms": {"type": "array", "items": {"type": "object"}},
                                     "updated_ns": {"type": "integer"},
                                     "seq": {"type": "integer"},
                                     "total": {"type": "integer"}}},
        "AlarmEvents": {"type": "object", "required": ["events", "next_seq"],
                        "properties": {"events": {"type": "array",
                                                  "items": {"type": "object"}},
                                       "next_seq": {"type": "integer"},
                                       "oldest_seq": {"type": "integer"}}},
        "AlarmActionResult": {"type": "object", "required": ["ok", "done", "id"],
                              "properties": {"ok": {"const": True},
                                             "done": {"type": "array",
                                                      "items": {"type": "string"}},
                                             "skipped": {"type": "object"},
                                             "id": {"type": "string"}}},
        "History": {"type": "object",
                    "required": ["signal", "start_ns", "end_ns", "count", "points"],
                    "properties": {
                        "signal": {"type": "string"}, "start_ns": {"type": "integer"},
                        "end_ns": {"type": "integer"}, "count": {"type": "integer"},
                        "downsampled": {"type": "boolean"}, "truncated": {"type": "boolean"},
                        "points": {"type": "array", "items": {
                            "type": "array", "minItems": 3, "maxItems": 3,
                            "prefixItems": [
                                {"type": "integer"}, {"type": ["number", "null"]},
                                {"type": "string"}]}}}},
    }


def _err(*codes: int) -> dict[str, Any]:
    words = {400: "malformed request", 401: "not authenticated", 403: "not allowed",
             404: "not found", 409: "conflicts with the current state",
             413: "body too large", 415: "body is not JSON", 422: "value refused",
             429: "locked out (see Retry-After)", 503: "cannot be done or recorded now",
             504: "no answer in time"}
    return {str(c): {"description": words[c],
                     "content": {"application/json": {"schema": ERROR}}} for c in codes}


def _ok(code: int, schema: dict[str, Any] | None, what: str) -> dict[str, Any]:
    if schema is None:
        return {str(code): {"description": what}}
    return {str(code): {"description": what, "content": {"application/json": {"schema": schema}}}}


def _body(props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "properties": props, "required": required,
        "additionalProperties": False}}}}


def _q(name: str, schema: dict[str, Any], what: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": what}


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": NAME}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


AUTHED = (400, 401, 403, 429)
PASSWORD = {"type": "string", "minLength": 1, "maxLength": 1024}


def _operations() -> dict[tuple[str, str], dict[str, Any]]:
    obj = {"type": "object"}
    role = {"type": "string", "enum": ["viewer", "operator", "engineer", "admin"]}
    return {
        ("GET", "/openapi.json"): {"summary": "This description",
                                   "responses": _ok(200, obj, "the OpenAPI document")},
        ("POST", "/auth/login"): {
            "summary": "Log in with a user name and password",
            "requestBody": _body({"username": {"type": "string", "minLength": 1,
                                               "maxLength": 128},
                                  "password": PASSWORD}, ["username", "password"]),
            "responses": {**_ok(200, _ref("Tokens"), "an access and a refresh token"),
                          **_err(400, 401, 413, 415, 429, 503)}},
        ("POST", "/auth/refresh"): {
            "summary": "Trade a refresh token (once) for a new pair",
            "requestBody": _body({"refresh_token": {"type": "string"}}, ["refresh_token"]),
            "responses": {**_ok(200, _ref("Tokens"), "a new pair"),
                          **_err(400, 401, 413, 415, 429)}},
        ("POST", "/auth/logout"): {
            "summary": "Spend a refresh token without using it",
            "requestBody": _body({"refresh_token": {"type": "string"}}, ["refresh_token"]),
            "responses": {**_ok(204, None, "logged out"),
                          **_err(*AUTHED, 413, 415, 422, 503)}},
        ("GET", "/me"): {"summary": "Who the credential belongs to",
                         "responses": {**_ok(200, obj, "user, role, permissions"),
                                       **_err(*AUTHED)}},
        ("PUT", "/me/password"): {
            "summary": "Change one's own password",
            "requestBody": _body({"old_password": PASSWORD, "new_password": PASSWORD},
                                 ["old_password", "new_password"]),
            "responses": {**_ok(204, None, "changed"),
                          **_err(*AUTHED, 413, 415, 422, 503)}},
        ("GET", "/signals"): {
            "summary": "List signals with their values",
            "parameters": [
                _q("match", {"type": "string", "maxLength": 256}, "glob on the name"),
                _q("writable", {"type": "string", "enum": ["true", "false"]}, "filter"),
                _q("type", {"type": "string", "enum": ["bool", "int", "float"]}, "filter"),
                _q("limit", {"type": "integer", "minimum": 1, "maximum": 10000}, "page size"),
                _q("offset", {"type": "integer", "minimum": 0, "maximum": 2**31}, "skip")],
            "responses": {**_ok(200, _ref("SignalList"), "the page"), **_err(*AUTHED)}},
        ("GET", "/signals/{name}"): {
            "summary": "Read one signal", "parameters": [_path("name")],
            "responses": {**_ok(200, _ref("Signal"), "the signal"), **_err(*AUTHED, 404)}},
        ("PUT", "/signals/{name}"): {
            "summary": "Write a writable signal (checked: type, finite, min/max; audited)",
            "parameters": [_path("name")],
            "requestBody": _body({"value": SCALAR}, ["value"]),
            "responses": {**_ok(200, _ref("WriteResult"), "written"),
                          **_err(*AUTHED, 404, 413, 415, 422, 503)}},
        ("GET", "/status"): {"summary": "Plant status: scan, journal, processes, health",
                             "responses": {**_ok(200, obj, "status"), **_err(*AUTHED)}},
        ("POST", "/reload"): {"summary": "Reload the plant file (engineer)",
                              "responses": {**_ok(200, obj, "reloaded"),
                                            **_err(*AUTHED, 409, 422, 504)}},
        ("GET", "/users"): {"summary": "List users (admin)",
                            "responses": {**_ok(200, obj, "users"), **_err(*AUTHED)}},
        ("POST", "/users"): {
            "summary": "Add a user (admin)",
            "requestBody": _body({"name": {"type": "string"}, "role": role,
                                  "password": PASSWORD}, ["name", "role"]),
            "responses": {**_ok(201, _ref("User"), "added"),
                          **_err(*AUTHED, 409, 413, 415, 422, 503)}},
        ("GET", "/users/{name}"): {
            "summary": "One user (admin)", "parameters": [_path("name")],
            "responses": {**_ok(200, _ref("User"), "the user"), **_err(*AUTHED, 404)}},
        ("PATCH", "/users/{name}"): {
            "summary": "Change role, password or disabled (admin)",
            "parameters": [_path("name")],
            "requestBody": _body({"role": role, "password": PASSWORD,
                                  "disabled": {"type": "boolean"}}, []),
            "responses": {**_ok(200, _ref("User"), "changed"),
                          **_err(*AUTHED, 404, 409, 413, 415, 422, 503)}},
        ("DELETE", "/users/{name}"): {
            "summary": "Delete a user (admin)", "parameters": [_path("name")],
            "responses": {**_ok(204, None, "deleted"), **_err(*AUTHED, 404, 409, 503)}},
        ("POST", "/users/{name}/keys"): {
            "summary": "Make an API key (shown once) (admin)", "parameters": [_path("name")],
            "requestBody": _body({"label": {"type": "string", "maxLength": 64}}, []),
            "responses": {**_ok(201, obj, "the key"),
                          **_err(*AUTHED, 404, 409, 413, 415, 422, 503)}},
        ("DELETE", "/users/{name}/keys/{key_id}"): {
            "summary": "Delete an API key (admin)",
            "parameters": [_path("name"), _path("key_id")],
            "responses": {**_ok(204, None, "deleted"), **_err(*AUTHED, 404, 409, 503)}},
        ("GET", "/audit"): {
            "summary": "Read the audit log (admin)",
            "parameters": [_q("after", {"type": "integer", "minimum": 0, "maximum": 2**62},
                              "after this seq"),
                           _q("limit", {"type": "integer", "minimum": 1, "maximum": 1000},
                              "records")],
            "responses": {**_ok(200, obj, "records"), **_err(*AUTHED)}},
        ("GET", "/audit/verify"): {
            "summary": "Verify the audit chain (admin)",
            "responses": {**_ok(200, obj, "the report"), **_err(*AUTHED)}},
        **_alarm_operations(),
        ("GET", "/ws"): {
            "summary": "WebSocket: subscribe to signals by name or pattern, and to alarm "
                       "events",
            "description": "Upgrade to a WebSocket; see docs/http-api.md for the messages.",
            "responses": {"101": {"description": "switching protocols"},
                          **_err(*AUTHED, 503)}},
        ("GET", "/history"): {
            "summary": "One signal's recorded samples, downsampled (min and max per bucket)",
            "description": "Reads the Parquet history store; at most 31 days, at most "
                           "10000 points.",
            "parameters": [
                {**_q("signal", NAME, "the signal's name"), "required": True},
                _q("start_ns", {"type": "integer", "minimum": 0, "maximum": 2**62},
                   "window start, ns since the epoch (default: an hour before end_ns)"),
                _q("end_ns", {"type": "integer", "minimum": 0, "maximum": 2**62},
                   "window end (exclusive; default: now)"),
                _q("max_points", {"type": "integer", "minimum": 2, "maximum": 10000},
                   "most points answered (default 1000)")],
            "responses": {**_ok(200, _ref("History"), "the samples"),
                          **_err(*AUTHED, 404, 422, 503)}},
    }


TEXT_CHARS = "[^\\x00-\\x08\\x0a-\\x1f\\x7f]"
TEXT = {"type": "string", "maxLength": 512, "pattern": f"^{TEXT_CHARS}*$"}
TEXT_REQUIRED = {"type": "string", "minLength": 1, "maxLength": 512,
                 "pattern": f"^{TEXT_CHARS}*[^\\s\\x00-\\x1f\\x7f]{TEXT_CHARS}*$"}
ALARMS = {"type": "array", "minItems": 1, "maxItems": 1000,
          "items": {"type": "string", "minLength": 1, "maxLength": 256}}
ACTION_ERRORS = (*AUTHED, 404, 409, 413, 415, 422, 503)


def _alarm_body(*variants: tuple[dict[str, Any], list[str]]) -> dict[str, Any]:
    schemas = [{"type": "object", "properties": props, "required": req,
                "additionalProperties": False} for props, req in variants]
    schema = schemas[0] if len(schemas) == 1 else {"oneOf": schemas}
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _action(summary: str, *variants: tuple[dict[str, Any], list[str]]) -> dict[str, Any]:
    return {"summary": summary,
            "description": "Queued to the alarm manager and awaited (api.alarm_wait_s): "
                           "409 is its refusal, 503 means no answer in time (the request "
                           "stays queued).",
            "requestBody": _alarm_body(*variants),
            "responses": {**_ok(200, _ref("AlarmActionResult"), "done"),
                          **_err(*ACTION_ERRORS)}}


def _alarm_operations() -> dict[tuple[str, str], dict[str, Any]]:
    obj = {"type": "object"}
    names = ({"alarms": ALARMS}, ["alarms"])
    return {
        ("GET", "/alarms"): {
            "summary": "The alarm manager's list: every alarm not quietly normal",
            "parameters": [
                _q("state", {"type": "string", "pattern": "^[a-z_]{1,32}$"}, "filter"),
                _q("priority", {"type": "string",
                                "enum": ["critical", "high", "medium", "low"]}, "filter"),
                _q("area", {"type": "string", "maxLength": 256}, "filter")],
            "responses": {**_ok(200, _ref("AlarmList"), "the list"),
                          **_err(*AUTHED, 404, 503)}},
        ("GET", "/alarms/events"): {
            "summary": "Alarm events (transitions, comments, requests, notifications)",
            "parameters": [
                _q("after_seq", {"type": "integer", "minimum": 0, "maximum": 2**62},
                   "events after this seq"),
                _q("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "at most"),
                _q("alarm", {"type": "string", "minLength": 1, "maxLength": 256},
                   "one alarm's events")],
            "responses": {**_ok(200, _ref("AlarmEvents"), "the events"),
                          **_err(*AUTHED, 404)}},
        ("GET", "/alarms/status"): {
            "summary": "The alarm manager's metrics (status.json)",
            "responses": {**_ok(200, obj, "the metrics"), **_err(*AUTHED, 404, 503)}},
        ("POST", "/alarms/ack"): _action(
            "Acknowledge named alarms, an area, or all",
            ({"alarms": ALARMS, "comment": TEXT}, ["alarms"]),
            ({"area": {"type": "string", "minLength": 1, "maxLength": 256},
              "comment": TEXT}, ["area"]),
            ({"all": {"const": True}, "comment": TEXT}, ["all"])),
        ("POST", "/alarms/reset"): _action("Reset latched alarms", names),
        ("POST", "/alarms/comment"): _action(
            "Add a comment to one alarm's journal",
            ({"alarms": {**ALARMS, "maxItems": 1}, "text": TEXT_REQUIRED},
             ["alarms", "text"])),
        ("POST", "/alarms/shelve"): _action(
            "Shelve for duration_s (at most the alarm's maximum) or one-shot",
            ({"alarms": ALARMS, "reason": TEXT_REQUIRED,
              "duration_s": {"type": "number", "exclusiveMinimum": 0},
              "oneshot": {"const": False}}, ["alarms", "reason", "duration_s"]),
            ({"alarms": ALARMS, "reason": TEXT_REQUIRED, "oneshot": {"const": True}},
             ["alarms", "reason", "oneshot"])),
        ("POST", "/alarms/unshelve"): _action("End a shelving", names),
        ("POST", "/alarms/out-of-service"): _action(
            "Take alarms out of service (engineer)",
            ({"alarms": ALARMS, "reason": TEXT_REQUIRED}, ["alarms", "reason"])),
        ("POST", "/alarms/return-to-service"): _action("Return alarms to service", names),
        ("POST", "/alarms/twilio/sms"): {
            "summary": "Twilio's SMS-reply webhook: 'ACK <code>' acknowledges",
            "description": "Authenticated by the X-Twilio-Signature header (the auth "
                           "token and alarms.notifications.twilio.sms_reply_url); the "
                           "sender must be a configured contact. Answers TwiML.",
            "requestBody": {"required": True, "content": {
                "application/x-www-form-urlencoded": {"schema": {
                    "type": "object", "required": ["From", "Body"],
                    "properties": {"From": {"type": "string", "maxLength": 32},
                                   "Body": {"type": "string", "maxLength": 1600}}}}}},
            "responses": {
                "200": {"description": "TwiML: the reply SMS",
                        "content": {"text/xml": {"schema": {"type": "string"}}}},
                "403": {"description": "bad signature (JSON) or unknown sender (empty "
                                       "TwiML, audited)",
                        "content": {"application/json": {"schema": ERROR},
                                    "text/xml": {"schema": {"type": "string"}}}},
                **_err(400, 404, 413, 415, 429)}},
    }


def openapi() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for (method, sub), spec in _operations().items():
        full = PREFIX + sub
        rule = RULES[(method, full)]
        op = dict(spec)
        if rule.permission is None:
            op["security"] = []
        else:
            op["description"] = (op.get("description", "") + f" Needs the "
                                 f"{minimum_role(rule.permission).label} role.").strip()
        op["operationId"] = f"{method.lower()}_{sub.strip('/').replace('/', '_')}".replace(
            "{", "").replace("}", "").replace(".", "_")
        paths.setdefault(full, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "Petra API", "version": petra.__version__,
                 "description": "Signals, alarms, status, users and audit of one Petra plant."},
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {"bearer": {
                "type": "http", "scheme": "bearer",
                "description": "an access token from /auth/login, or an API key "
                               "(petra_<id>_<secret>)"}}},
        "security": [{"bearer": []}],
    }
