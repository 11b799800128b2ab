"""Request parsing and error answers shared by the handlers.

Every refusal is a JSON body ``{"error": "...", "status": N}`` with a 4xx code that
says what to fix: 400 malformed (bad JSON, unknown or missing field, wrong type), 401
not authenticated, 403 not allowed, 404 no such signal or user, 413 too large, 422 a
value the signal refuses (type, NaN, min/max), 429 locked out. Input is checked
before anything is done, so a refused request changes nothing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, NoReturn

from aiohttp import web

from petra.types import Value

MAX_STRING = 256


class ApiError(Exception):
    """An answer other than success: status, message, extra headers."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None
                 ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def bad(message: str) -> NoReturn:
    raise ApiError(400, message)


def json_response(body: object, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(body, allow_nan=False), status=status,
                        content_type="application/json")


def error_response(status: int, message: str,
                   headers: Mapping[str, str] | None = None) -> web.Response:
    resp = json_response({"error": message, "status": status}, status)
    resp.headers.update(headers or {})
    return resp


async def read_object(request: web.Request, fields: Mapping[str, type | tuple[type, ...]],
                      required: tuple[str, ...] = ()) -> dict[str, Any]:
    """The body as a JSON object whose keys are all in ``fields`` (with those types),
    ``required`` ones present; ApiError 400 otherwise (413 from aiohttp when too big)."""
    if request.content_type != "application/json":
        raise ApiError(415, "send the body as application/json")
    raw = await request.read()
    try:
        data = json.loads(raw, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        bad("the body is not valid JSON")
    if not isinstance(data, dict):
        bad("the body must be a JSON object")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        bad(f"unknown field(s): {', '.join(repr(k)[:40] for k in unknown[:5])}; expected "
            f"{', '.join(fields)}")
    for key in required:
        if key not in data:
            bad(f"field {key!r} is required")
    for key, value in data.items():
        want = fields[key]
        if (isinstance(value, bool) and bool not in _tuple(want)) or not isinstance(value, want):
            bad(f"field {key!r} has the wrong type")
        if isinstance(value, str) and len(value) > MAX_STRING * 4:
            bad(f"field {key!r} is too long")
    return data


def _tuple(t: type | tuple[type, ...]) -> tuple[type, ...]:
    return t if isinstance(t, tuple) else (t,)


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def query(request: web.Request, allowed: tuple[str, ...]) -> dict[str, str]:
    """The query string as a dict; unknown or repeated parameters are a 400."""
    out: dict[str, str] = {}
    for key, value in request.query.items():
        if key not in allowed:
            bad(f"unknown query parameter {key[:40]!r}; expected "
                f"{', '.join(allowed) or 'none'}")
        if key in out:
            bad(f"query parameter {key!r} given twice")
        if len(value) > MAX_STRING:
            bad(f"query parameter {key!r} is too long")
        out[key] = value
    return out


def int_param(params: Mapping[str, str], key: str, default: int, lo: int, hi: int) -> int:
    text = params.get(key)
    if text is None:
        return default
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        bad(f"{key} must be an integer {lo}..{hi}")
    value = int(text)
    if not lo <= value <= hi:
        bad(f"{key} must be an integer {lo}..{hi}")
    return value


def bool_param(params: Mapping[str, str], key: str) -> bool | None:
    text = params.get(key)
    if text is None:
        return None
    if text not in ("true", "false"):
        bad(f"{key} must be true or false")
    return text == "true"


NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def jvalue(value: Value) -> bool | int | float | str:
    """A value for JSON: NaN and the infinities as the strings JavaScript prints."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")  # noqa: PLR0124
    return value
