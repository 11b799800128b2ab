"""The semantic pass: what only the whole plant file can tell.

Runs over the entries that passed the models (an entry that failed still lends its name,
so one bad signal does not make every block that reads it report "unknown signal").

Checks, each reported at the key that causes it:

- names: duplicates among signals, blocks and drivers; driver names short enough for the
  segment's owner field (``driver:<name>`` fits 23 bytes);
- signals: ``min <= max``, no range on a bool, ``initial`` and ``safe_value`` of the
  signal's type and inside the range, an explicit ``owner`` that agrees with the writer;
- blocks: the type is registered; port names exist; every input without a default is
  connected; signals exist and their type fits the port (``PortType.accepts``); constants
  fit the port; variadic input count within the spec; parameters known, present when
  required, of the right kind, inside min/max and choices, and the type's
  cross-parameter checks;
- drivers: the signals each driver entry names exist and fit its type hint;
- one writer per signal (a block output, or a driver read point);
- no algebraic loop: a cycle in the data flow between blocks that passes through no block
  whose spec has ``delay=True`` (its outputs come from state of earlier cycles);
- scan: cross-field rules (``spin < period``, ``grid_offset < period``, ``rt`` needs fifo).

Ports and parameters are checked by the block catalogue's validator
(:func:`petra.blocks.resolve_block`), the same one the compiler runs, so a plant this
pass accepts compiles; this pass adds what needs the whole file (signal names and types)
and reports each problem at its line. The execution order and the loop search are
graph algorithms of their own (``_graph.py``, where the reasoning is written down).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from petra.blocks import BlockInstance, BlockSpec, Const, PortType, Problem, resolve_block
from petra.blocks._validate import show, suggest
from petra.config._drivers import signal_refs
from petra.config._errors import Diagnostics
from petra.config._graph import execution_order
from petra.config._models import (
    BlockConfig,
    ScanConfig,
    SignalConfig,
    format_duration,
)
from petra.config._yaml import Path
from petra.types import JOURNAL_AUTO_CYCLES, ROLE_SCAN, driver_role, journal_capacity_for

Constant = bool | int | float

# Driver point type -> signal types that can hold it: an integer register fits a float
# signal (widening); a scaled or float value does not fit an int signal.
_DRIVER_FITS = {"bool": ("bool",), "int": ("int", "float"), "float": ("float",)}


@dataclass
class Partial:
    """The entries of a file that passed the models, with their index in the file."""

    instance: str | None = None
    scan: ScanConfig | None = None
    scan_set: frozenset[str] = frozenset()
    signals: list[tuple[int, SignalConfig]] = field(default_factory=list)
    blocks: list[tuple[int, BlockConfig]] = field(default_factory=list)
    drivers: list[tuple[int, Any]] = field(default_factory=list)
    # Names of entries that failed the models: known, so references to them are not errors.
    loose_signals: set[str] = field(default_factory=set)
    loose_blocks: set[str] = field(default_factory=set)
    loose_drivers: set[str] = field(default_factory=set)
    # Positions of names written in the file, for duplicate checks across good/bad entries.
    signal_names: list[tuple[int, str]] = field(default_factory=list)
    block_names: list[tuple[int, str]] = field(default_factory=list)
    driver_names: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class Analysis:
    """What the semantic pass found out; the parts of :class:`Plant` derived from it."""

    signal_types: dict[str, str] = field(default_factory=dict)
    block_writers: dict[str, str] = field(default_factory=dict)
    driver_writers: dict[str, str] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)
    blocks: dict[str, BlockInstance] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)


@dataclass
class _Writer:
    label: str  # "block 'x'" or "driver 'y'"
    owner: str  # "scan" or "driver:y"
    path: Path
    name: str
    is_block: bool


def fits(sig_type: str, value: object) -> bool:
    """Whether ``value`` (from YAML) is a valid value of a ``sig_type`` signal."""
    if sig_type == "bool":
        return isinstance(value, bool)
    if sig_type == "int":
        return isinstance(value, int) and not isinstance(value, bool) and (
            -(2**63) <= value < 2**63)
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        float(value)  # a float64 slot: an int beyond 1.8e308 does not fit
    except OverflowError:
        return False
    return True


def _const_fits(port_type: PortType, value: Constant) -> bool:
    if port_type is PortType.ANY:
        return True
    if port_type is PortType.NUM:
        return fits("float", value)
    return fits(port_type.value, value)


class _Analyzer:
    def __init__(self, part: Partial, specs: Mapping[str, BlockSpec], diag: Diagnostics):
        self.part = part
        self.specs = specs
        self.diag = diag
        self.out = Analysis()
        self.sig_index: dict[str, int] = {}
        self.sig_conf: dict[str, SignalConfig] = {}
        self.writers: dict[str, list[_Writer]] = {}
        self.readers: dict[str, list[str]] = {}  # signal -> reader labels
        self.block_reads: dict[str, list[str]] = {}  # block -> signals read
        self.flow_nodes: list[tuple[int, str, bool]] = []  # (file index, name, delay)

    # -- names ------------------------------------------------------------------------

    def _duplicates(self, section: str, names: list[tuple[int, str]], what: str) -> None:
        first: dict[str, int] = {}
        for index, name in names:
            if name in first:
                line = self.diag.smap.values.get((section, first[name], "name"), (None,))[0]
                where = f" (first defined at line {line})" if line else ""
                self.diag.error((section, index, "name"), f"duplicate {what} name {name!r}{where}")
            else:
                first[name] = index

    # -- signals ----------------------------------------------------------------------

    def signals(self) -> None:
        self._duplicates("signals", self.part.signal_names, "signal")
        for i, sig in self.part.signals:
            if sig.name in self.sig_index:
                continue
            self.sig_index[sig.name] = i
            self.sig_conf[sig.name] = sig
            self.out.signal_types[sig.name] = sig.type
            self._signal_values(i, sig)

    def _signal_values(self, i: int, sig: SignalConfig) -> None:
        base: Path = ("signals", i)
        if sig.type == "bool":
            for key in ("min", "max"):
                if getattr(sig, key) is not None:
                    self.diag.error((*base, key), f"a bool signal has no {key}")
        elif sig.min is not None and sig.max is not None and sig.min > sig.max:
            self.diag.error((*base, "max"), f"max {sig.max:g} is below min {sig.min:g}")
        for key in ("initial", "safe_value"):
            value = getattr(sig, key)
            if value is None:
                continue
            if not fits(sig.type, value):
                self.diag.error((*base, key),
                                f"expected a {sig.type} value for a {sig.type} signal, "
                                f"got {show(value)}")
            elif sig.type != "bool" and not self._in_range(sig, value):
                self.diag.error((*base, key),
                                f"{key} {show(value)} is outside min/max "
                                f"[{_g(sig.min)}, {_g(sig.max)}]")

    @staticmethod
    def _in_range(sig: SignalConfig, value: float) -> bool:
        return not ((sig.min is not None and value < sig.min)
                    or (sig.max is not None and value > sig.max))

    def _signal_ref(self, path: Path, name: str) -> str | None:
        """The type of signal ``name``, reporting it at ``path`` when it is unknown."""
        if name in self.out.signal_types:
            return self.out.signal_types[name]
        if name in self.part.loose_signals:
            return None
        hint = suggest(name, list(self.out.signal_types) + list(self.part.loose_signals))
        self.diag.error(path, f"unknown signal {name!r}{hint}")
        return None

    def _add_writer(self, signal: str, writer: _Writer) -> None:
        self.writers.setdefault(signal, []).append(writer)

    # -- blocks -----------------------------------------------------------------------

    def blocks(self) -> None:
        self._duplicates("blocks", self.part.block_names, "block")
        seen: set[str] = set()
        for i, blk in self.part.blocks:
            if blk.name in seen:
                continue
            seen.add(blk.name)
            spec = self.specs.get(blk.type)
            if spec is None:
                hint = suggest(blk.type, self.specs)
                self.diag.error(("blocks", i, "type"), f"unknown block type {blk.type!r}{hint}")
                continue
            inst = self._block(i, blk, spec)
            if inst is not None:
                self.out.blocks[blk.name] = inst

    def _block(self, i: int, blk: BlockConfig, spec: BlockSpec) -> BlockInstance | None:
        base: Path = ("blocks", i)
        n_errors = len(self.diag.errors)
        written = BlockInstance(
            blk.name, spec.name,
            {k: v if isinstance(v, str) else Const(v) for k, v in blk.inputs.items()},
            dict(blk.outputs), dict(blk.params))
        res = resolve_block(written, spec)
        for problem in res.problems:
            self._problem(base, blk, problem)
        ports = {p.name: p for p in res.ports}
        reads: list[str] = []
        for key, value in blk.inputs.items():
            port = ports.get(key)
            if port is None:
                continue  # unknown, or beyond the variadic range: a problem above
            path = (*base, "inputs", key)
            if isinstance(value, str):
                sig_type = self._signal_ref(path, value)
                reads.append(value)
                self.readers.setdefault(value, []).append(f"block {blk.name!r}")
                if sig_type is not None and not port.type.accepts(sig_type):
                    self.diag.error(path, f"input {key!r} of {spec.name} takes "
                                          f"{_port_kind(port.type)}, but signal {value!r} "
                                          f"is {sig_type}")
            elif not fits("float", value) and not isinstance(value, bool):
                self.diag.error(path, f"constant {show(value)} is beyond the float64 range "
                                      "of the process image")
            elif not _const_fits(port.type, value):
                self.diag.error(path, f"input {key!r} of {spec.name} takes "
                                      f"{_port_kind(port.type)}, got constant {show(value)}")
        self.block_reads[blk.name] = reads
        self.flow_nodes.append((i, blk.name, spec.delay))
        self._outputs(base, res.block, spec)
        if not blk.outputs and spec.outputs:
            self.diag.warning(base, f"block {blk.name!r} has no output connected; it has "
                                    "no visible effect")
        if len(self.diag.errors) != n_errors:
            return None
        return res.block

    def _problem(self, base: Path, blk: BlockConfig, problem: Problem) -> None:
        """Report a problem of the block validator at its place in the file."""
        if problem.absent:  # no such key in the file: at the mapping, or the block
            section = problem.key[0]
            where = (*base, section) if getattr(blk, section) else base
            self.diag.error(where, problem.message, at_key=True)
        else:
            self.diag.error((*base, *problem.key), problem.message, at_key=problem.at_key)

    def _outputs(self, base: Path, block: BlockInstance, spec: BlockSpec) -> None:
        out_ports = {p.name: p for p in spec.outputs}
        for key, signal in block.outputs.items():
            assert isinstance(signal, str)  # a plant names its signals
            path = (*base, "outputs", key)
            port = out_ports[key]
            sig_type = self._signal_ref(path, signal)
            if sig_type is not None and not port.type.accepts(sig_type):
                self.diag.error(path, f"output {key!r} of {spec.name} gives "
                                      f"{_port_kind(port.type)}, but signal {signal!r} "
                                      f"is {sig_type}")
            self._add_writer(signal, _Writer(f"block {block.name!r}", ROLE_SCAN, path,
                                             block.name, True))

    # -- drivers ----------------------------------------------------------------------

    def drivers(self) -> None:
        self._duplicates("drivers", self.part.driver_names, "driver")
        for i, drv in self.part.drivers:
            name = str(getattr(drv, "name", f"#{i}"))
            for ref in signal_refs(drv):
                path = ("drivers", i, *ref.key_path)
                sig_type = self._signal_ref(path, ref.signal)
                hint = ref.type_hint
                if sig_type is not None and hint in _DRIVER_FITS and (
                        sig_type not in _DRIVER_FITS[hint]):
                    self.diag.error(path, f"driver {name!r} gives {hint} here, but signal "
                                          f"{ref.signal!r} is {sig_type}")
                if ref.direction in ("read", "readwrite"):
                    self._add_writer(ref.signal, _Writer(
                        f"driver {name!r}", driver_role(name), path, name, False))
                if ref.direction in ("write", "readwrite"):
                    self.readers.setdefault(ref.signal, []).append(f"driver {name!r}")

    # -- writers and owners -----------------------------------------------------------

    def owners(self) -> None:
        for signal, ws in self.writers.items():
            first = ws[0]
            for w in ws[1:]:
                line = self.diag.smap.values.get(first.path, (None,))[0]
                at = f" at line {line}" if line else ""
                self.diag.error(w.path, f"signal {signal!r} has two writers: {w.label} and "
                                        f"{first.label}{at}; a signal has one writer")
            if first.is_block:
                self.out.block_writers[signal] = first.name
            else:
                self.out.driver_writers[signal] = first.name
        for name, sig in self.sig_conf.items():
            i = self.sig_index[name]
            ws = self.writers.get(name, [])
            derived = ws[0].owner if ws else ""
            if sig.owner is not None and ws and sig.owner != derived:
                self.diag.error(("signals", i, "owner"),
                                f"owner {sig.owner!r} disagrees with the writer, "
                                f"{ws[0].label} (owner {derived!r}); leave owner out")
            self.out.owners[name] = sig.owner if sig.owner is not None else derived
            self._signal_warnings(i, sig, ws)

    def _signal_warnings(self, i: int, sig: SignalConfig, ws: list[_Writer]) -> None:
        base: Path = ("signals", i)
        readers = self.readers.get(sig.name, [])
        if not ws and not readers and not sig.writable:
            self.diag.warning(base, f"signal {sig.name!r} is never read or written by a "
                                    "block or driver")
        elif not ws and not sig.writable and readers:
            self.diag.warning(base, f"signal {sig.name!r} is read by {readers[0]} but "
                                    "nothing writes it (not writable, no writer): it keeps "
                                    "its initial value")
        if ws and sig.writable:
            self.diag.warning((*base, "writable"),
                              f"signal {sig.name!r} is writable but {ws[0].label} writes "
                              "it too; an operator's value will be overwritten")
        if ws and not ws[0].is_block and sig.safe_value is not None:
            self.diag.warning((*base, "safe_value"),
                              f"safe_value is written by the scan on stop, but "
                              f"{ws[0].label} writes {sig.name!r}")

    # -- scan -------------------------------------------------------------------------

    def scan(self) -> None:
        sc = self.part.scan
        if sc is None:
            return
        period = format_duration(sc.period)
        if sc.wait == "hybrid" and sc.spin >= sc.period:
            self.diag.error(("scan", "spin"), f"spin {format_duration(sc.spin)} must be "
                                              f"shorter than the period {period}")
        if sc.wait == "sleep" and "spin" in self.part.scan_set:
            self.diag.warning(("scan", "spin"), "spin applies only to wait: hybrid; ignored")
        if sc.grid_offset != "auto" and int(sc.grid_offset) >= sc.period:
            self.diag.error(("scan", "grid_offset"),
                            f"grid_offset {format_duration(int(sc.grid_offset))} must be "
                            f"shorter than the period {period}")
        if sc.rt and sc.policy != "fifo":
            self.diag.error(("scan", "rt"), "rt: true needs policy: fifo")
        if sc.priority is not None and sc.policy != "fifo":
            self.diag.warning(("scan", "priority"), "priority applies only to policy: fifo; "
                                                    "ignored")
        if sc.journal_capacity is not None:
            want = journal_capacity_for(len(self.sig_index))
            if sc.journal_capacity < want:
                self.diag.warning(("scan", "journal_capacity"),
                                  f"journal_capacity {sc.journal_capacity} is below {want}, "
                                  f"{JOURNAL_AUTO_CYCLES} cycles of all {len(self.sig_index)} "
                                  "signals changing: a busy cycle may lap the journal (the "
                                  "scan then reads every input, and counts it); honoured")
        if sc.cpu is not None:
            try:
                allowed = os.sched_getaffinity(0)
            except OSError:  # pragma: no cover - every Linux has it
                allowed = set()
            if allowed and sc.cpu not in allowed:
                self.diag.warning(("scan", "cpu"),
                                  f"cpu {sc.cpu} is not available on this machine "
                                  f"(allowed: {_ranges(allowed)}); checked again at start")

    # -- data flow --------------------------------------------------------------------

    def flow(self) -> None:
        nodes = self.flow_nodes
        names = [name for _, name, _ in nodes]
        pos = {name: k for k, name in enumerate(names)}
        edges: list[tuple[int, int]] = []
        for name in names:
            for signal in self.block_reads.get(name, []):
                w = self.out.block_writers.get(signal)
                if w is not None and w in pos:
                    edges.append((pos[w], pos[name]))
        flow = execution_order(len(names), edges, [d for _, _, d in nodes])
        for cycle in flow.loops:
            chain = " -> ".join(names[k] for k in [*cycle, cycle[0]])
            why = ("the block reads its own output" if len(cycle) == 1
                   else "each block needs another's output")
            self.diag.error(("blocks", nodes[cycle[0]][0]),
                            f"algebraic loop: {chain}; {why} of the same cycle. Break the "
                            "loop with a block that has state from earlier cycles (a delay "
                            "block)")
        self.out.order = [names[k] for k in flow.order]


def _port_kind(t: PortType) -> str:
    return {PortType.BOOL: "bool", PortType.INT: "int", PortType.FLOAT: "float",
            PortType.NUM: "int or float", PortType.ANY: "any type"}[t]


def _g(x: float | None) -> str:
    return "-" if x is None else f"{x:g}"


def _ranges(cpus: set[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


def analyze(part: Partial, specs: Mapping[str, BlockSpec], diag: Diagnostics) -> Analysis:
    """Run every semantic check over ``part``; findings go to ``diag``."""
    a = _Analyzer(part, specs, diag)
    a.signals()
    a.blocks()
    a.drivers()
    a.owners()
    a.scan()
    a.flow()
    return a.out
