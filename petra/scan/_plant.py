"""The plant as the scan needs it, made by a short-lived process.

Why the scan never imports the config stack
-------------------------------------------
The scan locks its memory (``mlockall``): every page it maps stays resident for as long
as it runs, and counts against the 40 MB per-process budget. Loading a plant file
imports PyYAML, pydantic and its Rust core, the models and the semantic pass: about
30 MB of locked memory that the loop never uses once the plant is compiled, and that
cannot be given back (a loaded extension module stays loaded). So the scan does not
load plant files itself. It runs a child interpreter (:func:`child` of this module),
which loads and validates the file with :mod:`petra.config` and writes the little the
scan needs, a :class:`ScanPlant`, to its stdout; then it exits and its memory with it.
Every hot reload takes this step. At start-up under ``petra run`` the supervisor, which
has validated the plant already, writes the same form as the ``scan`` section of the
plant artefact in its runtime directory (``petra._artefact``) and passes it (``petra
scan --plant-data``): no loader at start, and a scan restarted after a crash runs the
plant the supervisor last accepted, not edits to the file nobody reloaded yet. The
form carries the directory hash of its signal table, so the scan checks it against
the segment without decoding the segment's directory.

The form on the pipe
--------------------
:mod:`marshal` of plain tuples, dicts and scalars. A block parameter may be any data
YAML holds (lists, maps with integer keys, ``.inf``), and marshal carries all of it
unchanged where JSON would turn keys into strings and tuples into lists (and a changed
``repr`` of a parameter would cost the block its state on a reload). Both ends are the
same interpreter (``sys.executable``), so marshal's version-bound format is no issue,
and it is built into the interpreter: the scan imports nothing to read it. Only this
module writes it and only the scan, from the pipe of a child it started, reads it.

The child's scheduling
----------------------
The child is started with ``posix_spawn`` (``vfork`` semantics: the scan's locked pages
are not copied or made copy-on-write, so the loop takes no faults after a spawn) and
SCHED_OTHER (``scheduler``), and moves itself off the scan's CPU before importing
anything: a reload must not compete with the loop it reloads.
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import gc
import marshal
import operator
import os
import select
import signal
import sys
import time
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from petra.blocks import BlockInstance, Const
from petra.errors import PetraError
from petra.types import Quality, SignalDef, SignalType, Value

FORMAT = 1
SCAN_SECTION = "scan"
"""The plant artefact's section this module writes (``petra._artefact``)."""
START_GATE_GO = b"go\n"
"""What the supervisor writes to a scan's start gate once segment and plant are ready."""
PR_SET_PDEATHSIG = 1
# The child runs this (not ``-m``: runpy would import this module twice).
_CHILD_CODE = "import sys; from petra.scan._plant import child; sys.exit(child(sys.argv[1:]))"
COMPILE_TIMEOUT_S = 60.0
_READ_CHUNK = 1 << 16


class PlantLoadError(PetraError):
    """The plant file could not be loaded or validated; ``lines`` says why."""

    def __init__(self, lines: Sequence[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = list(lines)


@dataclass(frozen=True, slots=True)
class ScanSettings:
    """The ``scan:`` section, resolved (defaults filled in, durations in ns)."""

    period_ns: int
    grid_offset_ns: int
    spin_ns: int
    cpu: int | None
    policy: str
    priority: int
    rt: bool
    cpu_dma_latency: bool
    journal_capacity: int | None  # None: sized from the plant (journal_capacity_for)
    mode: str = "full"  # the cycle: "full" (every block) or "event" (what changed)


@dataclass(frozen=True, slots=True)
class RetainSettings:
    """The ``retain:`` section, resolved: the retain file's directory (``{instance}``
    replaced), the seconds between writes, and the blocks whose state it holds."""

    dir: str
    interval_s: float
    blocks: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ScanPlant:
    """A validated plant reduced to what the scan process uses."""

    instance: str
    source: str
    scan: ScanSettings
    signals: Sequence[SignalDef]  # a tuple, or as read: rows made into defs when asked
    safe_values: tuple[tuple[str, Value], ...]
    blocks: tuple[BlockInstance, ...]  # in execution order, signals by name
    retain: RetainSettings | None = None  # None: no block is persisted to a file
    directory_hash: int | None = None  # of ``signals`` as the segment computes it

    def signal_defs(self) -> list[SignalDef]:
        return list(self.signals)

    def signal_names(self) -> list[str]:
        """The signal names in table order (from the rows of a read plant, without
        making 100k definitions)."""
        if isinstance(self.signals, SignalRows):
            return self.signals.names()
        return [d.name for d in self.signals]

    # ---------------------------------------------------------------- the pipe form
    def dumps(self) -> bytes:
        s = self.scan
        data = (
            FORMAT, self.instance, self.source,
            (s.period_ns, s.grid_offset_ns, s.spin_ns, s.cpu, s.policy, s.priority, s.rt,
             s.cpu_dma_latency, s.journal_capacity, s.mode),
            (self.signals.rows if isinstance(self.signals, SignalRows)
             else tuple(_signal_row(d) for d in self.signals)),
            self.safe_values,
            tuple((b.name, b.type, {k: _encode_input(v) for k, v in b.inputs.items()},
                   dict(b.outputs), dict(b.params)) for b in self.blocks),
            None if self.retain is None else (self.retain.dir, self.retain.interval_s,
                                              self.retain.blocks),
            self.directory_hash,
        )
        return marshal.dumps(data)

    @classmethod
    def loads(cls, raw: bytes) -> ScanPlant:
        """Read :meth:`dumps`; PetraError when it cannot. The cyclic garbage collector
        is off meanwhile: 100k fresh objects kept for good are no garbage to look for,
        and its passes over them doubled the time."""
        enabled = gc.isenabled()
        gc.disable()
        try:
            return cls._loads(raw)
        finally:
            if enabled:
                gc.enable()

    @classmethod
    def _loads(cls, raw: bytes) -> ScanPlant:
        try:
            data = marshal.loads(raw)
            if not isinstance(data, tuple) or not data or data[0] != FORMAT:
                raise ValueError("unknown format")
            _, instance, source, scan, signals, safe, blocks, *rest = data
            retain = rest[0] if rest else None
            dir_hash = rest[1] if len(rest) > 1 else None
            if dir_hash is not None and type(dir_hash) is not int:
                raise ValueError("a directory hash that is not a number")
            return cls(
                instance=instance,
                source=source,
                scan=ScanSettings(*scan),
                signals=SignalRows(signals),
                safe_values=tuple(tuple(p) for p in safe),
                blocks=tuple(BlockInstance(name, kind, {k: _decode_input(v)
                                                        for k, v in inputs.items()},
                                           outputs, params)
                             for name, kind, inputs, outputs, params in blocks),
                retain=None if retain is None else RetainSettings(
                    str(retain[0]), float(retain[1]), tuple(retain[2])),
                directory_hash=dir_hash,
            )
        except (ValueError, TypeError, EOFError, KeyError) as exc:
            raise PetraError(f"the compiled plant is unreadable ({exc!r})") from None

    def write(self, path: Path) -> None:
        """Write the pipe form to ``path`` atomically (temp file, then rename), for
        ``petra scan --plant-data``."""
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
        with os.fdopen(fd, "wb") as f:
            f.write(self.dumps())
        tmp.replace(path)

    @classmethod
    def read(cls, path: Path) -> ScanPlant:
        """Read what :meth:`write` wrote; OSError or PetraError when it cannot."""
        return cls.loads(path.read_bytes())

    @classmethod
    def from_plant(cls, plant: Any, *, directory_hash: int | None = None) -> ScanPlant:
        """From a :class:`petra.config.Plant` (duck-typed: the scan never imports it).

        ``directory_hash`` is that of the segment made from this plant's signals (the
        supervisor has it); without it, it is computed here (:func:`directory_hash`)."""
        sc = plant.config.scan
        signals = tuple(plant.signal_defs())
        if directory_hash is None:
            directory_hash = compute_directory_hash(signals)
        return cls(
            instance=plant.config.instance,
            source=str(plant.path or ""),
            scan=ScanSettings(
                period_ns=sc.period_ns, grid_offset_ns=sc.grid_offset_ns, spin_ns=sc.spin_ns,
                cpu=sc.cpu, policy=sc.policy, priority=sc.fifo_priority or 80, rt=sc.rt,
                cpu_dma_latency=sc.cpu_dma_latency, journal_capacity=sc.journal_capacity,
                mode=getattr(sc, "mode", "full")),
            signals=signals,
            safe_values=tuple((s.name, s.safe_value) for s in plant.config.signals
                              if getattr(s, "safe_value", None) is not None),
            blocks=tuple(BlockInstance(b.name, b.type, dict(b.inputs), dict(b.outputs),
                                       dict(b.params)) for b in plant.blocks),
            retain=_retain_settings(plant.config),
            directory_hash=directory_hash,
        )


def _retain_settings(config: Any) -> RetainSettings | None:
    """From a PlantConfig (the loader child's side: petra.config is imported there)."""
    from petra.config._retain import retain_settings, retained_blocks

    names = retained_blocks(config)
    if not names:
        return None
    r = retain_settings(config)
    return RetainSettings(r.dir.replace("{instance}", config.instance), float(r.interval),
                          tuple(names))


def _encode_input(v: str | int | Const) -> Any:
    """A signal name or index as itself, a constant as ``("const", value)``."""
    return ("const", v.value) if isinstance(v, Const) else v


def _decode_input(v: Any) -> str | int | Const:
    return Const(v[1]) if isinstance(v, tuple) else v


# Every field of SignalDef travels, by name, so a field added to it is carried too.
_SIGNAL_FIELDS = tuple(f.name for f in fields(SignalDef))


_row_of = operator.attrgetter(*_SIGNAL_FIELDS)
_HINTS = typing.get_type_hints(SignalDef)
_ENUM_AT = tuple(i for i, name in enumerate(_SIGNAL_FIELDS)  # carried as their int
                 if isinstance(_HINTS[name], type) and issubclass(_HINTS[name], enum.IntEnum))


def _signal_row(d: SignalDef) -> tuple[Any, ...]:
    row = list(_row_of(d))
    for i in _ENUM_AT:
        row[i] = int(row[i])
    return tuple(row)


_FNV_OFFSET = 1469598103934665603
_FNV_PRIME = 1099511628211
_U64 = (1 << 64) - 1


def compute_directory_hash(signals: Sequence[SignalDef]) -> int:
    """The segment's ``directory_hash`` of these signals, as ``petra_init_table``
    computes it (csrc/segment.c): 64-bit FNV-1a over each name's UTF-8 bytes with their
    terminating NUL, then the type code's byte, in table order. Equal hashes: the
    same names and types in the same order (what ``check_same_signals`` needs), without
    decoding the segment's directory. About 0.3 s per 100k signals in Python: the
    supervisor passes the segment's own hash instead, a reload's loader computes it."""
    h = _FNV_OFFSET
    for d in signals:
        for b in d.name.encode("utf-8", "surrogatepass"):
            h = ((h ^ b) * _FNV_PRIME) & _U64
        h = (h * _FNV_PRIME) & _U64  # the NUL: h ^ 0 == h
        h = ((h ^ (int(d.type) & 0xFF)) * _FNV_PRIME) & _U64
    return h


_N_FIELDS = len(_SIGNAL_FIELDS)
_NAME_AT = _SIGNAL_FIELDS.index("name")
_TYPE_AT = _SIGNAL_FIELDS.index("type")
_QUALITY_AT = _SIGNAL_FIELDS.index("initial_quality")
_new_def = object.__new__
_set = object.__setattr__


class SignalRows(Sequence[SignalDef]):
    """The signal table of a plant as read: its rows, made into :class:`SignalDef`
    objects (all at once) only when something asks for them. The scan's start-up needs
    only the names; 100k definitions cost it a third of a second. The rows are checked
    when read (length, name, type and quality codes), so making them cannot fail."""

    __slots__ = ("_defs", "rows")

    def __init__(self, rows: Any) -> None:
        if not isinstance(rows, tuple) or not all(
                type(r) is tuple and len(r) == _N_FIELDS and type(r[_NAME_AT]) is str
                for r in rows):
            raise ValueError("a signal row of the wrong shape")
        if not ({r[_TYPE_AT] for r in rows} <= _TYPES.keys()
                and {r[_QUALITY_AT] for r in rows} <= _QUALITIES.keys()):
            raise ValueError("a signal row with an unknown type or quality")
        self.rows: tuple[tuple[Any, ...], ...] = rows
        self._defs: tuple[SignalDef, ...] | None = None

    def _all(self) -> tuple[SignalDef, ...]:
        if self._defs is None:
            self._defs = tuple(_signal_def(row) for row in self.rows)
        return self._defs

    def names(self) -> list[str]:
        return [row[_NAME_AT] for row in self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    @typing.overload
    def __getitem__(self, i: int) -> SignalDef: ...
    @typing.overload
    def __getitem__(self, i: slice) -> tuple[SignalDef, ...]: ...
    def __getitem__(self, i: int | slice) -> SignalDef | tuple[SignalDef, ...]:
        return self._all()[i]

    def __iter__(self) -> typing.Iterator[SignalDef]:
        return iter(self._all())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return len(self) == len(other) and tuple(self) == tuple(other)

    __hash__ = None  # type: ignore[assignment]  # equal to a tuple, so not hashable

    def __repr__(self) -> str:
        return repr(self._all())


def _signal_def(row: Sequence[Any]) -> SignalDef:
    """A definition the supervisor validated when it wrote the file, rebuilt without
    validating each field again (that cost seconds at 100k signals, in the scan's
    start-up). The file is the plant user's own (mode 0640 in the runtime directory);
    what it says must still match the segment's directory (``check_same_signals``)."""
    if len(row) != len(_SIGNAL_FIELDS):
        raise ValueError("a signal row of the wrong length")
    d = _new_def(SignalDef)
    for name, value in zip(_SIGNAL_FIELDS, row, strict=True):
        _set(d, name, value)
    _set(d, "type", _TYPES[row[_TYPE_AT]])
    _set(d, "initial_quality", _QUALITIES[row[_QUALITY_AT]])
    return d


_TYPES = {int(t): t for t in SignalType}  # a KeyError for an unknown code: unreadable
_QUALITIES = {int(q): q for q in Quality}


# -------------------------------------------------------------------- the scan's side
def _child_cpus(avoid: int | None) -> str:
    """The CPUs the child may use: every online CPU but the scan's (all if it is the
    only one)."""
    cpus = set(range(os.cpu_count() or 1))
    if avoid is not None and len(cpus) > 1:
        cpus.discard(avoid)
    return ",".join(str(c) for c in sorted(cpus))


def compile_plant(path: str | Path, *, avoid_cpu: int | None = None,
                  timeout_s: float = COMPILE_TIMEOUT_S,
                  cancelled: Callable[[], bool] | None = None,
                  wake_fd: int = -1,
                  progress: Callable[[], None] | None = None) -> ScanPlant:
    """Load and validate ``path`` in a child process and return its :class:`ScanPlant`.

    Raises :class:`PlantLoadError` with the loader's messages for an invalid plant and
    :class:`PetraError` when the child fails otherwise, exceeds ``timeout_s`` (it is
    killed) or ``cancelled()`` turns true (checked whenever ``wake_fd`` is readable).
    ``progress()`` is called about every :data:`PROGRESS_S` while the loader's CPU time
    grows (it is working, not stuck), so a starting scan can beat "still loading".
    """
    out_r, out_w = os.pipe()
    argv = [sys.executable, "-c", _CHILD_CODE, str(path), _child_cpus(avoid_cpu),
            str(os.getpid())]
    try:
        pid = os.posix_spawn(
            sys.executable, argv, os.environ,
            file_actions=[(os.POSIX_SPAWN_DUP2, out_w, 1)],
            scheduler=(os.SCHED_OTHER, os.sched_param(0)))
    except OSError as exc:
        os.close(out_r)
        raise PetraError(f"cannot start the plant loader: {exc}") from None
    finally:
        os.close(out_w)
    try:
        raw = _collect(pid, out_r, timeout_s, cancelled, wake_fd, progress=progress)
    finally:
        os.close(out_r)
    return _decode(raw)


def cpu_ticks(pid: int) -> int:
    """User plus system CPU time of ``pid`` in clock ticks (0 when it cannot be read):
    a loader whose CPU time grows is working; one whose time stands still is stuck."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat_line = f.read()
        # The command name (field 2) may hold spaces and parentheses: split after it.
        fields_ = stat_line[stat_line.rindex(b")") + 2:].split()
        return int(fields_[11]) + int(fields_[12])  # utime, stime (fields 14, 15)
    except (OSError, ValueError, IndexError):
        return 0


PROGRESS_S = 0.5


def _collect(pid: int, out_r: int, timeout_s: float, cancelled: Callable[[], bool] | None,
             wake_fd: int, *, progress: Callable[[], None] | None = None) -> bytes:
    """Read the child's stdout to EOF and reap it; kill it on timeout or cancel."""
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    watch = [out_r] + ([wake_fd] if wake_fd >= 0 else [])
    status: int | None = None
    ticks = 0
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise PetraError(f"the plant loader took longer than {timeout_s:.0f} s")
            if progress is not None:
                left = min(left, PROGRESS_S)
                now_ticks = cpu_ticks(pid)
                if now_ticks > ticks:
                    ticks = now_ticks
                    progress()
            ready, _, _ = select.select(watch, [], [], left)
            if out_r in ready:
                chunk = os.read(out_r, _READ_CHUNK)
                if not chunk:
                    break
                chunks.append(chunk)
            if wake_fd in ready and cancelled is not None and cancelled():
                raise PetraError("plant loading cancelled")
        _, status = os.waitpid(pid, 0)
    finally:
        if status is None:  # timed out, cancelled or interrupted: do not leave it behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise PetraError(f"the plant loader failed (exit status {code}; see the log)")
    return b"".join(chunks)


def _decode(raw: bytes) -> ScanPlant:
    try:
        kind, body = marshal.loads(raw)
    except (ValueError, TypeError, EOFError):
        raise PetraError("the plant loader wrote no result") from None
    if kind == "error":
        raise PlantLoadError(body)
    if kind != "plant":
        raise PetraError(f"the plant loader wrote an unknown result {kind!r}")
    return ScanPlant.loads(body)


# -------------------------------------------------------------------- the child's side
def child(argv: Sequence[str]) -> int:
    """The loader process (``argv``: PLANT CPUS SCAN_PID): load, validate, write, exit.

    It dies with the scan (``PR_SET_PDEATHSIG``): a scan killed while a loader hangs
    on an unreadable file must not leave the loader behind."""
    path, cpus, scan_pid = argv[0], argv[1], int(argv[2])
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != scan_pid:  # the scan died before the prctl took hold
        return 1
    with contextlib.suppress(OSError, ValueError):  # a cpuset may forbid it: SCHED_OTHER still
        os.sched_setaffinity(0, {int(c) for c in cpus.split(",") if c})
    from petra.config import ConfigErrors, load_plant

    try:
        plant = load_plant(path)
        result: tuple[str, Any] = ("plant", ScanPlant.from_plant(plant).dumps())
    except ConfigErrors as exc:
        result = ("error", [line for e in exc.errors for line in str(e).splitlines()]
                  or [str(exc)])
    except OSError as exc:
        result = ("error", [f"{path}: cannot read the plant file ({exc.strerror})"])
    except PetraError as exc:
        result = ("error", str(exc).splitlines() or [repr(exc)])
    sys.stdout.buffer.write(marshal.dumps(result))
    sys.stdout.buffer.flush()
    return 0

