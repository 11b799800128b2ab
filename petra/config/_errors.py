"""Collecting every problem of a plant file, each at its line and column.

Validation never stops at the first problem: the YAML reader, the pydantic models and the
semantic pass all report into one :class:`Diagnostics`, which turns a key path into
``file:line:col`` through the :class:`~petra.config._yaml.SourceMap`. At the end the
errors are sorted by position and raised together as :class:`ConfigErrors`.

Pydantic reports a ``loc`` tuple per error. It can hold entries that are not keys of the
file: the tag of a union member (``'modbus'`` in ``drivers.0.modbus.host`` for a union
discriminated on ``kind``, ``'int'`` inside a scalar union). :func:`clean_loc` drops them
by walking the data alongside, so the key path printed is the one the user wrote.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel
from pydantic_core import ErrorDetails

from petra.blocks._validate import show, suggest  # one wording for config and blocks
from petra.config._yaml import Path, SourceMap, YamlError
from petra.errors import ConfigError, PetraError


class ConfigErrors(PetraError):  # noqa: N818 - plural of ConfigError, by design
    """A plant file is invalid. ``errors`` holds every problem, sorted by position."""

    def __init__(self, errors: Iterable[ConfigError], warnings: Iterable[ConfigError] = ()):
        self.errors = sort_errors(errors)
        self.warnings = sort_errors(warnings)
        super().__init__("\n".join(e.format() for e in self.errors))

    def __str__(self) -> str:
        return "\n".join(e.format() for e in self.errors)


def sort_errors(errors: Iterable[ConfigError]) -> list[ConfigError]:
    """Sort by line then column; errors without a position come last, stable otherwise."""
    big = 1 << 62
    return sorted(errors, key=lambda e: (e.line or big, e.column or big))


def format_path(path: Sequence[str | int]) -> str:
    """``('blocks', 3, 'inputs', 'pv')`` -> ``blocks[3].inputs.pv``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


class Diagnostics:
    """Errors and warnings of one file, positioned through its source map."""

    def __init__(self, file: str, smap: SourceMap) -> None:
        self.file = file
        self.smap = smap
        self.errors: list[ConfigError] = []
        self.warnings: list[ConfigError] = []
        self._replaced: set[Path] = set()  # values the YAML reader could not convert

    def yaml(self, problems: Iterable[YamlError]) -> None:
        """Report the reader's problems. A value it kept as raw text (a tag that does not
        fit, a number too long) is not reported a second time by the models."""
        for prob in problems:
            self.error_at(prob.position, prob.path, prob.message)
            if prob.replaced:
                self._replaced.add(prob.path)

    def _make(self, path: Path, message: str, at_key: bool) -> ConfigError:
        _, pos = self.smap.locate(path, at_key=at_key)
        line, col = pos if pos is not None else (None, None)
        return ConfigError(
            one_line(message), file=self.file, key_path=format_path(path), line=line,
            column=col)

    def error(self, path: Path, message: str, *, at_key: bool = False) -> None:
        self.errors.append(self._make(path, message, at_key))

    def warning(self, path: Path, message: str, *, at_key: bool = False) -> None:
        self.warnings.append(self._make(path, message, at_key))

    def error_at(self, position: tuple[int, int] | None, path: Path, message: str) -> None:
        line, col = position if position is not None else (None, None)
        self.errors.append(ConfigError(
            one_line(message), file=self.file, key_path=format_path(path), line=line,
            column=col))

    def pydantic(self, root: type[BaseModel], data: Any, err: ErrorDetails,
                 prefix: Path = ()) -> None:
        """Report one pydantic error of ``root`` validating ``data`` (found at ``prefix``)."""
        loc = clean_loc(data, tuple(err["loc"]))
        full = (*prefix, *loc)
        if any(full[:n] in self._replaced for n in range(len(full) + 1)):
            return
        kind = err["type"]
        if kind == "extra_forbidden" and loc and isinstance(loc[-1], str):
            key = loc[-1]
            known = fields_at(root, loc[:-1])
            hint = suggest(key, known) if known else ""
            if not hint and known:
                hint = f"; expected one of: {', '.join(sorted(known))}"
            self.error((*prefix, *loc), f"unknown key {key!r}{hint}", at_key=True)
            return
        if kind == "missing" and loc:
            self.error((*prefix, *loc[:-1]), f"missing required key {loc[-1]!r}", at_key=True)
            return
        self.error((*prefix, *loc), _rephrase(err))


MESSAGE_MAX_CHARS = 1000


def one_line(message: str) -> str:
    """A message as one line of bounded length: scripts read one error per line, and a
    value quoted from a hostile file must not make a megabyte of it."""
    message = message.replace("\r", "\\r").replace("\n", "\\n")
    if len(message) > MESSAGE_MAX_CHARS:
        message = message[:MESSAGE_MAX_CHARS] + f"... ({len(message)} characters)"
    return message


def _rephrase(err: ErrorDetails) -> str:
    # The first line only: some errors (an S7 address) add a picture on more lines.
    msg = err["msg"].split("\n", 1)[0]
    kind = err["type"]
    if kind in ("value_error", "assertion_error"):
        return msg.split(", ", 1)[1] if ", " in msg else msg
    if msg.startswith("Input should be "):
        return f"expected {msg.removeprefix('Input should be ')}, got {show(err.get('input'))}"
    return msg[:1].lower() + msg[1:]


def clean_loc(data: Any, loc: tuple[str | int, ...]) -> Path:
    """Drop entries of a pydantic ``loc`` that are union tags, not keys of ``data``."""
    out: list[str | int] = []
    node = data
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(node, dict):
            if part in node:
                out.append(part)
                node = node[part]
                continue
            nxt = loc[i + 1] if not last else None
            if not last and (i + 1 == len(loc) - 1 or nxt in node):
                continue  # a union tag between a mapping and one of its keys
            out.append(part)
            node = None
            continue
        if isinstance(node, list):
            if isinstance(part, int) and 0 <= part < len(node):
                out.append(part)
                node = node[part]
                continue
            if not last:
                continue
            out.append(part)
            node = None
            continue
        if node is None and out and len(out) == i:
            out.append(part)
            continue
        # Below a scalar every remaining entry is a union tag.
        break
    return tuple(out)


def _unwrap(tp: Any) -> list[Any]:
    """The concrete types behind Annotated / Optional / Union."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if origin is typing.Union or origin is types.UnionType:
        out: list[Any] = []
        for arg in typing.get_args(tp):
            if arg is not type(None):
                out.extend(_unwrap(arg))
        return out
    return [tp]


def fields_at(root: type[BaseModel], path: Path) -> set[str]:
    """Key names a mapping at ``path`` may hold, from the model types (for hints)."""
    current: list[Any] = [root]
    for part in path:
        nxt: list[Any] = []
        for tp in current:
            for t in _unwrap(tp):
                if isinstance(t, type) and issubclass(t, BaseModel):
                    field = t.model_fields.get(str(part))
                    if field is not None:
                        nxt.append(field.annotation)
                elif typing.get_origin(t) is list and isinstance(part, int):
                    nxt.extend(typing.get_args(t)[:1])
                elif typing.get_origin(t) is dict and isinstance(part, str):
                    nxt.extend(typing.get_args(t)[1:2])
        current = nxt
    names: set[str] = set()
    for tp in current:
        for t in _unwrap(tp):
            if isinstance(t, type) and issubclass(t, BaseModel):
                names.update(f.alias or n for n, f in t.model_fields.items())
    return names
