"""YAML to plain data, remembering where every key and value was written.

Why compose and not load: ``yaml.safe_load`` returns bare dicts and lists and forgets
the source positions, and it silently keeps the last of two equal keys. Here the text is
composed into PyYAML's node tree (every node carries a start mark), walked once to build
plain Python data, and every key path is recorded with the line and column of its key and
of its value. Error reporting maps pydantic ``loc`` tuples and semantic findings to those
positions.

Scalars follow the YAML 1.2 core schema, not PyYAML's YAML 1.1 default, because the 1.1
rules surprise people writing plant files:

- only ``true``/``false`` (any case) are booleans; ``on``, ``off``, ``yes``, ``no``, ``y``
  stay strings (in YAML 1.1 ``enable: on`` is ``True`` and a key ``on:`` becomes a bool);
- ``1e3`` is a float (PyYAML 1.1 reads it as the string ``"1e3"``);
- ``012`` is twelve, not octal ten; ``1:30`` is a string, not ninety (base 60);
- ``2024-01-01`` stays a string, not a ``datetime.date``.

Positions are 1-based (editors count from 1; PyYAML marks from 0).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

Path = tuple[str | int, ...]
Position = tuple[int, int]

_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_BOOL_RE = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_NULL_RE = re.compile(r"^(?:~|null|Null|NULL|)$")
_INT_RE = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT_RE = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)


class _CoreLoader(_BaseLoader):  # type: ignore[valid-type,misc]  # base chosen at runtime
    """A safe loader whose implicit scalar types are those of the YAML 1.2 core schema."""

    yaml_implicit_resolvers: dict[str | None, list[tuple[str, re.Pattern[str]]]] = {}  # noqa: RUF012 - PyYAML keeps its resolver table on the class


class _CoreDumper(yaml.SafeDumper):
    """Writes YAML that :class:`_CoreLoader` reads back to the same data: a string that
    the core schema would read as another type (``"1e3"``, ``"0o17"``) is quoted."""

    yaml_implicit_resolvers: dict[str | None, list[tuple[str, re.Pattern[str]]]] = {}  # noqa: RUF012 - PyYAML keeps its resolver table on the class


for _tag, _regex, _first in (
    ("tag:yaml.org,2002:bool", _BOOL_RE, "tTfF"),
    ("tag:yaml.org,2002:int", _INT_RE, "-+0123456789"),
    ("tag:yaml.org,2002:float", _FLOAT_RE, "-+0123456789."),
    ("tag:yaml.org,2002:null", _NULL_RE, ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:merge", re.compile(r"^<<$"), "<"),
):
    _CoreLoader.add_implicit_resolver(_tag, _regex, list(_first))
    _CoreDumper.add_implicit_resolver(_tag, _regex, list(_first))


def dump_yaml(data: Any) -> str:
    """Plain data as block-style YAML that :func:`parse_yaml` reads back unchanged.

    ``yaml.safe_dump`` writes YAML 1.1: it leaves ``"1e3"`` or ``"0o17"`` unquoted, which
    the core schema reads as numbers. Tools that generate plant files should use this.
    """
    return yaml.dump(data, Dumper=_CoreDumper, sort_keys=False, allow_unicode=True,
                     default_flow_style=False)


_CORE_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null")
)


def _scalar(node: yaml.ScalarNode) -> Any:  # noqa: PLR0911 - one return per tag
    """Construct one scalar under the core schema (only the implicit core tags)."""
    text = node.value
    tag = node.tag
    if tag == "tag:yaml.org,2002:null":
        return None
    if tag == "tag:yaml.org,2002:bool":
        return text.lower() == "true"
    if tag == "tag:yaml.org,2002:int":
        if text.startswith("0o"):
            return int(text[2:], 8)
        if text.startswith("0x"):
            return int(text[2:], 16)
        return int(text, 10)
    if tag == "tag:yaml.org,2002:float":
        low = text.lower()
        if low.endswith(".inf"):
            return -math.inf if low.startswith("-") else math.inf
        if low == ".nan":
            return math.nan
        return float(text)
    return text


_NONFINITE = {"nan": math.nan, "inf": math.inf, "+inf": math.inf, "-inf": -math.inf}


def parse_scalar(text: str) -> bool | int | float:
    """A value typed by a person (``petra write``, petra-top) read as the plant file
    reads it: the YAML 1.2 core scalars ``true``/``false``, ints (``12``, ``0x1f``) and
    floats (``2.5``, ``1e3``, ``.nan``), plus ``nan``/``inf``/``-inf`` spelt plainly.
    Raises ValueError for anything else (the signal's type is checked by the writer)."""
    t = text.strip()
    if t.lower() in _NONFINITE:
        return _NONFINITE[t.lower()]
    for tag, regex in (("bool", _BOOL_RE), ("int", _INT_RE), ("float", _FLOAT_RE)):
        if regex.match(t):
            value: bool | int | float = _scalar(
                yaml.ScalarNode(f"tag:yaml.org,2002:{tag}", t))
            return value
    raise ValueError(f"not a value: {text!r} (write true, false, or a number such as 2.5)")


class YamlError(Exception):
    """The text is not YAML, or not YAML this format can hold; has a position."""

    def __init__(self, message: str, path: Path, position: Position | None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.position = position


@dataclass
class SourceMap:
    """Where each key path was written: the key's position and the value's position."""

    keys: dict[Path, Position] = field(default_factory=dict)
    values: dict[Path, Position] = field(default_factory=dict)

    def locate(self, path: Path, *, at_key: bool = False) -> tuple[Path, Position | None]:
        """Position of ``path`` or, when it was not written, of its nearest written parent.

        Returns the path actually found too, so callers can tell a missing key from a
        present one. ``at_key`` prefers the key's position (unknown keys, duplicates).
        """
        probe = path
        while True:
            if at_key and probe in self.keys:
                return probe, self.keys[probe]
            if probe in self.values:
                # A mapping value starts at its first key; the key that names the mapping
                # is where a reader looks, so prefer it when there is one.
                if probe != path and probe in self.keys:
                    return probe, self.keys[probe]
                return probe, self.values[probe]
            if not probe:
                return (), None
            probe = probe[:-1]


def _mark(node: yaml.Node) -> Position:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def parse_yaml(text: str) -> tuple[Any, SourceMap, list[YamlError]]:
    """Parse one YAML document into plain data and a :class:`SourceMap`.

    Returns the data, the map and a list of non-fatal problems (duplicate keys, keys that
    are not strings); raises :class:`YamlError` when the text cannot be parsed at all.
    """
    loader = _CoreLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            pos = (mark.line + 1, mark.column + 1) if mark is not None else None
            problem = exc.problem or exc.context or "invalid YAML"
            raise YamlError(f"invalid YAML: {problem}", (), pos) from None
        except yaml.YAMLError as exc:
            raise YamlError(f"invalid YAML: {exc}", (), None) from None
    finally:
        loader.dispose()
    smap = SourceMap()
    problems: list[YamlError] = []
    if node is None:
        return None, smap, problems
    smap.values[()] = _mark(node)
    data = _build(node, (), smap, problems, active=set())
    return data, smap, problems


def _build(
    node: yaml.Node, path: Path, smap: SourceMap, problems: list[YamlError], active: set[int]
) -> Any:
    if isinstance(node, yaml.ScalarNode):
        if node.tag not in _CORE_TAGS:
            problems.append(YamlError(f"unsupported YAML tag {node.tag!r}", path, _mark(node)))
            return node.value
        return _scalar(node)
    if id(node) in active:  # an alias that refers to its own ancestor
        problems.append(YamlError("recursive YAML alias", path, _mark(node)))
        return None
    active.add(id(node))
    try:
        if isinstance(node, yaml.SequenceNode):
            out_list: list[Any] = []
            for i, item in enumerate(node.value):
                smap.values[(*path, i)] = _mark(item)
                out_list.append(_build(item, (*path, i), smap, problems, active))
            return out_list
        assert isinstance(node, yaml.MappingNode)
        out: dict[str, Any] = {}
        first_seen: dict[str, Position] = {}
        for key_node, value_node in _pairs(node, problems, path):
            if not isinstance(key_node, yaml.ScalarNode) or not isinstance(
                key := _scalar(key_node), str
            ):
                problems.append(YamlError(
                    "a key must be a string; quote it", path, _mark(key_node)))
                continue
            kpath = (*path, key)
            if key in first_seen:
                line = first_seen[key][0]
                problems.append(YamlError(
                    f"duplicate key {key!r} (first written at line {line})",
                    kpath, _mark(key_node)))
                continue
            first_seen[key] = _mark(key_node)
            smap.keys[kpath] = _mark(key_node)
            smap.values[kpath] = _mark(value_node)
            out[key] = _build(value_node, kpath, smap, problems, active)
        return out
    finally:
        active.discard(id(node))


def _pairs(
    node: yaml.MappingNode, problems: list[YamlError], path: Path
) -> Iterator[tuple[yaml.Node, yaml.Node]]:
    """Key/value node pairs, with ``<<`` merge keys expanded (explicit keys win)."""
    merged: list[tuple[yaml.Node, yaml.Node]] = []
    for key_node, value_node in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            sources = (
                value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            )
            for src in sources:
                if not isinstance(src, yaml.MappingNode):
                    problems.append(YamlError(
                        "a merge key '<<' needs a mapping or a list of mappings",
                        path, _mark(src)))
                    continue
                merged.extend(src.value)
            continue
        yield key_node, value_node
    explicit = {k.value for k, _ in node.value if isinstance(k, yaml.ScalarNode)}
    seen: set[str] = set()
    for key_node, value_node in merged:
        name = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        if name in explicit or name in seen:
            continue
        if isinstance(name, str):
            seen.add(name)
        yield key_node, value_node
