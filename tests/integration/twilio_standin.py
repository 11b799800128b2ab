"""A local stand-in for Twilio's REST API: records every request, answers as scripted.

``ThreadingHTTPServer`` on 127.0.0.1 port 0 (the port is read back after binding, no
free-port guessing). ``POST /2010-04-01/Accounts/{sid}/Messages.json`` and
``.../Calls.json`` are answered 201 with a JSON body holding a fresh SID unless a
scripted answer is queued (:meth:`TwilioStandIn.script`): a status and a body, for the
error paths (a 400 with ``{"code": 21211, ...}``, a 500). The real ``twilio`` client is
pointed at it through ``base_url``.
"""

from __future__ import annotations

import base64
import itertools
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs


@dataclass(frozen=True)
class Recorded:
    """One request as the stand-in saw it."""

    method: str
    path: str
    user: str
    password: str
    form: dict[str, str]
    headers: dict[str, str] = field(repr=False)
    mono: float
    status: int

    @property
    def kind(self) -> str:
        return "call" if self.path.endswith("/Calls.json") else (
            "sms" if self.path.endswith("/Messages.json") else "other")


class TwilioStandIn:
    """Start with :meth:`start` (returns the base URL), stop with :meth:`stop`."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._answers: deque[tuple[int, dict[str, Any]]] = deque()
        self._cond = threading.Condition()
        self._ids = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.default_status = 201
        self.delay_s = 0.0
        self.base_url = ""

    # ------------------------------------------------------------------ control
    def start(self) -> str:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                standin._handle(self)

            def do_GET(self) -> None:
                standin._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        return self.base_url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def script(self, *answers: tuple[int, dict[str, Any]]) -> None:
        """Answer the next requests with these (status, JSON body), in order."""
        with self._cond:
            self._answers.extend(answers)

    def wait_for(self, n: int, timeout: float = 20.0, kind: str | None = None
                 ) -> list[Recorded]:
        """Block until at least ``n`` requests (of ``kind``) have arrived."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [r for r in self.requests if kind is None or r.kind == kind]
                if len(got) >= n:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"only {len(got)} of {n} {kind or ''} requests "
                                         f"arrived in {timeout:g} s: {self.requests}")
                self._cond.wait(left)

    def snapshot(self) -> list[Recorded]:
        with self._cond:
            return list(self.requests)

    # ------------------------------------------------------------------ serving
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        t = time.monotonic()
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length).decode() if length else ""
        form = {k: v[0] for k, v in parse_qs(raw).items()}
        user = password = ""
        auth = h.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
        with self._cond:
            status, body = self._answers.popleft() if self._answers else (
                self.default_status, {})
        if status < 300:
            prefix = "CA" if h.path.endswith("/Calls.json") else "SM"
            body = {"sid": f"{prefix}{next(self._ids):032x}", "status": "queued",
                    "to": form.get("To"), "from": form.get("From"),
                    "body": form.get("Body"), "account_sid": user, **body}
        rec = Recorded(h.command, h.path, user, password, form, dict(h.headers), t, status)
        if self.delay_s:
            time.sleep(self.delay_s)
        data = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)
        with self._cond:
            self.requests.append(rec)
            self._cond.notify_all()
