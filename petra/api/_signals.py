"""Signals, plant status and reload.

Reads come straight from the segment (one seqlock read per signal). A write goes
through :func:`petra.security.authorised_write`, the path every writer shares: role,
then the segment's checked write (writable flag, type, finite, min/max), then one audit
record with the value before and after. A reload asks the supervisor (SIGHUP, as
``petra reload`` does) and waits for its answer in the supervisor's state file.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import math
import os
import re
import signal
import time
from typing import Any

import aiohttp
from aiohttp import web

from petra.api._auth import ctx_of, session_of
from petra.api._context import ApiContext
from petra.api._http import (
    NONFINITE,
    ApiError,
    bool_param,
    int_param,
    json_response,
    jvalue,
    query,
    read_object,
)
from petra.errors import (
    SignalNotWritableError,
    SignalTypeError,
    UnknownSignalError,
    ValueOutOfRangeError,
)
from petra.security import AuditError, PermissionDeniedError, authorised_write
from petra.shm import SignalInfo, read_heartbeats, read_stats
from petra.types import DRIVER_PREFIX, ApiCounter, ConnState, SignalType

MAX_LIMIT = 10_000
RELOAD_TIMEOUT_S = 20.0
_TYPES = {"bool": SignalType.BOOL, "int": SignalType.INT, "float": SignalType.FLOAT}


def signal_json(ctx: ApiContext, info: SignalInfo) -> dict[str, Any]:
    s = ctx.segment.read_index(info.index)
    return {"name": info.name, "type": info.type.name.lower(), "unit": info.unit,
            "writable": info.writable, "min": info.minimum, "max": info.maximum,
            "value": jvalue(s.value), "quality": s.quality.name,
            "substatus": s.substatus.name, "source_ts_ns": s.source_ts_ns,
            "write_ts_ns": s.write_ts_ns}


def _info(ctx: ApiContext, name: str) -> SignalInfo:
    if name not in ctx.segment:
        raise ApiError(404, f"no signal named {name[:80]!r}")
    return ctx.segment.info_of(name)


async def list_signals(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    params = query(request, ("match", "writable", "type", "limit", "offset"))
    pattern = params.get("match")
    rx = re.compile(fnmatch.translate(pattern)) if pattern else None
    writable = bool_param(params, "writable")
    want_type = params.get("type")
    if want_type is not None and want_type not in _TYPES:
        raise ApiError(400, "type must be bool, int or float")
    limit = int_param(params, "limit", 1000, 1, MAX_LIMIT)
    offset = int_param(params, "offset", 0, 0, 1 << 31)
    chosen = [i for i in ctx.segment.signals
              if (rx is None or rx.match(i.name))
              and (writable is None or i.writable == writable)
              and (want_type is None or i.type is _TYPES[want_type])]
    page = [signal_json(ctx, i) for i in chosen[offset:offset + limit]]
    return json_response({"signals": page, "total": len(chosen), "offset": offset,
                          "limit": limit})


async def get_signal(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    query(request, ())
    return json_response(signal_json(ctx, _info(ctx, request.match_info["name"])))


async def put_signal(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    query(request, ())
    name = request.match_info["name"]
    info = _info(ctx, name)
    body = await read_object(request, {"value": (bool, int, float, str)}, ("value",))
    value = body["value"]
    if isinstance(value, str):
        if info.type is not SignalType.FLOAT or value not in NONFINITE:
            raise ApiError(422, f"signal {name!r}: a value must be a JSON "
                           f"{'boolean' if info.type is SignalType.BOOL else 'number'}")
        value = NONFINITE[value]
    principal = session_of(request).principal
    try:
        result = await asyncio.to_thread(authorised_write, ctx.segment, principal, name,
                                         value, ctx.audit)
    except PermissionDeniedError as exc:
        raise ApiError(403, str(exc)) from None
    except SignalNotWritableError as exc:
        raise ApiError(403, str(exc)) from None
    except (SignalTypeError, ValueOutOfRangeError) as exc:
        raise ApiError(422, str(exc)) from None
    except UnknownSignalError as exc:
        raise ApiError(404, str(exc)) from None
    except AuditError as exc:
        raise ApiError(503, str(exc)) from None
    ctx.count(ApiCounter.WRITES)
    return json_response({"signal": name, "before": jvalue(result.before),
                          "after": jvalue(result.after), "audit_seq": result.audit_seq})


async def status(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    query(request, ())
    st = read_stats(ctx.segment)
    info = ctx.segment.info()
    procs = [{"role": hb.role, "pid": hb.pid, "state": hb.state.name.lower(),
              "heartbeat_age_s": round(max(0, hb.age_ns()) / 1e9, 3),
              "restarts": hb.restarts, "counters": list(hb.counters)}
             for hb in read_heartbeats(ctx.segment)]
    health = await _supervisor_health(ctx)
    return json_response({
        "instance": ctx.instance,
        "scan": {"cycles": st.cycles, "overruns": st.overruns, "skipped": st.skipped,
                 "period_s": st.period_ns / 1e9, "exec_avg_s": st.exec_avg_ns / 1e9,
                 "exec_max_s": st.exec_max_ns / 1e9,
                 "wake_p99_s": _finite(st.wake_percentile_us(99.0) / 1e6),
                 "wake_p50_s": _finite(st.wake_percentile_us(50.0) / 1e6),
                 "wake_avg_s": st.wake_avg_ns / 1e9, "wake_max_s": st.wake_max_ns / 1e9},
        "journal": {"head": info.journal_head, "capacity": info.journal_capacity},
        "signals": info.n_signals,
        "processes": procs,
        "devices": _devices(procs, health),
        "health": health,
    })


def _devices(procs: list[dict[str, Any]], health: dict[str, Any] | None
             ) -> list[dict[str, Any]]:
    """One entry per driver process: its connection state (heartbeat counter 0, the
    driver's ConnState) and, when it is not up, why (the process state, the
    connection state, and the supervisor's /healthz reasons that name it)."""
    reasons = [str(r) for r in (health or {}).get("reasons") or []]
    out = []
    for p in procs:
        role = str(p["role"])
        if not role.startswith(f"{DRIVER_PREFIX}:"):
            continue
        counters = p["counters"]
        try:
            conn = ConnState(counters[0]) if counters else ConnState.DISCONNECTED
        except ValueError:
            conn = ConnState.DISCONNECTED
        alive = p["state"] in ("running", "degraded")  # degraded: up, device not
        if not alive:
            conn = ConnState.DISCONNECTED
        why = []
        if not alive:
            why.append(f"process {p['state']}")
        if conn is not ConnState.UP:
            why.append(f"connection {conn.name.lower()}")
            why.extend(r for r in reasons if r.startswith(role + " ") and r not in why)
        out.append({"name": role.split(":", 1)[1], "role": role,
                    "connection": conn.name.lower(), "process": p["state"],
                    "restarts": p["restarts"], "reason": "; ".join(why)})
    return out


def _finite(x: float) -> float | None:
    """None for a figure past the histogram's top (JSON has no infinity)."""
    return x if math.isfinite(x) else None


def _read_state(ctx: ApiContext) -> dict[str, Any] | None:
    if ctx.state_file is None:
        return None
    try:
        data = json.loads(ctx.state_file.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


async def _supervisor_health(ctx: ApiContext) -> dict[str, Any] | None:
    """The supervisor's /healthz (status, reasons, child table) when it is known."""
    state = _read_state(ctx)
    port = state.get("health_port") if state else None
    if not isinstance(port, int) or port <= 0:
        return None
    try:
        timeout = aiohttp.ClientTimeout(total=1.0)
        async with aiohttp.ClientSession(timeout=timeout) as http, \
                http.get(f"http://127.0.0.1:{port}/healthz") as resp:
            body = await resp.json()
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None
    return body if isinstance(body, dict) else None


async def reload(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    query(request, ())
    principal = session_of(request).principal
    state = _read_state(ctx)
    if state is None or not isinstance(state.get("pid"), int):
        raise ApiError(409, "no supervisor to reload (the API runs standalone)")
    before = (state.get("last_reload") or {}).get("seq", 0)
    try:
        os.kill(int(state["pid"]), signal.SIGHUP)
    except OSError as exc:
        raise ApiError(503, f"cannot signal the supervisor: {exc.strerror}") from None
    deadline = time.monotonic() + RELOAD_TIMEOUT_S
    while time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        last = (_read_state(ctx) or {}).get("last_reload") or {}
        if last.get("seq", 0) > before:
            ok = bool(last.get("ok"))
            errors = [str(e)[:500] for e in last.get("errors") or []][:50]
            await ctx.record(principal, "config.reload", ctx.instance,
                             outcome="ok" if ok else "failed", reason="; ".join(errors)[:500])
            return json_response({"ok": ok, "errors": errors}, 200 if ok else 422)
    await ctx.record(principal, "config.reload", ctx.instance, outcome="failed",
                     reason="no answer from the supervisor")
    raise ApiError(504, "the supervisor did not answer the reload in time")
