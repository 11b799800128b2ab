"""Checking a block against its spec: the one validator of ports and parameters.

:func:`resolve_block` is used by both the config (``petra check``, which reports every
problem at its line) and the compiler (which raises the first as a
:class:`~petra.errors.ConfigError`), so a plant that passes the one passes the other.
The rules, as ``docs/blocks.md`` and ``docs/config.md`` state them:

- **Ports are named.** A key that is no port of the type is an error, with a near miss
  suggested.
- **Variadic inputs** ``in1..inN``: N is the highest number written (``in0`` and
  ``in01`` are not variadic ports); no variadic key at all means N = ``min_inputs``.
  N must lie within ``min_inputs..max_inputs``; inputs up to N without a default must
  be connected (a gap is a missing input, not a smaller N).
- **Inputs** without a default must be connected; the others get their default as a
  :class:`Const` (NaN for the ``param_inputs`` presets, read as "use the parameter").
- **Parameters**: unknown ones are errors, required ones must be given, the kind must
  match exactly (an int parameter takes an int, not ``2.0``; a float one takes an int
  or a float and is normalised to float; a str one a string; any other kind an
  instance of it), numbers must be finite and inside ``min`` (exclusive when the spec
  says so) and ``max``, choices must match; then the cross-parameter checks of
  ``extra["check"]`` run on the values (only when each value passed on its own).

What this does not check is the *type of a connection* (a signal's type, or a
constant's, against the port type): only the config knows signal types and constants
as written; a compiled program's inputs are float64 image values (``docs/blocks.md``).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from petra.blocks._instance import BlockInstance, Const, SignalRef, is_variadic_key
from petra.blocks._spec import REQUIRED, BlockSpec, Param, Port
from petra.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Problem:
    """One way a block does not fit its spec.

    ``key`` is relative to the block: ``("inputs", "in3")``, ``("params",)``.
    ``at_key``: the problem is the key itself or a whole mapping (report at the key,
    not at its value). ``absent``: ``key`` names something the block left out (a
    required input or parameter), so a file has no position for it: report at the
    mapping that should hold it.
    """

    key: tuple[str, ...]
    message: str
    at_key: bool = False
    absent: bool = False


class Resolution(NamedTuple):
    """A block resolved against its spec.

    ``block``: inputs with every port present (defaults filled in), only the known
    outputs, every parameter (defaults filled, floats normalised), ``spec`` set.
    ``ports``: the concrete input ports in kernel order (variadic ones expanded).
    ``problems``: empty when the block is valid; otherwise ``block`` holds what could
    be resolved and must not be compiled.
    """

    block: BlockInstance
    ports: tuple[Port, ...]
    problems: tuple[Problem, ...]


def resolve_block(block: BlockInstance, spec: BlockSpec) -> Resolution:
    """Check ``block`` against ``spec`` and fill its defaults in."""
    problems: list[Problem] = []
    n, count_ok = _variadic(block, spec, problems)
    ports = tuple(spec.input_ports(n))
    inputs = _inputs(block, spec, ports, count_ok, problems)
    outputs = _outputs(block, spec, problems)
    params = _params(block, spec, problems)
    resolved = BlockInstance(block.name, spec.name, inputs, outputs, params, spec=spec)
    return Resolution(resolved, ports, tuple(problems))


def resolve_params(block: BlockInstance, spec: BlockSpec) -> dict[str, Any]:
    """All of ``block``'s parameters with defaults, checked against ``spec``; the first
    problem raises :class:`ConfigError` at ``blocks.<name>.params...``."""
    problems: list[Problem] = []
    values = _params(block, spec, problems)
    if problems:
        raise problem_error(block.name, problems[0])
    return values


def problem_error(block_name: str, problem: Problem) -> ConfigError:
    """A :class:`ConfigError` for ``problem`` at ``blocks.<name>.<key>``."""
    return ConfigError(problem.message, key_path=".".join(("blocks", block_name, *problem.key)))


def check_param(p: Param, value: object) -> str | None:
    """Why ``value`` is not valid for parameter ``p``, or None when it is."""
    kind = p.kind
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok and not _finite_float(value):
            return f"parameter {p.name!r} must be finite, got {show(value)}"
    else:
        ok = isinstance(value, kind)
    if not ok:
        return f"parameter {p.name!r} takes {param_kind(p)}, got {show(value)}"
    if p.choices is not None and value not in p.choices:
        return (f"parameter {p.name!r} must be one of {', '.join(p.choices)}, "
                f"got {show(value)}{suggest(str(value), p.choices)}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if p.min is not None and (value < p.min or (p.min_exclusive and value == p.min)):
            bound = f"> {_num(p.min)}" if p.min_exclusive else f">= {_num(p.min)}"
            return f"parameter {p.name!r} must be {bound}, got {show(value)}"
        if p.max is not None and value > p.max:
            return f"parameter {p.name!r} must be <= {_num(p.max)}, got {show(value)}"
    return None


def param_kind(p: Param) -> str:
    """``"a number"``, ``"an int"``... for messages."""
    names = {bool: "a bool", int: "an int", float: "a number", str: "a string"}
    return names.get(p.kind, f"a {p.kind.__name__}")


def show(value: Any) -> str:
    """A value as the user wrote it in YAML, for messages ("got ...")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return str(value)


def suggest(word: str, candidates: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for a near miss, else ``""``."""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


# -- the steps of resolve_block -------------------------------------------------------


def _variadic(block: BlockInstance, spec: BlockSpec, problems: list[Problem]
              ) -> tuple[int | None, bool]:
    """The variadic count N (clamped to the spec's range) and whether N was allowed."""
    if spec.variadic is None:
        return None, True
    prefix = spec.variadic
    numbers = [int(k[len(prefix):]) for k in block.inputs if is_variadic_key(spec, k)]
    n = max(numbers, default=spec.min_inputs)
    if spec.min_inputs <= n <= spec.max_inputs:
        return n, True
    problems.append(Problem(("inputs",), f"{spec.name} takes {spec.min_inputs}.."
                            f"{spec.max_inputs} inputs {prefix}1..{prefix}N, got N = {n}",
                            at_key=True))
    return min(max(n, spec.min_inputs), spec.max_inputs), False


def _inputs(block: BlockInstance, spec: BlockSpec, ports: tuple[Port, ...], count_ok: bool,
            problems: list[Problem]) -> dict[str, SignalRef | Const]:
    names = [p.name for p in ports]
    for key in block.inputs:
        if key not in names and not is_variadic_key(spec, key):  # beyond max: counted
            problems.append(_unknown(spec, "inputs", key, names))
    out: dict[str, SignalRef | Const] = {}
    for port in ports:
        if port.name in block.inputs:
            out[port.name] = block.inputs[port.name]
        elif port.default is not None:
            out[port.name] = Const(port.default)
        elif count_ok or not is_variadic_key(spec, port.name):  # else the count says it
            problems.append(Problem(("inputs", port.name), f"missing required input "
                                    f"{port.name!r} of {spec.name} ({port.type.value})",
                                    absent=True))
    return out


def _outputs(block: BlockInstance, spec: BlockSpec, problems: list[Problem]
             ) -> dict[str, SignalRef]:
    names = [p.name for p in spec.outputs]
    out: dict[str, SignalRef] = {}
    for key, ref in block.outputs.items():
        if key in names:
            out[key] = ref
        else:
            problems.append(_unknown(spec, "outputs", key, names))
    return out


def _params(block: BlockInstance, spec: BlockSpec, problems: list[Problem]) -> dict[str, Any]:
    known = [p.name for p in spec.params]
    n_before = len(problems)
    for key in block.params:
        if key not in known:
            hint = suggest(key, known) or (
                f"; {spec.name} has parameters {', '.join(known)}" if known
                else f"; {spec.name} has no parameters")
            problems.append(Problem(("params", key),
                                    f"unknown parameter {key!r} of {spec.name}{hint}",
                                    at_key=True))
    out: dict[str, Any] = {}
    for p in spec.params:
        if p.name not in block.params:
            if p.default is REQUIRED:
                problems.append(Problem(("params", p.name), f"missing required parameter "
                                        f"{p.name!r} of {spec.name} ({param_kind(p)})",
                                        absent=True))
            else:
                out[p.name] = p.default
            continue
        value = block.params[p.name]
        problem = check_param(p, value)
        if problem:
            problems.append(Problem(("params", p.name), problem))
        out[p.name] = float(value) if p.kind is float and not problem else value
    check = spec.extra.get("check")
    if check is not None and len(problems) == n_before:
        problems.extend(Problem(("params",), message, at_key=True) for message in check(out))
    return out


def _unknown(spec: BlockSpec, section: str, key: str, known: list[str]) -> Problem:
    hint = suggest(key, known) or (
        f"; {spec.name} has {section} " + (", ".join(known) if known else "none"))
    kind = "input" if section == "inputs" else "output"
    return Problem((section, key), f"unknown {kind} {key!r} of {spec.name}{hint}", at_key=True)


def _finite_float(value: object) -> bool:
    """Whether ``value`` (a number) is a finite float64 (an int beyond 1.8e308 is not)."""
    try:
        return math.isfinite(float(value))  # type: ignore[arg-type] # a number, checked
    except OverflowError:
        return False


def _num(x: float) -> str:
    """A bound for messages: integral ones in full (``9007199254740991``), else ``:g``."""
    if float(x).is_integer() and abs(x) < 2**63:
        return str(int(x))
    return f"{x:g}"
