"""Read planning for Modbus: coalesce points into few requests, split a failing one.

Protocol limits: one read returns at most 125 registers (function codes 3 and 4) or
2000 bits (1 and 2). Reading a few unused addresses between two points is cheaper than
a second round trip, up to ``max_gap`` of them; but devices often refuse a read that
touches an address they do not implement (exception 2, illegal data address), which
fails every point of the block. So a block that fails with an exception reply is split
in two by its points and each half retried, recursively: after at most log2(n) rounds
the bad point stands alone, gets a clear error, and the others read fine. The split
plan is kept, so the next poll does not search again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from petra.config._drivers import ModbusPoint

BIT_TABLES = ("coil", "discrete_input")


@dataclass(frozen=True, slots=True)
class PlannedPoint:
    """A configured point bound to its signal slot."""

    pos: int  # index in the config's points list
    slot: int  # signal index in the segment
    point: ModbusPoint
    unit: int

    @property
    def start(self) -> int:
        return self.point.address

    @property
    def end(self) -> int:
        return self.point.address + self.point.words


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """One read request: a unit, a table, an address range and the points it serves."""

    unit: int
    table: str
    start: int
    count: int
    points: tuple[PlannedPoint, ...]

    def __str__(self) -> str:
        return f"unit {self.unit} {self.table} {self.start}..{self.start + self.count - 1}"


def _block(points: Sequence[PlannedPoint]) -> ReadBlock:
    start = min(p.start for p in points)
    end = max(p.end for p in points)
    first = points[0]
    return ReadBlock(first.unit, first.point.table, start, end - start, tuple(points))


def plan_reads(points: Sequence[PlannedPoint], *, coalesce: bool = True, max_gap: int = 8,
               max_registers: int = 125, max_bits: int = 2000) -> list[ReadBlock]:
    """Group points into read blocks, as few as the limits and ``max_gap`` allow."""
    if not coalesce:
        return [_block([p]) for p in sorted(points, key=lambda p: (p.unit, p.point.table,
                                                                    p.start, p.pos))]
    by_key: dict[tuple[int, str], list[PlannedPoint]] = {}
    for p in points:
        by_key.setdefault((p.unit, p.point.table), []).append(p)
    blocks: list[ReadBlock] = []
    for (_, table), group in sorted(by_key.items()):
        limit = max_bits if table in BIT_TABLES else max_registers
        group.sort(key=lambda p: (p.start, p.end, p.pos))
        current: list[PlannedPoint] = []
        cur_start = cur_end = 0
        for p in group:
            if current and (p.start - cur_end <= max_gap
                            and max(cur_end, p.end) - cur_start <= limit):
                current.append(p)
                cur_end = max(cur_end, p.end)
                continue
            if current:
                blocks.append(_block(current))
            current, cur_start, cur_end = [p], p.start, p.end
        if current:
            blocks.append(_block(current))
    return blocks


def split_block(block: ReadBlock) -> list[ReadBlock]:
    """Halve a failing block by its points (for the binary search of a bad address)."""
    pts = block.points
    if len(pts) < 2:
        return [block]
    mid = len(pts) // 2
    return [_block(pts[:mid]), _block(pts[mid:])]
