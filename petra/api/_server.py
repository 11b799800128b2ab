"""The API process: attach the segment, serve HTTP(S) and WebSocket, beat.

``main(plant, instance)`` is what ``petra api`` (and so the supervisor) runs. Start-up
refuses rather than runs degraded: the users file must be readable (it may be empty:
then nobody can log in until ``petra user add``), the audit log writable, TLS files
loadable, and a non-loopback address has TLS (the config already insists). The
process beats its heartbeat record (role ``api``) with its counters, so the
supervisor's ``/healthz`` and ``/metrics`` show it like every other child.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from petra.api._alarms import AlarmsLink, alarms_link
from petra.api._app import build_app, tls_context
from petra.api._context import ApiContext
from petra.api._ws import HUB
from petra.config._api import ApiConfig, split_listen
from petra.errors import ConfigError, PetraError
from petra.io import run_process, setup_logging
from petra.security import (
    AuditLog,
    LockoutPolicy,
    LoginGuard,
    Passwords,
    TokenIssuer,
    UsersCache,
    UsersFile,
    default_users_file,
    plant_audit_log,
    read_secret,
    resolve,
)
from petra.shm import HeartbeatHandle, ProcessState, Segment
from petra.types import ROLE_API

log = logging.getLogger("petra.api")

BEAT_S = 0.25
TOKEN_CREDENTIAL = "petra-api-token-key"


def audit_log_for(cfg: ApiConfig | None, base: Path | None, instance: str) -> AuditLog:
    """The audit log a plant's processes append to (``api.audit_file`` or the default)."""
    return plant_audit_log(cfg, base, instance)


def make_context(cfg: ApiConfig, segment: Segment, instance: str, base: Path | None,
                 state_file: Path | None = None, *, alarms: AlarmsLink | None = None,
                 history_dir: Path | None = None
                 ) -> ApiContext:
    users_path = resolve(cfg.users_file, base) if cfg.users_file else default_users_file()
    users = UsersCache(UsersFile(users_path))
    n = len(users.get())  # readable now, or refuse to start
    if n == 0:
        log.warning("event=api_no_users path=%s detail='nobody can log in; add the first "
                    "admin with petra user add NAME --role admin'", users_path)
    secret = read_secret(
        file=resolve(cfg.token_secret_file, base) if cfg.token_secret_file else None,
        env=cfg.token_secret_env, credential=TOKEN_CREDENTIAL)
    if secret is None:
        log.info("event=api_token_key detail='random key for this run; tokens end with "
                 "the process'")
    audit = audit_log_for(cfg, base, instance)
    audit.check_writable()
    lock = cfg.lockout
    return ApiContext(
        segment=segment, config=cfg, users=users, passwords=Passwords(),
        tokens=TokenIssuer(secret, f"petra-api:{instance}", access_ttl_s=cfg.token_ttl_s,
                           refresh_ttl_s=cfg.refresh_ttl_s),
        guard=LoginGuard(LockoutPolicy(lock.user_failures, lock.address_failures,
                                       lock.window_s, lock.lockout_s)),
        audit=audit, instance=instance, state_file=state_file, tls=cfg.tls is not None,
        alarms=alarms, history_dir=history_dir)


class ApiServer:
    """A runnable for :func:`petra.io.run_process`."""

    def __init__(self, ctx: ApiContext, base: Path | None, port_file: Path | None = None
                 ) -> None:
        self.ctx = ctx
        self.base = base
        self.port_file = port_file
        self.hb: HeartbeatHandle | None = None
        self.port = 0

    def attach_heartbeat(self, hb: HeartbeatHandle) -> None:
        self.hb = hb

    async def run(self, stop: asyncio.Event) -> None:
        cfg = self.ctx.config
        app = build_app(self.ctx)
        ssl_ctx = tls_context(cfg.tls, self.base) if cfg.tls is not None else None
        host, port = split_listen(cfg.listen)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port, ssl_context=ssl_ctx, backlog=128)
            await site.start()
            server = site._server  # aiohttp keeps the bound socket here
            sockets = getattr(server, "sockets", None) or []
            self.port = sockets[0].getsockname()[1] if sockets else port
            self._announce(host)
            async with asyncio.TaskGroup() as tg:
                hub = tg.create_task(app[HUB].run(cfg.ws_tick_s))
                beat = tg.create_task(self._beat(stop))
                await stop.wait()
                hub.cancel()
                beat.cancel()
        finally:
            if self.hb is not None:
                self.hb.beat(ProcessState.STOPPING)
            await runner.cleanup()

    def _announce(self, host: str) -> None:
        scheme = "https" if self.ctx.tls else "http"
        log.info("event=api_listen url=%s://%s:%d instance=%s", scheme,
                 f"[{host}]" if ":" in host else host, self.port, self.ctx.instance)
        if self.port_file is not None:
            tmp = self.port_file.with_name(self.port_file.name + ".tmp")
            tmp.write_text(json.dumps({"port": self.port, "host": host, "scheme": scheme,
                                       "pid": os.getpid()}))
            tmp.replace(self.port_file)

    async def _beat(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if self.hb is not None:
                for i, v in enumerate(self.ctx.counters):
                    self.hb.set_counter(i, max(0, v))
                self.hb.beat(ProcessState.RUNNING)
            await asyncio.sleep(BEAT_S)


def main(plant_path: str, instance: str | None = None, cpus: Sequence[int] | None = None,
         *, log_level: str = "info", state_file: str | None = None,
         port_file: str | None = None, plant_data: str | None = None) -> int:
    """Run the API of a plant against its running instance until SIGTERM/SIGINT
    (``plant_data``: the supervisor's validated plant, see ``petra.config._handed``)."""
    setup_logging(log_level, ROLE_API)
    try:
        from petra.config._handed import child_config

        config = child_config(plant_path, plant_data, instance, log)
        cfg = config.api
        if cfg is None:
            raise ConfigError("the plant has no api: section", file=plant_path)
        inst = instance or config.instance
        base = Path(plant_path).resolve().parent
        alarms = alarms_link(config, inst, plant_path)
        hist = config.history
        history_dir = None
        if hist is not None and hist.parquet.enabled:
            # history.dir as the history sink resolves it ({instance}, relative to the
            # plant file), then its Parquet directory; read-only from here.
            root = Path(hist.dir.format(instance=inst))
            history_dir = (root if root.is_absolute() else base / root) / hist.parquet.dir

        def make(seg: Segment) -> ApiServer:
            ctx = make_context(cfg, seg, inst, base, Path(state_file) if state_file else None,
                               alarms=alarms, history_dir=history_dir)
            return ApiServer(ctx, base, Path(port_file) if port_file else None)

        return run_process(make, inst, ROLE_API, cpus, log_level)
    except PetraError as exc:
        log.error("event=api_failed error=%s", exc)
        return 1
