"""Which block state survives a restart or a changed plant, and how it is matched.

The retain table
----------------
The state of every built-in block is a slice of one float64 array
(``Program.state``, see ``_runtime.py``). To hand it to a later program (a scan
restarted after ``kill -9``, a cold start from the retain file, a plant changed
between two runs) the slices travel with a table: one row per stateful built-in,
``[name, type, layout, offset, size, wiring, params]``. ``layout`` is the version of
that type's state layout (:data:`STATE_LAYOUT`); ``wiring`` and ``params`` are short
hashes of the block's connections (signals by *name*, so a renumbered signal table
does not matter) and of its parameters. The table is JSON (never pickle or marshal:
a retain file may come from anywhere and is parsed as data).

The matching rule (CODESYS online change)
-----------------------------------------
A block of the new program takes the old state of the block of the same **name**
when the **type**, the **layout** version, the state **size** and the **wiring** are
the same. Only its parameters changed (a timer's preset, a PID's gains): the state is
kept, as an online change does. Anything else resets that block alone (first-scan
semantics for it, ``PETRA_BF_FRESH``), with one log line saying why. Blocks with no
counterpart start fresh; blocks that went away are dropped.

Changing the meaning of a kernel's state (``csrc/blocks.c``) means bumping that
type's entry in :data:`STATE_LAYOUT`, so a retained state of the old layout is reset,
never misread.

Custom (Python) blocks keep their own state in their objects: they survive a hot
reload (unchanged definition) but restart cold after a scan restart, with
``first_scan`` true on their first step. That is documented in docs/blocks.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from petra.blocks._instance import BlockInstance, Const
from petra.blocks._runtime import FLAG_FRESH, Program

log = logging.getLogger("petra.scan")

META_FORMAT = 1

# State layout version per built-in type with state; 1 for all until a kernel changes
# what its state slots mean. A test checks that every stateful kernel is listed.
STATE_LAYOUT: dict[str, int] = {
    "R_TRIG": 1, "F_TRIG": 1, "SR": 1, "RS": 1, "TON": 1, "TOF": 1, "TP": 1,
    "CTU": 1, "CTD": 1, "CTUD": 1, "PID": 1, "RAMP": 1, "HYSTERESIS": 1, "AVERAGE": 1,
    "LAG": 1, "SIGNAL_GENERATOR": 1, "TANK": 1, "DELAY": 1,
}


@dataclass(frozen=True, slots=True)
class RetainRow:
    """One stateful block in a retain table."""

    name: str
    type: str
    layout: int
    offset: int
    size: int
    wiring: str
    params: str

    def as_list(self) -> list[Any]:
        return [self.name, self.type, self.layout, self.offset, self.size, self.wiring,
                self.params]


@dataclass(slots=True)
class RestoreReport:
    """What :func:`restore` did, block by block."""

    kept: list[str] = field(default_factory=list)
    params_changed: list[str] = field(default_factory=list)
    reset: list[tuple[str, str]] = field(default_factory=list)  # (block, reason)
    new: list[str] = field(default_factory=list)


def _h(value: Any) -> str:
    return hashlib.sha256(repr(value).encode()).hexdigest()[:16]


def _ref(v: Any, names: Sequence[str]) -> Any:
    if isinstance(v, Const):
        try:
            return ("c", struct.pack("<d", float(v.value)).hex())
        except (TypeError, ValueError, OverflowError):
            return ("c", repr(v.value))
    if isinstance(v, int | np.integer) and not isinstance(v, bool) and 0 <= int(v) < len(names):
        return names[int(v)]
    return v


def block_keys(block: BlockInstance, names: Sequence[str]) -> tuple[str, str]:
    """``(wiring, params)`` hashes of a block; signal indices shown by ``names``."""
    wiring = (block.type,
              tuple(sorted((k, _ref(v, names)) for k, v in block.inputs.items())),
              tuple(sorted((k, _ref(v, names)) for k, v in block.outputs.items())))
    params = tuple(sorted((k, repr(v)) for k, v in block.params.items()))
    return _h(wiring), _h(params)


def retain_rows(program: Program, names: Sequence[str]) -> list[RetainRow]:
    """The retain table of a compiled program (stateful built-ins, in state order)."""
    rows = []
    for name, slot in program.state_slots.items():
        if slot.size == 0:
            continue
        wiring, params = block_keys(slot.block, names)
        rows.append(RetainRow(name, slot.block.type, STATE_LAYOUT.get(slot.block.type, 1),
                              slot.offset, slot.size, wiring, params))
    return rows


def encode_meta(rows: Sequence[RetainRow], instance: str) -> bytes:
    """The table as stored beside the state (retain area and file)."""
    body = {"format": META_FORMAT, "instance": instance,
            "blocks": [r.as_list() for r in rows]}
    return json.dumps(body, separators=(",", ":")).encode()


def decode_meta(raw: bytes, n_state: int) -> tuple[str, list[RetainRow]]:
    """``(instance, rows)`` of a stored table; ValueError for anything malformed,
    including a row whose slice lies outside ``n_state``."""
    try:
        body = json.loads(raw.decode())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"table is not JSON ({exc!r:.200})") from None
    if not isinstance(body, dict) or body.get("format") != META_FORMAT:
        raise ValueError("table format unknown")
    instance, blocks = body.get("instance"), body.get("blocks")
    if not isinstance(instance, str) or not isinstance(blocks, list):
        raise ValueError("table without instance or blocks")
    rows = []
    for item in blocks:
        if (not isinstance(item, list) or len(item) != 7
                or not all(isinstance(x, str) for x in (item[0], item[1], item[5], item[6]))
                or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0
                           for x in item[2:5])):
            raise ValueError(f"malformed row {item!r:.80}")
        row = RetainRow(*item)
        if row.offset + row.size > n_state:
            raise ValueError(f"block {row.name!r}: state slice beyond the {n_state} values")
        rows.append(row)
    return instance, rows


def restore(program: Program, names: Sequence[str], rows: Sequence[RetainRow],
            state: npt.NDArray[np.float64], *, only: set[str] | None = None,
            source: str = "retain") -> RestoreReport:
    """Copy matching blocks' state from ``state`` (laid out by ``rows``) into a freshly
    compiled ``program`` and clear their first-scan flag; every other stateful block
    keeps ``PETRA_BF_FRESH``. ``only`` limits the restore to those block names (the
    ``retain: true`` ones, for a file). Each reset is logged with its reason."""
    report = RestoreReport()
    old = {r.name: r for r in rows}
    flags = program.instructions["flags"]
    for i, (name, slot) in enumerate(program.state_slots.items()):
        if slot.size == 0 or (only is not None and name not in only):
            continue
        row = old.get(name)
        if row is None:
            report.new.append(name)
            continue
        wiring, params = block_keys(slot.block, names)
        reason = None
        if row.type != slot.block.type:
            reason = f"type {row.type} -> {slot.block.type}"
        elif row.layout != STATE_LAYOUT.get(slot.block.type, 1):
            reason = f"state layout {row.layout} -> {STATE_LAYOUT.get(slot.block.type, 1)}"
        elif row.size != slot.size:
            reason = f"state size {row.size} -> {slot.size}"
        elif row.wiring != wiring:
            reason = "definition changed"
        if reason is not None:
            report.reset.append((name, reason))
            log.warning("event=retain_block_reset block=%s type=%s source=%s reason=%r",
                        name, slot.block.type, source, reason)
            continue
        program.state[slot.offset: slot.offset + slot.size] = state[
            row.offset: row.offset + row.size]
        flags[i] &= ~np.uint32(FLAG_FRESH)
        report.kept.append(name)
        if row.params != params:
            report.params_changed.append(name)
            log.info("event=retain_block_params_changed block=%s source=%s action=kept",
                     name, source)
    program.refresh_fresh()
    return report
