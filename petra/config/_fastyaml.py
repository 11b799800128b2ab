"""A fast reader for the plain subset of YAML that large plant files are written in.

Why a second reader
-------------------
:mod:`petra.config._yaml` turns libyaml's events into data in Python, one event at a
time, remembering where every value was written. That is exact and bounded, but slow:
PyYAML builds a Python object with two marks for each of the ~1.5 million events of a
100,000-signal plant, which took 20+ s before our own code saw one of them. Large plant
files are generated, and generators write a small regular part of YAML: block mappings
and lists, one scalar or one flow collection (``{name: a, type: float}``) per line.

:func:`fast_parse` reads exactly that subset, a line at a time, with regular expressions
doing the character work, and gives up (returns None) on anything else: anchors,
aliases, tags, ``<<``, block scalars (``|``, ``>``), multi-line or escaped strings, a
flow collection over several lines, tabs, control or line-break characters, empty
values, duplicate keys, a key that is not a string, an over-long number, nesting past
:data:`~petra.config._yaml.MAX_DEPTH` or more values than the node limit. Then the exact
reader runs instead. So this reader never reports an error itself: it returns the data
the exact reader would return for the same text, or None. ``tests/unit/
test_config_fastyaml.py`` holds it to that, against the exact reader, on every plant
file of the tests and on generated ones.

It records no positions: the caller uses it only for a file that turns out valid and
without warnings (no message needs a line), and reads the file again with the exact
reader otherwise (``_plant.py``). The bounds of ``_yaml.py`` hold here too: the text was
bounded before, the depth and the number of values are counted, and there are no
aliases to expand.
"""

from __future__ import annotations

import re
from typing import Any

from petra.config._yaml import (
    _BOOL_RE,
    _FLOAT,
    _FLOAT_RE,
    _INT,
    _INT_RE,
    _NULL_RE,
    DEFAULT_LIMITS,
    Limits,
    _scalar,
)

# Characters this reader handles: printable ASCII, newline, and the printable non-ASCII
# range minus what libyaml treats as a line break (U+0085, U+2028, U+2029) or a BOM.
_OUTSIDE = re.compile(
    "[^\n\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]")
_NONSPACE = "[^\\s\\x00-\\x1f:#,\\[\\]{}'\"]"
# A plain scalar, block context: not starting with an indicator, no ': ' or ' #' inside
# (no ':' or '#' at all here, to stay clear of every rule about them), no trailing space.
_PLAIN_BLOCK = (r"(?:[^\s\-?:,\[\]{}#&*!|>'\"%@`]|-(?=[^\s\-]))"
                r"(?:[^:#\s]|[ ](?=[^\s#:]))*")
# In a flow collection also no ',', '[', ']', '{', '}'.
_PLAIN_FLOW = (r"(?:[^\s\-?:,\[\]{}#&*!|>'\"%@`]|-(?=[^\s\-,\[\]{}]))"
               r"(?:[^:#\s,\[\]{}]|[ ](?=[^\s#:,\[\]{}]))*")
_SQ = r"'(?:[^'\n]|'')*'"
_DQ = r'"[^"\\\n]*"'

_LINE = re.compile(r"( *)(.*?)[ ]*(?:[ ]#.*)?$")
_ITEM = re.compile(r"-(?:[ ]+|$)")
_KEY = re.compile(rf"({_PLAIN_BLOCK}|{_SQ}|{_DQ}):(?:[ ]+|$)")
_BLOCK_SCALAR = re.compile(rf"(?:{_PLAIN_BLOCK}|{_SQ}|{_DQ})$")
_FLOW_TOKEN = re.compile(rf"[ ]*(?:([{{}}\[\],])|({_SQ}|{_DQ})|({_PLAIN_FLOW}))[ ]*(:[ ]+)?")

# A flow mapping of plain scalars, with at most one level of such mappings inside, is
# the line a generator writes per signal or block. Taken apart with str.split (no
# token loop, no backtracking regex): the inner mappings are first replaced by a
# placeholder (NUL and their number; the text cannot hold a NUL), then each part
# "key: value" is split once. A token is accepted only when it is surely a plain
# scalar on its own (no ':' or '#', no indicator first); anything else goes to the
# general path below.
_BRACED = re.compile(r"\{([^{}]*)\}")
_INDICATOR_FIRST = frozenset("-?:,[]{}#&*!|>'\"%@`\x00")
_LINE_REFUSE = re.compile("['\"\\[\\]#]")

_NUMERIC_FIRST = frozenset("-+0123456789.")
# First characters of a plain scalar that no core-schema type but string starts with.
_WORD_FIRST = frozenset("abcdeghijklmopqrsuvwxyzABCDEGHIJKLMOPQRSUVWXYZ_/(")
_MISS: Any = object()


def _plain_token(tok: str) -> bool:
    """``tok`` (stripped, from a flow mapping split at ',' and ': ') is one plain
    scalar: no indicator first (a '-' only before a non-space), no ':' inside (the
    split took the first ': '; any other ':' could end a key), no placeholder."""
    first = tok[0]
    if first in _INDICATOR_FIRST:
        return first == "-" and len(tok) > 1 and tok[1] != " " and ":" not in tok \
            and "\x00" not in tok
    return ":" not in tok and "\x00" not in tok


class _GiveUp(Exception):  # noqa: N818 - internal control flow, never escapes
    """The text is outside the subset: the exact reader must read it."""


def fast_parse(text: str, limits: Limits = DEFAULT_LIMITS) -> Any:
    """The data of ``text`` when it is in the plain subset (see the module text), else
    None. Never raises for any text."""
    if _OUTSIDE.search(text) is not None or text.startswith(("---", "...", "%")) \
            or "\n---" in text or "\n..." in text or "\n%" in text:
        return None  # characters, directives or document markers this reader leaves alone
    try:
        return _Reader(text, limits).document()
    except (_GiveUp, RecursionError, ValueError, IndexError):
        return None


class _Reader:
    def __init__(self, text: str, limits: Limits) -> None:
        lines: list[tuple[int, str]] = []
        append = lines.append
        for raw in text.split("\n"):
            content = raw.lstrip(" ")
            if not content or content[0] == "#":
                continue
            indent = len(raw) - len(content)
            if "#" in content:  # a comment to cut (a '#' inside a scalar gives up later)
                m = _LINE.match(content)
                if m is None:  # pragma: no cover - the pattern matches every line
                    raise _GiveUp
                content = m.group(2)
            else:
                content = content.rstrip(" ")
            append((indent, content))
        self.lines = lines
        self.i = 0
        self.limits = limits
        self.nodes = 0
        self.depth = 0
        self._scalars: dict[str, Any] = {}
        self._keys: dict[str, str] = {}

    # -- bounds ------------------------------------------------------------------
    def _count(self, n: int = 1) -> None:
        self.nodes += n
        if self.nodes > self.limits.nodes:
            raise _GiveUp

    def _enter(self) -> None:
        self.depth += 1
        if self.depth > self.limits.depth:
            raise _GiveUp

    # -- structure ---------------------------------------------------------------
    def document(self) -> Any:
        if not self.lines:
            return None  # the exact reader says the same of an empty or comment-only file
        if self.lines[0][0] != 0:
            raise _GiveUp
        self._count()
        value = self.block(0)
        if self.i != len(self.lines):
            raise _GiveUp  # text left over at a lesser or odd indentation
        return value

    def block(self, indent: int) -> Any:
        """The block collection whose first line is ``self.lines[self.i]``."""
        content = self.lines[self.i][1]
        if _ITEM.match(content):
            return self.sequence(indent)
        if _KEY.match(content):
            return self.mapping(indent)
        raise _GiveUp  # a bare scalar on its own line (or a multi-line one)

    def mapping(self, indent: int) -> dict[str, Any]:
        self._enter()
        out: dict[str, Any] = {}
        lines = self.lines
        while self.i < len(lines):
            ind, content = lines[self.i]
            if ind < indent:
                break
            m = _KEY.match(content)
            if ind > indent or m is None:
                raise _GiveUp
            key = self._key(m.group(1))
            if key in out:
                raise _GiveUp  # a duplicate: the exact reader reports it
            rest = content[m.end():]
            self._count(2)
            self.i += 1
            if rest:
                out[key] = self.inline(rest)
                continue
            if self.i < len(lines):
                nind, ncontent = lines[self.i]
                if nind > indent:
                    out[key] = self.block(nind)
                    continue
                if nind == indent and _ITEM.match(ncontent):
                    out[key] = self.sequence(indent)  # "key:" then "- item" below it
                    continue
            raise _GiveUp  # an empty value
        self.depth -= 1
        return out

    def sequence(self, indent: int) -> list[Any]:
        self._enter()
        out: list[Any] = []
        lines = self.lines
        while self.i < len(lines):
            ind, content = lines[self.i]
            if ind < indent:
                break
            m = _ITEM.match(content)
            if ind > indent or m is None:
                if ind == indent:
                    break  # the mapping this sequence was the value of goes on
                raise _GiveUp
            rest = content[m.end():]
            self._count()
            if rest[:1] == "{":  # the common case first: "- {name: a, type: float}"
                self.i += 1
                out.append(self.inline(rest))
                continue
            if not rest:
                self.i += 1
                if self.i < len(lines) and lines[self.i][0] > indent:
                    out.append(self.block(lines[self.i][0]))
                    continue
                raise _GiveUp  # an empty item
            if _KEY.match(rest):
                # "- key: value": a mapping whose keys line up after the dash
                lines[self.i] = (ind + m.end(), rest)
                out.append(self.mapping(ind + m.end()))
                continue
            if _ITEM.match(rest):
                raise _GiveUp  # "- - x"
            self.i += 1
            out.append(self.inline(rest))
        self.depth -= 1
        return out

    # -- values on one line --------------------------------------------------------
    def inline(self, rest: str) -> Any:
        """The value after ``key: `` or ``- ``: a scalar or a one-line flow collection."""
        if rest[0] == "{":
            value = self.flow_line(rest)
            if value is not None:
                return value
        if rest[0] in "{[":
            value, end = self.flow(rest, 0)
            if end != len(rest):
                raise _GiveUp
            return value
        if _BLOCK_SCALAR.match(rest) is None:
            raise _GiveUp
        return self.scalar(rest)

    def flow_line(self, text: str) -> dict[str, Any] | None:
        """A whole-line flow mapping of plain scalars (and such mappings one level
        down) taken apart with ``str.split``; None when it is not that simple."""
        if text[-1] != "}" or _LINE_REFUSE.search(text) is not None:
            return None
        inner = text[1:-1]
        subs: list[str] = []
        if "{" in inner:
            def keep(m: re.Match[str]) -> str:
                subs.append(m.group(1))
                return f"\x00{len(subs) - 1}"
            inner = _BRACED.sub(keep, inner)
        if "{" in inner or "}" in inner:
            return None  # nested deeper, or unbalanced
        return self._pairs(inner, subs)

    def _pairs(self, inner: str,  # noqa: PLR0911 - one return per way out of the fast shape
               subs: list[str]) -> dict[str, Any] | None:
        """The mapping whose text between the braces is ``inner``, or None."""
        if self.depth >= self.limits.depth:
            raise _GiveUp
        out: dict[str, Any] = {}
        if not inner.strip(" "):
            return out  # "{}" (counted by whoever holds it)
        keys = self._keys
        values = self._scalars
        parts = inner.split(",")
        self._count(2 * len(parts))
        for part in parts:
            k, sep, v = part.partition(": ")
            k = k.lstrip(" ")
            v = v.strip(" ")
            if not sep or not k or not v or k[-1] == " ":
                return None  # no ': ', an empty key or value, a trailing comma, "a : 1"
            key = keys.get(k)
            if key is None:
                if not _plain_token(k):
                    return None
                key = self._key(k)
            if key in out:
                return None  # a duplicate: the exact reader reports it
            value = values.get(v, _MISS)
            if value is _MISS:
                if v[0] == "\x00" and v[1:].isdigit():
                    self.depth += 1
                    value = self._pairs(subs[int(v[1:])], [])
                    self.depth -= 1
                    if value is None:
                        return None
                elif not _plain_token(v):
                    return None
                else:
                    value = self.scalar(v)
            out[key] = value
        return out

    def flow(self, text: str,  # noqa: PLR0912 - one flat tokenizer loop, on purpose
             pos: int) -> tuple[Any, int]:
        """The flow collection opening at ``text[pos]`` and the index after it."""
        self._enter()
        closing = "}" if text[pos] == "{" else "]"
        is_map = closing == "}"
        out_map: dict[str, Any] = {}
        out_list: list[Any] = []
        pos += 1
        expect_item = True
        while True:
            m = _FLOW_TOKEN.match(text, pos)
            if m is None:
                raise _GiveUp
            punct, quoted, plain, colon = m.groups()
            pos = m.end()
            if punct is not None and colon is not None:
                raise _GiveUp  # "[a]: b", "{: x}"
            if punct == closing:
                if expect_item and (out_map or out_list):
                    raise _GiveUp  # a trailing comma: "[a, ]"
                break  # the end, or "{}" / "[]"
            if punct == ",":
                if expect_item:
                    raise _GiveUp
                expect_item = True
                continue
            if not expect_item:
                raise _GiveUp
            expect_item = False
            if is_map:
                if punct is not None or colon is None:
                    raise _GiveUp  # a key that is a collection, or no ': ' after it
                key = self._key(quoted or plain)
                if key in out_map:
                    raise _GiveUp
                self._count(2)
                out_map[key], pos = self._flow_value(text, pos)
            else:
                if colon is not None:
                    raise _GiveUp  # "[a: 1]", a single-pair mapping
                self._count()
                if punct in ("{", "["):
                    value, pos = self.flow(text, m.start(1))
                    out_list.append(value)
                elif punct is not None:
                    raise _GiveUp
                else:
                    out_list.append(self.scalar(quoted or plain))
        self.depth -= 1
        return (out_map if is_map else out_list), pos

    def _flow_value(self, text: str, pos: int) -> tuple[Any, int]:
        m = _FLOW_TOKEN.match(text, pos)
        if m is None:
            raise _GiveUp
        punct, quoted, plain, colon = m.groups()
        if colon is not None:
            raise _GiveUp
        if punct in ("{", "["):
            value, end = self.flow(text, m.start(1))
            return value, end
        if punct is not None:
            raise _GiveUp  # an empty value: "{a: , b: 1}"
        return self.scalar(quoted or plain), m.end()

    # -- scalars -------------------------------------------------------------------
    def _key(self, token: str) -> str:
        key = self._keys.get(token)
        if key is not None:
            return key
        value = self._convert(token)
        if not isinstance(value, str) or token == "<<":
            raise _GiveUp  # the exact reader reports a key that is not a string
        if len(self._keys) < 4096:
            self._keys[token] = value
        return value

    def scalar(self, token: str) -> Any:
        value = self._scalars.get(token, _MISS)
        if value is not _MISS:
            return value
        first = token[0]
        if first in _WORD_FIRST:
            return token  # a name or a word: a string, not worth a cache entry
        value = self._convert(token)
        if len(token) <= 32 and len(self._scalars) < 4096:  # numbers, small words
            self._scalars[token] = value
        return value

    def _convert(self, token: str) -> Any:  # noqa: PLR0911 - one return per scalar kind
        first = token[0]
        if first == "'":
            return token[1:-1].replace("''", "'")
        if first == '"':
            return token[1:-1]
        if first in _NUMERIC_FIRST:
            if _INT_RE.match(token):
                if len(token) > self.limits.number_chars:
                    raise _GiveUp
                return _scalar(_INT, token)
            if _FLOAT_RE.match(token):
                if len(token) > self.limits.number_chars:
                    raise _GiveUp
                return _scalar(_FLOAT, token)
            return token
        if first in "tTfF" and _BOOL_RE.match(token):
            return token.lower() == "true"
        if first in "~nN" and _NULL_RE.match(token):
            return None
        if token == "<<":
            raise _GiveUp  # plain ``<<`` is the merge tag, which the exact reader refuses
        return token
