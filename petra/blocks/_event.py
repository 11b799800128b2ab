"""The event plan of a program: which blocks read which image entries.

Event mode (``scan: {mode: event}``) runs a block only when one of its inputs may
have changed since it last ran, unless the block has state or reads time, and
compares at copy-out only the outputs that changed. The rules that make this give
the full cycle's result bit for bit are written down in ``csrc/event.h``; this
module builds, once per compiled program, the arrays the C side walks:

- the *fan-out*: for every image entry, the nodes (blocks) that read it, as CSR
  offsets and node ids, sorted by image index;
- the *always* bitmap: built-ins that read time (neither ``petra_op_pure`` nor
  ``petra_op_settles``), custom blocks not declared ``pure``, and any block that
  writes an image entry another block writes too (then the last writer's value
  depends on who ran);
- the *settle* bitmap and state sizes: built-ins with state but no time (or time
  only while timing: TON, TOF, TP), run until a run changes neither their outputs
  nor their state and leaves no timer running;
- ``out_pos`` (in the same record as the fan-out offset): image index -> position
  among the program's output signals, so a changed output is marked for copy-out in
  the full copy-out's order.

Nodes are numbered in execution order over the built-ins first (node i is
instruction i), then the custom blocks in step order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from petra._core import ffi, lib


class EventPlan:
    """The event plan (``petra_event_t``) of one program, and the arrays behind it.

    ``custom`` lists each custom block's node inputs, outputs and purity, in node
    order (node ``n_instr + j``)."""

    def __init__(
        self,
        instructions: npt.NDArray[Any],
        image_size: int,
        output_signals: npt.NDArray[np.uint32],
        custom: Sequence[tuple[Sequence[int], Sequence[int], bool]],
        state_sizes: Sequence[int],
    ) -> None:
        n_instr = len(instructions)
        n_nodes = n_instr + len(custom)
        n_words = max((n_nodes + 63) // 64, 1)
        n_out = len(output_signals)
        self.n_instr, self.n_nodes = n_instr, n_nodes

        s, d, ws, wd, always = _edges(instructions, custom)
        settle = np.zeros(n_nodes, bool)
        state_len = np.zeros(max(n_instr, 1), np.uint8)
        for i, op in enumerate(instructions["op"].tolist()):
            if lib.petra_op_settles(op):
                size = int(state_sizes[i])
                if size <= SETTLE_STATE_MAX:
                    settle[i], always[i] = True, False
                    state_len[i] = size
        if len(s) and (s.min() < 0 or s.max() >= image_size):
            raise ValueError("an input index is outside the image")
        if len(ws) and (ws.min() < 0 or ws.max() >= image_size):
            raise ValueError("an output index is outside the image")
        # An entry written by two nodes: both always run (who wrote last decides).
        writers = np.bincount(ws, minlength=image_size) if len(ws) else np.zeros(0, np.int64)
        if len(writers) and writers.max() > 1:
            always[np.unique(wd[writers[ws] > 1])] = True
        # Fan-out, one entry per (image index, node) pair.
        pairs = np.unique(s * max(n_nodes, 1) + d) if len(s) else np.zeros(0, np.int64)
        idx, node = pairs // max(n_nodes, 1), pairs % max(n_nodes, 1)
        # fan[i] = (offset of entry i's readers in fan_node, output position or -1):
        # one record, so a touch reads one cache line of it (csrc/event.h).
        self.fan = np.zeros(image_size + 1, FAN_DTYPE)
        off = np.zeros(image_size + 1, np.uint32)
        np.cumsum(np.bincount(idx, minlength=image_size), out=off[1:])
        self.fan["off"] = off
        self.fan["out_pos"] = -1
        self.fan["out_pos"][np.asarray(output_signals, np.int64)] = np.arange(
            n_out, dtype=np.int32)
        self.fan_node = np.ascontiguousarray(node, np.uint32)
        self.always = _bitmap(always, n_words)
        self.settle = _bitmap(settle, n_words)
        self.state_len = state_len
        self.pending = np.zeros(n_words, np.uint64)
        self.cmp = np.zeros(max((n_out + 63) // 64, 1), np.uint64)
        self.n_always = int(always.sum())
        self.n_settle = int(settle.sum())

        ev = ffi.new("petra_event_t *")
        # The from_buffer cdata own the views the struct's pointers point into.
        keep = [ffi.from_buffer(t, a) for t, a in (
            ("uint64_t[]", self.pending), ("uint64_t[]", self.always),
            ("petra_fan_t[]", self.fan),
            ("uint64_t[]", self.cmp), ("uint64_t[]", self.settle),
            ("uint8_t[]", self.state_len))]
        ev.n_instr, ev.n_nodes, ev.n_words = n_instr, n_nodes, n_words
        ev.pending, ev.always, ev.fan, ev.cmp, ev.settle, ev.state_len = keep
        ev.image_size = image_size
        if len(self.fan_node):
            keep.append(ffi.from_buffer("uint32_t[]", self.fan_node))
            ev.fan_node = keep[-1]
        ev.n_out = n_out
        self.ptr = ev
        self._keep = keep

    @property
    def ran(self) -> int:
        """Nodes run in the last cycle."""
        return int(self.ptr.ran)

    @property
    def compared(self) -> int:
        """Outputs compared at the last event copy-out."""
        return int(self.ptr.compared)

    def mark_all(self) -> None:
        """Run every node and compare every output next cycle."""
        lib.petra_event_mark_all(self.ptr)

    def touch(self, indices: Sequence[int] | npt.NDArray[Any]) -> None:
        """Image entries changed from outside the scan's copy-in (a caller of
        :meth:`Program.run` that writes the image itself must say so)."""
        for i in indices:
            lib.petra_event_touch(self.ptr, int(i))


FAN_DTYPE = np.dtype([("off", np.uint32), ("out_pos", np.int32)])  # petra_fan_t
SETTLE_STATE_MAX = 4  # the C side copies a settling node's state into 4 doubles


def _bitmap(flags: npt.NDArray[np.bool_], n_words: int) -> npt.NDArray[np.uint64]:
    bits = np.zeros(n_words * 64, np.uint8)
    bits[: len(flags)] = flags
    return np.packbits(bits, bitorder="little").view(np.uint64).copy()


Edges = tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64],
              npt.NDArray[np.int64], npt.NDArray[np.bool_]]


def _edges(instructions: npt.NDArray[Any],
           custom: Sequence[tuple[Sequence[int], Sequence[int], bool]]) -> Edges:
    """(read index, node), (written index, node) pairs and the always-run flag per node."""
    n_instr = len(instructions)
    n_in = instructions["n_in"].astype(np.int64)
    n_o = instructions["n_out"].astype(np.int64)
    in_mask = np.arange(instructions["in"].shape[1] if n_instr else 8) < n_in[:, None]
    out_mask = np.arange(instructions["out"].shape[1] if n_instr else 4) < n_o[:, None]
    src = [instructions["in"][in_mask].astype(np.int64)]
    dst = [np.repeat(np.arange(n_instr, dtype=np.int64), n_in)]
    wsrc = [instructions["out"][out_mask].astype(np.int64)]
    wdst = [np.repeat(np.arange(n_instr, dtype=np.int64), n_o)]
    always = np.array([not lib.petra_op_pure(int(op)) for op in instructions["op"]], bool)
    always = np.concatenate([always, np.array([not p for _, _, p in custom], bool)])
    for j, (ins, outs, _) in enumerate(custom):
        src.append(np.asarray(ins, np.int64))
        dst.append(np.full(len(ins), n_instr + j, np.int64))
        wsrc.append(np.asarray(outs, np.int64))
        wdst.append(np.full(len(outs), n_instr + j, np.int64))
    return (np.concatenate(src), np.concatenate(dst), np.concatenate(wsrc),
            np.concatenate(wdst), always)
