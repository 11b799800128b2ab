"""S7 addresses in the notation engineers use in TIA Portal and STEP 7.

Grammar (case-insensitive, spaces not allowed)::

    address  := db_addr | mem_addr
    db_addr  := "DB" N "." ( "DBX" N "." BIT | "DB" ("B"|"W"|"D") N ) [ ":" TYPE ]
    mem_addr := ("M"|"I"|"Q") ( N "." BIT | ("X" N "." BIT) | ("B"|"W"|"D") N ) [ ":" TYPE ]

The size letter fixes the width: X a bit, B a byte, W two bytes, D four. The optional
type refines it: ``B`` is BYTE (or LREAL, eight bytes starting at that byte, as S7 has
no 8-byte letter), ``W`` is WORD or INT, ``D`` is DWORD, DINT or REAL; a bit is BOOL.
S7 data is big-endian (Motorola order) in every area.

Errors are :class:`S7AddressError` (a ``ValueError``) carrying the 1-based column of
the offending character, so the config validator can point at it.
"""

from __future__ import annotations

from dataclasses import dataclass

S7_TYPES = ("BOOL", "BYTE", "WORD", "INT", "DWORD", "DINT", "REAL", "LREAL")
TYPE_SIZE = {"BOOL": 1, "BYTE": 1, "WORD": 2, "INT": 2, "DWORD": 4, "DINT": 4, "REAL": 4,
             "LREAL": 8}
_BY_LETTER = {
    "X": ("BOOL", ("BOOL",)),
    "B": ("BYTE", ("BYTE", "LREAL")),
    "W": ("WORD", ("WORD", "INT")),
    "D": ("DWORD", ("DWORD", "DINT", "REAL")),
}
MAX_DB = 65535
MAX_BYTE = 65535


class S7AddressError(ValueError):
    """An S7 address that does not parse; ``column`` is 1-based."""

    def __init__(self, text: str, column: int, reason: str) -> None:
        self.text = text
        self.column = column
        self.reason = reason
        pointer = " " * (column - 1) + "^"
        super().__init__(f"bad S7 address {text!r} at column {column}: {reason}\n"
                         f"  {text}\n  {pointer}")


@dataclass(frozen=True, slots=True)
class S7Address:
    """A parsed address: area, DB number (0 outside DBs), byte, bit and type."""

    area: str  # "DB", "M", "I", "Q"
    db: int
    byte: int
    bit: int | None
    type: str

    @property
    def size(self) -> int:
        """Bytes the value occupies (a bool occupies its byte)."""
        return TYPE_SIZE[self.type]

    def __str__(self) -> str:
        if self.area == "DB":
            if self.bit is not None:
                return f"DB{self.db}.DBX{self.byte}.{self.bit}"
            letter = {1: "B", 2: "W", 4: "D", 8: "B"}[self.size]
            return f"DB{self.db}.DB{letter}{self.byte}:{self.type}"
        if self.bit is not None:
            return f"{self.area}{self.byte}.{self.bit}"
        letter = {1: "B", 2: "W", 4: "D", 8: "B"}[self.size]
        return f"{self.area}{letter}{self.byte}:{self.type}"


class _Cursor:
    def __init__(self, text: str) -> None:
        self.text = text
        self.up = text.upper()
        self.pos = 0

    def fail(self, reason: str, pos: int | None = None) -> S7AddressError:
        return S7AddressError(self.text, (self.pos if pos is None else pos) + 1, reason)

    def peek(self) -> str:
        return self.up[self.pos] if self.pos < len(self.up) else ""

    def take(self, literal: str, what: str) -> None:
        if not self.up.startswith(literal, self.pos):
            got = self.peek() or "end of text"
            raise self.fail(f"expected {what}, found {got!r}")
        self.pos += len(literal)

    def number(self, what: str, limit: int) -> int:
        start = self.pos
        while self.pos < len(self.up) and _is_digit(self.up[self.pos]):
            self.pos += 1
        if start == self.pos:
            got = self.peek() or "end of text"
            raise self.fail(f"expected {what} (a number), found {got!r}")
        if self.pos - start > len(str(limit)):  # never int() a huge digit string
            raise self.fail(f"{what} is larger than {limit}", start)
        value = int(self.up[start:self.pos])
        if value > limit:
            raise self.fail(f"{what} {value} is larger than {limit}", start)
        return value


def _is_digit(ch: str) -> bool:
    """ASCII 0-9 only: ``str.isdigit`` also takes '²' and other scripts' digits, which
    ``int`` then refuses with a bare ValueError."""
    return len(ch) == 1 and "0" <= ch <= "9"


def parse_s7_address(text: str) -> S7Address:  # noqa: PLR0912 - a branch per grammar rule
    """Parse ``DB1.DBD8:REAL``, ``DB1.DBX0.0``, ``MW20``, ``I0.1``, ``QD4:REAL``..."""
    if not isinstance(text, str) or not text:
        raise S7AddressError(str(text), 1, "empty address")
    cur = _Cursor(text)
    c = cur.peek()
    if cur.up.startswith("DB"):
        cur.take("DB", "DB")
        db = cur.number("DB number", MAX_DB)
        if db == 0:
            raise cur.fail("DB numbers start at 1", cur.pos - 1)
        cur.take(".", "'.' after the DB number")
        cur.take("DB", "DBX, DBB, DBW or DBD")
        letter = cur.peek()
        if letter not in _BY_LETTER:
            raise cur.fail(f"expected X, B, W or D after DB, found {letter or 'end of text'!r}")
        cur.pos += 1
        area = "DB"
    elif c in ("M", "I", "Q"):
        cur.pos += 1
        area, db = c, 0
        letter = cur.peek()
        if _is_digit(letter):
            letter = "X"
        elif letter in _BY_LETTER:
            cur.pos += 1
        else:
            raise cur.fail(f"expected X, B, W, D or a byte number after {c}, "
                           f"found {letter or 'end of text'!r}")
    else:
        raise cur.fail(f"expected DB, M, I or Q, found {c!r}")
    byte = cur.number("byte offset", MAX_BYTE)
    bit: int | None = None
    if letter == "X":
        cur.take(".", "'.' and a bit number (0-7)")
        bit_pos = cur.pos
        bit = cur.number("bit number", 9)
        if bit > 7:
            raise cur.fail(f"bit number {bit} is not 0-7", bit_pos)
    default, allowed = _BY_LETTER[letter]
    typ = default
    if cur.peek() == ":":
        cur.pos += 1
        type_pos = cur.pos
        typ = cur.up[cur.pos:]
        if typ not in S7_TYPES:
            raise cur.fail(f"unknown type {text[type_pos:]!r}; types: {', '.join(S7_TYPES)}",
                           type_pos)
        if typ not in allowed:
            raise cur.fail(f"type {typ} does not fit a {default} address "
                           f"(allowed: {', '.join(allowed)})", type_pos)
        cur.pos = len(cur.up)
    if cur.pos != len(cur.up):
        raise cur.fail(f"unexpected {cur.up[cur.pos]!r} after the address")
    return S7Address(area=area, db=db, byte=byte, bit=bit, type=typ)
