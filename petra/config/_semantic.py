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
  required, of the right kind, inside min/max and choices;
- drivers: the signals each driver entry names exist and fit its type hint;
- one writer per signal (a block output, or a driver read point);
- no algebraic loop: a cycle in the data flow between blocks that passes through no block
  whose spec has ``delay=True`` (its outputs come from state of earlier cycles);
- scan: cross-field rules (``spin < period``, ``grid_offset < period``, ``rt`` needs fifo).

The execution order and the loop search are graph algorithms of their own
(``_graph.py``, where the reasoning is written down).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from petra.blocks import REQUIRED, BlockSpec, Param, Port, PortType
from petra.config._drivers import signal_refs
from petra.config._errors import Diagnostics, show, suggest
from petra.config._graph import execution_order
from petra.config._models import (
    BlockConfig,
    ScanConfig,
    SignalConfig,
    format_duration,
)
from petra.config._yaml import Path
from petra.types import ROLE_SCAN, driver_role

Constant = bool | int | float

# Driver point type -> signal types that can hold it: an integer register fits a float
# signal (widening); a scaled or float value does not fit an int signal.
_DRIVER_FITS = {"bool": ("bool",), "int": ("int", "float"), "float": ("float",)}



@dataclass(frozen=True, slots=True)
class BlockInstance:
    """A block resolved against its spec: what the compiler of the scan needs.

    ``inputs`` has every input port (defaults filled in) mapped to a signal name (str) or
    a constant; ``outputs`` only the connected output ports; ``params`` every parameter
    with defaults filled in. ``definition_hash`` changes exactly when the definition
    does, so a reload keeps the state of blocks whose hash is unchanged.
    """

    name: str
    type: str
    spec: BlockSpec
    index: int
    n_inputs: int | None
    inputs: Mapping[str, str | Constant]
    outputs: Mapping[str, str]
    params: Mapping[str, Any]
    definition_hash: str


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
    return isinstance(value, int | float) and not isinstance(value, bool)


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
        n_inputs, ports, count_ok = self._input_ports(i, blk, spec)
        by_name = {p.name: p for p in ports}
        for key in blk.inputs:
            if key not in by_name and not self._is_variadic_key(spec, key):
                self._unknown_port(base, "inputs", key, spec, [p.name for p in ports])
        inputs: dict[str, str | Constant] = {}
        reads: list[str] = []
        for port in ports:
            path = (*base, "inputs", port.name)
            if port.name not in blk.inputs:
                if not count_ok and self._is_variadic_key(spec, port.name):
                    continue  # the count error says it already
                if port.default is None:
                    where = (*base, "inputs") if blk.inputs else base
                    self.diag.error(where, f"missing required input {port.name!r} of "
                                           f"{spec.name} ({port.type.value})", at_key=True)
                else:
                    inputs[port.name] = port.default
                continue
            value = blk.inputs[port.name]
            inputs[port.name] = value
            if isinstance(value, str):
                sig_type = self._signal_ref(path, value)
                reads.append(value)
                self.readers.setdefault(value, []).append(f"block {blk.name!r}")
                if sig_type is not None and not port.type.accepts(sig_type):
                    self.diag.error(path, f"input {port.name!r} of {spec.name} takes "
                                          f"{_port_kind(port.type)}, but signal {value!r} "
                                          f"is {sig_type}")
            elif not _const_fits(port.type, value):
                self.diag.error(path, f"input {port.name!r} of {spec.name} takes "
                                      f"{_port_kind(port.type)}, got constant {show(value)}")
        self.block_reads[blk.name] = reads
        self.flow_nodes.append((i, blk.name, spec.delay))
        outputs = self._outputs(base, blk, spec)
        if not blk.outputs and spec.outputs:
            self.diag.warning(base, f"block {blk.name!r} has no output connected; it has "
                                    "no visible effect")
        params = self._params(base, blk, spec)
        if len(self.diag.errors) != n_errors:
            return None
        digest = hashlib.sha256(json.dumps(
            {"type": spec.name, "n": n_inputs, "inputs": inputs, "outputs": outputs,
             "params": params}, sort_keys=True, default=repr).encode()).hexdigest()
        return BlockInstance(blk.name, spec.name, spec, i, n_inputs, inputs, outputs, params,
                             digest)

    def _outputs(self, base: Path, blk: BlockConfig, spec: BlockSpec) -> dict[str, str]:
        outputs: dict[str, str] = {}
        out_ports = {p.name: p for p in spec.outputs}
        for key, signal in blk.outputs.items():
            path = (*base, "outputs", key)
            port = out_ports.get(key)
            if port is None:
                self._unknown_port(base, "outputs", key, spec, list(out_ports))
                continue
            outputs[key] = signal
            sig_type = self._signal_ref(path, signal)
            if sig_type is not None and not port.type.accepts(sig_type):
                self.diag.error(path, f"output {key!r} of {spec.name} gives "
                                      f"{_port_kind(port.type)}, but signal {signal!r} "
                                      f"is {sig_type}")
            self._add_writer(signal, _Writer(f"block {blk.name!r}", ROLE_SCAN, path, blk.name,
                                             True))
        return outputs

    @staticmethod
    def _is_variadic_key(spec: BlockSpec, key: str) -> bool:
        return spec.variadic is not None and re.fullmatch(
            re.escape(spec.variadic) + r"[1-9][0-9]*", key) is not None

    def _input_ports(self, i: int, blk: BlockConfig, spec: BlockSpec
                     ) -> tuple[int | None, list[Port], bool]:
        """The block's input ports, the variadic count N, and whether N is allowed.

        N is the highest ``<prefix>K`` written. An N outside the spec's range is one
        error here; the ports are then clamped to the range and the variadic ones are not
        reported again as missing or unknown.
        """
        if spec.variadic is None:
            return None, list(spec.input_ports()), True
        numbers = [int(k[len(spec.variadic):]) for k in blk.inputs
                   if self._is_variadic_key(spec, k)]
        n = max(numbers, default=spec.min_inputs)
        ok = spec.min_inputs <= n <= spec.max_inputs
        if not ok:
            self.diag.error(("blocks", i, "inputs"), at_key=True, message=
                            f"{spec.name} takes {spec.min_inputs}..{spec.max_inputs} inputs "
                            f"{spec.variadic}1..{spec.variadic}N, got N = {n}")
            n = min(max(n, spec.min_inputs), spec.max_inputs)
        return n, list(spec.input_ports(n)), ok

    def _unknown_port(self, base: Path, section: str, key: str, spec: BlockSpec,
                      known: list[str]) -> None:
        if section == "inputs" and self._is_variadic_key(spec, key):
            return  # beyond max_inputs: already reported as a count
        hint = suggest(key, known)
        if not hint:
            hint = f"; {spec.name} has {section} " + (", ".join(known) if known else "none")
        kind = "input" if section == "inputs" else "output"
        self.diag.error((*base, section, key), f"unknown {kind} {key!r} of {spec.name}{hint}",
                        at_key=True)

    def _params(self, base: Path, blk: BlockConfig, spec: BlockSpec) -> dict[str, Any]:
        known = {p.name: p for p in spec.params}
        for key in blk.params:
            if key not in known:
                hint = suggest(key, known) or (
                    f"; {spec.name} has parameters {', '.join(known)}" if known
                    else f"; {spec.name} has no parameters")
                self.diag.error((*base, "params", key),
                                f"unknown parameter {key!r} of {spec.name}{hint}", at_key=True)
        out: dict[str, Any] = {}
        for p in spec.params:
            if p.name not in blk.params:
                if p.default is REQUIRED:
                    where = (*base, "params") if blk.params else base
                    self.diag.error(where, f"missing required parameter {p.name!r} of "
                                           f"{spec.name} ({_param_kind(p)})", at_key=True)
                else:
                    out[p.name] = p.default
                continue
            value = blk.params[p.name]
            problem = check_param(p, value)
            if problem:
                self.diag.error((*base, "params", p.name), problem)
            out[p.name] = float(value) if p.kind is float and not problem else value
        return out

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


def check_param(p: Param, value: object) -> str | None:
    """Why ``value`` is not valid for parameter ``p``, or None when it is."""
    kind = p.kind
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok and not math.isfinite(float(value)):  # type: ignore[arg-type]
            return f"parameter {p.name!r} must be finite, got {show(value)}"
    elif kind is str:
        ok = isinstance(value, str)
    else:
        ok = isinstance(value, kind)
    if not ok:
        return f"parameter {p.name!r} takes {_param_kind(p)}, got {show(value)}"
    if p.choices is not None and value not in p.choices:
        hint = suggest(str(value), p.choices)
        return (f"parameter {p.name!r} must be one of {', '.join(p.choices)}, "
                f"got {show(value)}{hint}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if p.min is not None and (value < p.min or (p.min_exclusive and value == p.min)):
            bound = f"> {_g(p.min)}" if p.min_exclusive else f">= {_g(p.min)}"
            return f"parameter {p.name!r} must be {bound}, got {show(value)}"
        if p.max is not None and value > p.max:
            return f"parameter {p.name!r} must be <= {_g(p.max)}, got {show(value)}"
    return None


def _param_kind(p: Param) -> str:
    names = {bool: "a bool", int: "an int", float: "a number", str: "a string"}
    return names.get(p.kind, f"a {p.kind.__name__}")


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
