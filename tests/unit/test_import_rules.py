"""The layer table of docs/architecture.md, checked over every import in petra/.

Every ``import`` and ``from ... import`` counts, also the lazy ones inside functions:
a lazy import still ties the packages together. A package may import the layers below
it and, for runtime roles, ``petra.io``; never a sibling role.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PETRA = Path(__file__).resolve().parents[2] / "petra"

# _artefact: the plant artefact's file format (standard library and errors only), read
# by the scan and the other roles alike.
VOCABULARY = {"errors", "types", "logs", "_artefact"}
NATIVE = VOCABULARY | {"_core"}
SEGMENT = NATIVE | {"shm", "blocks"}
# Users, roles, tokens and the audit chain sit beside config: pure (no C, no segment),
# so `petra user` and `petra audit` run without the C core, and every runtime role
# and tool can share the one authorised write path without importing each other.
ROLE_BASE = SEGMENT | {"config", "security"}
# What each top-level part of petra may import (besides itself).
ALLOWED: dict[str, set[str] | None] = {
    "errors": set(),
    "types": {"errors"},
    "logs": {"errors", "types"},
    "_artefact": {"errors"},
    "_core": VOCABULARY | {"_native"},
    "shm": NATIVE,
    "blocks": NATIVE,
    "config": VOCABULARY | {"blocks"},
    "security": VOCABULARY,
    "scan": ROLE_BASE,
    "io": ROLE_BASE,
    "drivers": ROLE_BASE | {"io"},
    "sinks": ROLE_BASE | {"io"},
    "history": ROLE_BASE | {"io"},
    "alarms": ROLE_BASE | {"io"},
    "api": ROLE_BASE | {"io"},
    # orchestration and tools: anything below
    "supervisor": None,
    "top": None,
    "bench": None,
    "cli": None,
    "__main__": None,
    "__init__": {"errors"},
    "_native_build": set(),
}
# The block catalogue is pure; the compiler and runtime need the C core, so config
# must not reach them.
CONFIG_FORBIDDEN_MODULES = ("petra.blocks._program", "petra.blocks._compiler",
                            "petra.blocks._runtime", "petra.blocks._reference")


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _modules() -> Iterator[tuple[Path, str]]:
    for path in sorted(PETRA.rglob("*.py")):
        rel = path.relative_to(PETRA.parent).with_suffix("")
        yield path, ".".join(rel.parts)


def _imports(path: Path, module: str) -> Iterator[tuple[int, str]]:
    """Absolute names of every petra module imported by ``path`` (with line numbers)."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("petra"):
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if not base.startswith("petra"):
                continue
            if base == "petra":  # from petra import x: x is a module of petra
                for alias in node.names:
                    yield node.lineno, f"petra.{alias.name}"
            else:
                yield node.lineno, base


def _violations() -> list[str]:
    bad: list[str] = []
    for path, module in _modules():
        part = _part(module)
        allowed = ALLOWED.get(part, set())
        for line, target in _imports(path, module):
            where = f"{path.relative_to(PETRA.parent)}:{line}: {module} imports {target}"
            tpart = _part(target)
            if tpart == part or target == "petra":
                if part == "config" and target.startswith(CONFIG_FORBIDDEN_MODULES):
                    bad.append(where)
                continue
            if part == "config" and target.startswith(CONFIG_FORBIDDEN_MODULES):
                bad.append(where + " (the compiler needs the C core)")
            elif allowed is not None and tpart not in allowed:
                bad.append(where)
    return bad


def test_every_import_follows_the_layer_table() -> None:
    assert _violations() == []


def test_only_the_native_layer_imports_the_extension() -> None:
    importers = sorted({module for path, module in _modules()
                        for _, target in _imports(path, module)
                        if target == "petra._native"})
    assert importers == ["petra._core"]


def test_every_part_of_petra_is_in_the_table() -> None:
    parts = {_part(module) for _, module in _modules()}
    assert parts <= set(ALLOWED), sorted(parts - set(ALLOWED))


@pytest.mark.parametrize(("importer", "target"), [
    ("petra.sinks.x", "petra.drivers._common"),
    ("petra.drivers.x", "petra.sinks.mqtt_out"),
    ("petra.config._x", "petra.shm"),
    ("petra.config._x", "petra._native"),
    ("petra.config._x", "petra._core"),
    ("petra.config._x", "petra.drivers"),
    ("petra.config._x", "petra.blocks._program"),
    ("petra.scan._x", "petra.drivers"),
    ("petra.scan._x", "petra.sinks"),
    ("petra.scan._x", "petra.cli"),
    ("petra.shm._x", "petra.config"),
    ("petra.shm._x", "petra.scan"),
    ("petra.io._x", "petra.drivers"),
    ("petra.types", "petra.shm"),
    ("petra.security._x", "petra.shm"),
    ("petra.security._x", "petra._core"),
    ("petra.security._x", "petra.config"),
    ("petra.security._x", "petra.api"),
    ("petra.api._x", "petra.sinks"),
    ("petra.api._x", "petra.drivers"),
    ("petra.api._x", "petra.scan"),
    ("petra.sinks.x", "petra.api"),
])
def test_the_table_forbids(importer: str, target: str, tmp_path: Path,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The checker itself catches each forbidden edge the architecture issue names."""
    part = _part(importer)
    fake = tmp_path / "petra" / part / "_x.py"
    if importer.count(".") == 1:
        fake = tmp_path / "petra" / f"{part}.py"
    fake.parent.mkdir(parents=True)
    fake.write_text(f"import {target}\n")
    monkeypatch.setattr(__import__(__name__), "PETRA", tmp_path / "petra")
    assert len(_violations()) == 1
