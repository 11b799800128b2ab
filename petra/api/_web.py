"""The operator's web page: static files served by the API process at ``/``.

The page is plain HTML, CSS and ES modules in ``petra/api/static/`` (package data; no
build step, no framework, nothing fetched at run time). It talks to the same API every
other client uses: it logs in with ``POST {PREFIX}/auth/login``, keeps the tokens in
``sessionStorage`` (gone when the tab closes), refreshes before expiry, and takes
live values over one WebSocket.

Only files present in the static directory when the app is built are served, by exact
name (no path walking: a name is one path component from a fixed set). They are public,
like the login endpoint, because they hold no data; everything the page shows comes
from the authenticated API. Each answer carries a Content-Security-Policy that lets the
page load its own scripts and styles and connect to its own origin and nothing else
(no inline script, no eval, no third-party origin), and is not to be framed.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from aiohttp import web

from petra.api._http import ApiError

STATIC_DIR = Path(str(resources.files("petra.api").joinpath("static")))
INDEX = "index.html"
CONTENT_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css",
                 ".svg": "image/svg+xml"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
WEB_ROUTES = (("GET", "/"), ("GET", "/ui/{file}"))


class StaticFiles:
    """The page's files, read once when the app is built (a few tens of kB)."""

    def __init__(self, directory: Path = STATIC_DIR) -> None:
        self.files: dict[str, tuple[bytes, str]] = {}
        if directory.is_dir():
            for path in sorted(directory.iterdir()):
                ctype = CONTENT_TYPES.get(path.suffix)
                if ctype is not None and path.is_file():
                    self.files[path.name] = (path.read_bytes(), ctype)

    def answer(self, name: str) -> web.Response:
        found = self.files.get(name)
        if found is None:
            raise ApiError(404, "no such file")
        body, ctype = found
        resp = web.Response(body=body, content_type=ctype,
                            charset="utf-8" if ctype != "image/svg+xml" else None)
        resp.headers["Content-Security-Policy"] = CSP
        return resp


STATIC = web.AppKey("static", StaticFiles)


async def index(request: web.Request) -> web.Response:
    return request.app[STATIC].answer(INDEX)


async def static_file(request: web.Request) -> web.Response:
    return request.app[STATIC].answer(request.match_info["file"])


def add_routes(app: web.Application) -> None:
    app[STATIC] = StaticFiles()
    app.router.add_get("/", index)
    app.router.add_get("/ui/{file}", static_file)
