"""YAML to plain data, remembering where every key and value was written, within bounds.

Why events and not ``yaml.safe_load``: ``safe_load`` returns bare dicts and lists and
forgets the source positions, silently keeps the last of two equal keys, and has no
bounds: nine nested aliases of nine items each (the "billion laughs") expand to 9^9
values, and a file of ``[`` ten thousand deep recurses until the interpreter gives up.
Here PyYAML (libyaml when present) only turns text into events; this module builds the
plain Python data from those events itself, so it can count and refuse on the way:

- the text is at most :data:`MAX_FILE_BYTES` (16 MiB) and comes from a regular file
  (``/dev/zero``, a FIFO or a terminal would be read forever);
- containers nest at most :data:`MAX_DEPTH` (64) deep, checked as each opens;
- at most :data:`MAX_NODES` values in all, and aliases and ``<<`` merges may add at
  most :data:`MAX_ALIAS_NODES` values copied from their anchors;
- a number is at most :data:`MAX_NUMBER_CHARS` (4300) characters before it is
  converted (Python refuses longer ints with a ``ValueError``, not a YAML error; up
  to there conversion is cheap, and the models say what is out of range);
- every node's tag is checked, mappings and lists included: only the core tags are
  accepted, and an explicit ``!!int``/``!!float``/``!!bool``/``!!null`` must fit its
  text (``!!bool yes`` is an error, not ``false``).

Every refusal is a :class:`YamlError` with the line and column of the node that crossed
the bound; a bound stops the reading (the rest cannot be trusted to be cheap), other
problems are collected and the reading goes on. Nothing here can raise anything else for
any text: the fuzz tests in ``tests/fuzz/`` hold it to that.

Scalars follow the YAML 1.2 core schema, not PyYAML's YAML 1.1 default, because the 1.1
rules surprise people writing plant files:

- only ``true``/``false`` (any case) are booleans; ``on``, ``off``, ``yes``, ``no``, ``y``
  stay strings (in YAML 1.1 ``enable: on`` is ``True`` and a key ``on:`` becomes a bool);
- ``1e3`` is a float (PyYAML 1.1 reads it as the string ``"1e3"``);
- ``012`` is twelve, not octal ten; ``1:30`` is a string, not ninety (base 60);
- ``2024-01-01`` stays a string, not a ``datetime.date``.

Positions are 1-based (editors count from 1; PyYAML marks from 0). A value reached
through an alias is placed at the alias (the path itself) and, below it, at the lines of
the anchored text it was copied from.
"""

from __future__ import annotations

import errno
import math
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any, NoReturn

import yaml

Path = tuple[str | int, ...]
Position = tuple[int, int]

MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 2_000_000
MAX_ALIAS_NODES = 100_000
MAX_NUMBER_CHARS = 4300  # Python's own bound for int(str) (sys.get_int_max_str_digits)


@dataclass(frozen=True, slots=True)
class Limits:
    """The bounds of one read (tests lower them; the defaults are documented)."""

    file_bytes: int = MAX_FILE_BYTES
    depth: int = MAX_DEPTH
    nodes: int = MAX_NODES
    alias_nodes: int = MAX_ALIAS_NODES
    number_chars: int = MAX_NUMBER_CHARS


DEFAULT_LIMITS = Limits()

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


_Y = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL = (f"{_Y}{n}" for n in ("str", "int", "float", "bool", "null"))
_MAP, _SEQ, _MERGE = f"{_Y}map", f"{_Y}seq", f"{_Y}merge"
_CORE_TAGS = frozenset((_STR, _INT, _FLOAT, _BOOL, _NULL))
# What an explicit core tag needs its text to look like, and how that is said.
_TAG_TEXT: dict[str, tuple[tuple[re.Pattern[str], ...], str]] = {
    _INT: ((_INT_RE,), "an integer"),
    _FLOAT: ((_FLOAT_RE, _INT_RE), "a number"),
    _BOOL: ((_BOOL_RE,), "true or false"),
    _NULL: ((_NULL_RE,), "null, ~ or nothing"),
}


def clip(text: str, limit: int = 40) -> str:
    """``text`` cut for a message: a 10 MB scalar must not make a 10 MB error line."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _short(tag: str) -> str:
    """``tag:yaml.org,2002:int`` as the user wrote it, ``!!int``."""
    return "!!" + tag[len(_Y):] if tag.startswith(_Y) else tag


def _scalar(tag: str, text: str) -> Any:  # noqa: PLR0911 - one return per tag
    """Construct one scalar under the core schema; ``text`` already fits ``tag``."""
    if tag == _NULL:
        return None
    if tag == _BOOL:
        return text.lower() == "true"
    if tag == _INT:
        if text.startswith("0o"):
            return int(text[2:], 8)
        if text.startswith("0x"):
            return int(text[2:], 16)
        return int(text, 10)
    if tag == _FLOAT:
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
    if len(t) > MAX_NUMBER_CHARS:
        raise ValueError(f"not a value: {clip(text)!r} is longer than {MAX_NUMBER_CHARS} "
                         "characters")
    for tag, regex in ((_BOOL, _BOOL_RE), (_INT, _INT_RE), (_FLOAT, _FLOAT_RE)):
        if regex.match(t):
            value: bool | int | float = _scalar(tag, t)
            return value
    raise ValueError(f"not a value: {text!r} (write true, false, or a number such as 2.5)")


class YamlError(Exception):
    """The text is not YAML, or not YAML this format can hold; has a position."""

    def __init__(self, message: str, path: Path, position: Position | None, *,
                 replaced: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.position = position
        self.replaced = replaced  # the value at ``path`` was kept as its raw text


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


# ----------------------------------------------------------------------------- files
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO or pipe"),
          (stat.S_ISSOCK, "a socket"))


def _mib(n: int) -> str:
    return f"{n / (1 << 20):g} MiB" if n >= 1 << 20 else f"{n} bytes"


def read_plant_file(path: str | FsPath, limits: Limits = DEFAULT_LIMITS) -> str:
    """The text of a plant file, refusing what is not a bounded regular UTF-8 file.

    Raises :class:`OSError` when it cannot be read as a file: missing, no permission, or
    not a regular file (checked on the open descriptor, so a swap after a check cannot
    fool it; ``O_NONBLOCK`` keeps the open of a FIFO from waiting for a writer).
    Raises :class:`YamlError` when the content is no plant file: larger than
    ``limits.file_bytes`` (checked before reading and again while reading, for files
    that grow), or not UTF-8 (with the line and column of the first bad byte).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a file")
            code = errno.EISDIR if stat.S_ISDIR(st.st_mode) else errno.EINVAL
            raise OSError(code, f"not a regular file ({kind})", str(path))
        limit = limits.file_bytes
        if st.st_size > limit:
            raise YamlError(f"the file is {st.st_size} bytes; a plant file may hold at "
                            f"most {_mib(limit)}", (), None)
        chunks: list[bytes] = []
        got = 0
        while True:
            chunk = os.read(fd, min(1 << 20, limit + 1 - got))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
            if got > limit:
                raise YamlError(f"the file grew past {_mib(limit)} while being read; a "
                                f"plant file may hold at most {_mib(limit)}", (), None)
    finally:
        os.close(fd)
    raw = b"".join(chunks)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = len(raw[raw.rfind(b"\n", 0, exc.start) + 1:exc.start].decode(
            "utf-8", "replace")) + 1
        raise YamlError(f"not UTF-8 text: {exc.reason} at byte {exc.start}", (),
                        (line, col)) from None


# ----------------------------------------------------------------------------- parsing
def _mark(event: yaml.Event) -> Position:
    mark = event.start_mark
    return (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)


def _text_position(text: str, index: int) -> Position:
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


_SURROGATE = re.compile("[\ud800-\udfff]")
_OPEN = object()  # an anchor whose node is still being read (an alias to it recurses)


class _Stop(Exception):  # noqa: N818 - internal control flow, never escapes
    """A bound was crossed: stop reading, report ``error``."""

    def __init__(self, error: YamlError) -> None:
        self.error = error


def parse_yaml(text: str, limits: Limits = DEFAULT_LIMITS
               ) -> tuple[Any, SourceMap, list[YamlError]]:
    """Parse one YAML document into plain data and a :class:`SourceMap`.

    Returns the data, the map and a list of non-fatal problems (duplicate keys, keys that
    are not strings, tags and texts that do not fit); raises :class:`YamlError` when the
    text cannot be read at all or crosses one of ``limits``.
    """
    if len(text) > limits.file_bytes:  # characters <= bytes: surely too large
        raise YamlError(f"the text is {len(text)} characters; a plant file may hold at "
                        f"most {_mib(limits.file_bytes)}", (), None)
    bad = _SURROGATE.search(text)
    if bad is not None:  # only a str made in Python can hold one; the reader cannot
        raise YamlError("not UTF-8 text: a lone surrogate character", (),
                        _text_position(text, bad.start()))
    loader = _CoreLoader(text)
    builder = _Builder(loader, limits)
    try:
        data = builder.document()
    except _Stop as stop:
        raise stop.error from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        pos = (mark.line + 1, mark.column + 1) if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise YamlError(f"invalid YAML: {problem}", (), pos) from None
    except yaml.reader.ReaderError as exc:
        raise YamlError(f"invalid YAML: {exc.reason} (character {exc.character!r})", (),
                        _text_position(text, exc.position)) from None
    except yaml.YAMLError as exc:
        raise YamlError(f"invalid YAML: {exc}", (), None) from None
    finally:
        loader.dispose()
    return data, builder.smap, builder.problems


class _Builder:
    """Plain data from one document's events, counting against :class:`Limits`."""

    def __init__(self, loader: Any, limits: Limits) -> None:
        self.next = loader.get_event
        self.resolve = loader.resolve
        self.limits = limits
        self.smap = SourceMap()
        self.problems: list[YamlError] = []
        self.anchors: dict[str, Any] = {}   # name -> (value, path) or _OPEN
        self._resolved: dict[str, str] = {}  # plain scalar text -> implicit tag
        self.nodes = 0
        self.alias_nodes = 0
        self.depth = 0

    # -- bounds --------------------------------------------------------------------
    def _stop(self, message: str, path: Path, event: yaml.Event) -> NoReturn:
        raise _Stop(YamlError(message, path, _mark(event)))

    def _count(self, event: yaml.Event, path: Path) -> None:
        self.nodes += 1
        if self.nodes > self.limits.nodes:
            self._stop(f"more than {self.limits.nodes} values in one file", path, event)

    def _enter(self, event: yaml.Event, path: Path) -> None:
        self.depth += 1
        if self.depth > self.limits.depth:
            self._stop(f"lists and mappings nest deeper than {self.limits.depth} levels",
                       path, event)

    def _problem(self, message: str, path: Path, event: yaml.Event, *,
                 replaced: bool = False) -> None:
        self.problems.append(YamlError(message, path, _mark(event), replaced=replaced))

    # -- document ------------------------------------------------------------------
    def document(self) -> Any:
        self.next()  # StreamStartEvent
        event = self.next()
        if isinstance(event, yaml.StreamEndEvent):
            return None
        data = self.node(self.next(), ())  # after DocumentStartEvent
        self.next()  # DocumentEndEvent
        event = self.next()
        if not isinstance(event, yaml.StreamEndEvent):
            self._stop("expected a single document in the file, found another", (), event)
        return data

    def node(self, event: yaml.Event, path: Path) -> Any:
        self._count(event, path)
        self.smap.values[path] = _mark(event)
        if isinstance(event, yaml.AliasEvent):
            return self.alias(event, path)
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            self.anchors[anchor] = _OPEN
        value: Any
        if isinstance(event, yaml.ScalarEvent):
            value = self.scalar(event, path)
        elif isinstance(event, yaml.SequenceStartEvent):
            value = self.sequence(event, path)
        elif isinstance(event, yaml.MappingStartEvent):
            value = self.mapping(event, path)
        else:  # pragma: no cover - the parser only puts nodes here
            self._stop(f"unexpected {type(event).__name__}", path, event)
        if anchor is not None:
            self.anchors[anchor] = (value, path)
        return value

    def skip(self, event: yaml.Event, path: Path) -> None:
        """Read past a node that is not kept (a rejected key and its value)."""
        self._count(event, path)
        if not isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
            return
        self._enter(event, path)
        open_ = 1
        while open_:
            event = self.next()
            if isinstance(event, yaml.SequenceEndEvent | yaml.MappingEndEvent):
                open_ -= 1
                self.depth -= 1
                continue
            self._count(event, path)
            if isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
                open_ += 1
                self._enter(event, path)

    # -- scalars -------------------------------------------------------------------
    def _scalar_tag(self, event: yaml.ScalarEvent) -> str:
        if event.tag is None:
            if not event.implicit[0]:  # quoted: a string
                return _STR
            text = event.value
            tag = self._resolved.get(text)
            if tag is None:
                tag = str(self.resolve(yaml.ScalarNode, text, (True, False)))
                if len(text) <= 32 and len(self._resolved) < 4096:  # keys, small words
                    self._resolved[text] = tag
            return tag
        return _STR if event.tag == "!" else str(event.tag)

    def scalar(self, event: yaml.ScalarEvent, path: Path, tag: str | None = None, *,
               value: bool = True) -> Any:
        """The scalar's value; a tag or text that does not fit is a problem, and the raw
        text is kept (``value``: as the value at ``path``, whose model errors are then
        not reported again; a key is not the value of its mapping)."""
        tag = self._scalar_tag(event) if tag is None else tag
        text = event.value
        if tag not in _CORE_TAGS:
            self._problem(f"unsupported YAML tag {clip(_short(tag))!r}", path, event,
                          replaced=value)
            return text
        if event.tag is not None and tag in _TAG_TEXT:
            patterns, needs = _TAG_TEXT[tag]
            if not any(p.match(text) for p in patterns):
                self._problem(f"{_short(tag)} needs {needs}, got {clip(text)!r}", path,
                              event, replaced=value)
                return text
        if tag in (_INT, _FLOAT) and len(text) > self.limits.number_chars:
            self._problem(f"a number of {len(text)} characters is too long (at most "
                          f"{self.limits.number_chars})", path, event, replaced=value)
            return text[:20] + "..."
        return _scalar(_FLOAT if tag == _FLOAT else tag, text)

    # -- containers ----------------------------------------------------------------
    def _container_tag(self, event: yaml.CollectionStartEvent, tag: str, what: str,
                       path: Path) -> None:
        if event.tag not in (None, "!", tag):
            self._problem(f"unsupported YAML tag {clip(_short(event.tag))!r} on {what}",
                          path, event)

    def sequence(self, event: yaml.SequenceStartEvent, path: Path) -> list[Any]:
        self._container_tag(event, _SEQ, "a list", path)
        self._enter(event, path)
        out: list[Any] = []
        while not isinstance(event := self.next(), yaml.SequenceEndEvent):
            out.append(self.node(event, (*path, len(out))))
        self.depth -= 1
        return out

    def mapping(self, event: yaml.MappingStartEvent, path: Path) -> dict[str, Any]:
        self._container_tag(event, _MAP, "a mapping", path)
        self._enter(event, path)
        out: dict[str, Any] = {}
        first_seen: dict[str, Position] = {}
        merges: list[tuple[dict[str, Any], Path]] = []
        while not isinstance(key_event := self.next(), yaml.MappingEndEvent):
            key = self.key(key_event, path)
            value_event = self.next()
            if key is _MERGE_KEY:
                self.merge_sources(value_event, path, merges)
                continue
            if not isinstance(key, str):
                self._problem("a key must be a string; quote it", path, key_event)
                self.skip(value_event, path)
                continue
            kpath = (*path, key)
            if key in first_seen:
                self._problem(f"duplicate key {clip(key)!r} (first written at line "
                              f"{first_seen[key][0]})", kpath, key_event)
                self.skip(value_event, kpath)
                continue
            first_seen[key] = self.smap.keys[kpath] = _mark(key_event)
            out[key] = self.node(value_event, kpath)
        # Merged keys come after the explicit ones; an explicit key wins, then the
        # first source that has the key.
        for source, src_path in merges:
            for key, value in source.items():
                if key in out:
                    continue
                kpath = (*path, key)
                self._copy_marks((*src_path, key), kpath)
                out[key] = self.copy(value, (*src_path, key), kpath, event)
        self.depth -= 1
        return out

    def key(self, event: yaml.Event, path: Path) -> Any:
        """A mapping key: its value, :data:`_MERGE_KEY` for ``<<``, or None when it is
        not a scalar (read past, reported by the caller)."""
        if isinstance(event, yaml.ScalarEvent):
            self._count(event, path)
            tag = self._scalar_tag(event)
            if tag == _MERGE:
                return _MERGE_KEY
            key = self.scalar(event, path, tag, value=False)
            if event.anchor is not None:
                self.anchors[event.anchor] = (key, path)
            return key
        if isinstance(event, yaml.AliasEvent):
            self._count(event, path)
            found = self.anchors.get(event.anchor or "")
            return found[0] if isinstance(found, tuple) else None
        self.skip(event, path)
        return None

    def merge_sources(self, event: yaml.Event, path: Path,
                      merges: list[tuple[dict[str, Any], Path]]) -> None:
        """The mappings named by a ``<<`` key: an alias, a mapping, or a list of them.
        Anchored mappings are merged from where they were written, not copied twice."""
        if not isinstance(event, yaml.SequenceStartEvent):
            self._merge_one(event, (*path, "<<"), path, merges)
            return
        self._count(event, path)
        self._enter(event, path)
        i = 0
        while not isinstance(item := self.next(), yaml.SequenceEndEvent):
            self._merge_one(item, (*path, "<<", i), path, merges)
            i += 1
        self.depth -= 1

    def _merge_one(self, event: yaml.Event, ipath: Path, path: Path,
                   merges: list[tuple[dict[str, Any], Path]]) -> None:
        if isinstance(event, yaml.AliasEvent):
            self._count(event, ipath)
            found = self.anchors.get(event.anchor or "")
            if isinstance(found, tuple) and isinstance(found[0], dict):
                merges.append((found[0], found[1]))
                return
            if found is _OPEN:
                self._problem("recursive YAML alias", path, event)
                return
        elif isinstance(event, yaml.MappingStartEvent):
            merges.append((self.node(event, ipath), ipath))
            return
        else:
            self.skip(event, ipath)
        self._problem("a merge key '<<' needs a mapping or a list of mappings", path, event)

    # -- aliases -------------------------------------------------------------------
    def alias(self, event: yaml.AliasEvent, path: Path) -> Any:
        found = self.anchors.get(event.anchor or "")
        if found is None:
            self._problem(f"alias *{clip(event.anchor or '')} names no anchor written before it",
                          path, event)
            return None
        if found is _OPEN:  # an alias inside the node its anchor names
            self._problem("recursive YAML alias", path, event)
            return None
        value, src_path = found
        return self.copy(value, src_path, path, event)

    def _copy_marks(self, src: Path, dst: Path) -> None:
        smap = self.smap
        if src in smap.keys:
            smap.keys[dst] = smap.keys[src]
        if src in smap.values:
            smap.values[dst] = smap.values[src]

    def copy(self, value: Any, src: Path, dst: Path, event: yaml.Event,
             depth: int | None = None) -> Any:
        """A fresh copy of an anchored value placed at ``dst``, positions included;
        every value copied counts against the alias budget and the depth limit."""
        depth = self.depth if depth is None else depth
        self.alias_nodes += 1
        if self.alias_nodes > self.limits.alias_nodes:
            self._stop(f"aliases and merge keys expand to more than "
                       f"{self.limits.alias_nodes} values", dst, event)
        self._count(event, dst)
        if isinstance(value, dict):
            if depth >= self.limits.depth:
                self._stop(f"lists and mappings nest deeper than {self.limits.depth} "
                           "levels (through an alias)", dst, event)
            out: dict[str, Any] = {}
            for key, item in value.items():
                s, d = (*src, key), (*dst, key)
                self._copy_marks(s, d)
                out[key] = self.copy(item, s, d, event, depth + 1)
            return out
        if isinstance(value, list):
            if depth >= self.limits.depth:
                self._stop(f"lists and mappings nest deeper than {self.limits.depth} "
                           "levels (through an alias)", dst, event)
            out_list: list[Any] = []
            for i, item in enumerate(value):
                s, d = (*src, i), (*dst, i)
                self._copy_marks(s, d)
                out_list.append(self.copy(item, s, d, event, depth + 1))
            return out_list
        return value


_MERGE_KEY: Any = object()
