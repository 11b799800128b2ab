"""The web page's files: every file the page loads exists and is served with a type,
nothing outside the static directory can be named, and the files ship as package data."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from petra.api._http import ApiError
from petra.api._web import CSP, STATIC_DIR, StaticFiles

ROOT = Path(__file__).resolve().parents[2]


def test_every_file_the_page_loads_is_served() -> None:
    files = StaticFiles()
    assert "index.html" in files.files
    wanted = set(re.findall(r'(?:src|href)="/ui/([^"]+)"',
                            (STATIC_DIR / "index.html").read_text()))
    for js in STATIC_DIR.glob("*.js"):
        wanted |= set(re.findall(r'from "\./([^"]+)"', js.read_text()))
    assert wanted, "the page loads nothing?"
    missing = wanted - set(files.files)
    assert not missing, f"the page loads files that are not served: {missing}"
    assert files.answer("app.js").content_type == "text/javascript"
    assert files.answer("style.css").content_type == "text/css"
    assert files.answer("index.html").headers["Content-Security-Policy"] == CSP


@pytest.mark.parametrize("name", ["../_web.py", "..%2f_web.py", "", ".", "missing.js",
                                  "/etc/passwd", "index.html/"])
def test_nothing_else_can_be_named(name: str) -> None:
    with pytest.raises(ApiError) as exc:
        StaticFiles().answer(name)
    assert exc.value.status == 404


def test_no_inline_script_or_style_the_policy_would_block() -> None:
    html = (STATIC_DIR / "index.html").read_text()
    assert "<script>" not in html  # every script is a file
    assert not re.search(r"<[^>]*\sstyle=", html)
    assert not re.search(r"<[^>]*\son[a-z]+=", html)  # no inline event handlers


def test_the_files_ship_as_package_data() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "static/*" in meta["tool"]["setuptools"]["package-data"]["petra.api"]
    assert "include petra/api/static/*" in (ROOT / "MANIFEST.in").read_text()
    assert not [p for p in STATIC_DIR.iterdir() if p.is_dir()]  # static/* is flat
