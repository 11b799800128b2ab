"""Loading a plant file: YAML, models, semantic pass, and the :class:`Plant` they make.

Every stage reports into one :class:`~petra.config._errors.Diagnostics`; a stage that
cannot finish (the text is not YAML) stops, every other stage runs to the end so the
user sees all problems of the file at once.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path as FsPath
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from petra.blocks import BlockInstance, BlockSpec
from petra.config._alarms import alarm_signal_defs, check_alarms
from petra.config._drivers import DriverConfig
from petra.config._errors import ConfigErrors, Diagnostics, format_path
from petra.config._fastyaml import fast_parse
from petra.config._history import check_history
from petra.config._models import BlockConfig, PlantConfig, ScanConfig, SignalConfig
from petra.config._retain import check_retain
from petra.config._salvage import NO_SIGNAL, salvage_driver
from petra.config._semantic import Analysis, Partial, analyze
from petra.config._yaml import (
    _SURROGATE,
    DEFAULT_LIMITS,
    SourceMap,
    YamlError,
    dump_yaml,
    parse_yaml,
    read_plant_file,
)
from petra.errors import ConfigError
from petra.types import DRIVER_PREFIX, Quality, SignalDef, SignalType, role_kind

_DRIVER_ADAPTER: TypeAdapter[Any] = TypeAdapter(DriverConfig)  # works for a model or a union
_entry_points_loaded = False


def block_specs() -> dict[str, BlockSpec]:
    """Every registered block type: the built-ins and, once, the entry-point plugins."""
    global _entry_points_loaded  # noqa: PLW0603 - load the plugins once per process
    from petra import blocks  # the library registers its built-ins on import

    loader = getattr(blocks, "load_entry_points", None)
    if loader is not None and not _entry_points_loaded:
        _entry_points_loaded = True
        loader()
    return dict(blocks.all_specs())


@dataclass(frozen=True)
class Plant:
    """A validated plant: the config model plus what the semantic pass derived.

    ``order`` lists block names in execution order; ``blocks`` the resolved blocks in
    that order. ``warnings`` are findings that do not make the file invalid.
    """

    config: PlantConfig
    path: FsPath | None
    order: list[str]
    blocks: list[BlockInstance]
    warnings: list[ConfigError]
    signal_types: dict[str, str]
    block_writers: dict[str, str]
    driver_writers: dict[str, str]
    owners: dict[str, str] = field(repr=False)
    text_hash: str = field(default="", repr=False)
    """SHA-256 of the text that was validated (hex): which file content this is."""

    @cached_property
    def source_hash(self) -> str:
        """SHA-256 of the normalised config: equal for files that mean the same plant
        (comments, key order, ``10ms`` vs ``10``), different otherwise."""
        return _hash_model(self.config)

    def signal_defs(self) -> list[SignalDef]:
        """The segment's signal table, in file order, owners derived from the writers,
        with each signal's ``min``/``max`` as the limits :meth:`Segment.write_checked`
        enforces. Made once (the supervisor needs it twice: the segment, the scan's
        hand-over; 100k definitions cost seconds); each call returns a new list."""
        return list(self._signal_defs)

    @cached_property
    def _signal_defs(self) -> tuple[SignalDef, ...]:
        # The models checked each name, unit and limit, the semantic pass min <= max:
        # the definitions are made without SignalDef's own checks of the same (they
        # were most of a second at 100k signals). An owner is derived, so each distinct
        # one is checked here, once. The collector is off: 100k objects kept for good.
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            out = [_trusted_def(sig, self._owner_quality(sig.name))
                   for sig in self.config.signals]
        finally:
            if was_enabled:
                gc.enable()
        return (*out, *alarm_signal_defs(self.config))  # alarms.state_signals, after the rest

    def _owner_quality(self, name: str) -> tuple[str, Quality]:
        owner = self.owners.get(name, "")
        known = _OWNER_QUALITY.get(owner)
        if known is None:
            # A configured value is known until its writer says otherwise, except a
            # device's: that stays UNCERTAIN until the driver has read it once.
            quality = Quality.UNCERTAIN if role_kind(owner) == DRIVER_PREFIX else Quality.GOOD
            SignalDef("x", SignalType.BOOL, owner=owner)  # the owner's length, checked
            known = _OWNER_QUALITY.setdefault(owner, (owner, quality))
        return known

    def block(self, name: str) -> BlockInstance:
        """The resolved block called ``name``."""
        for b in self.blocks:
            if b.name == name:
                return b
        raise KeyError(name)


_OWNER_QUALITY: dict[str, tuple[str, Quality]] = {}
_TYPES = {t.name.lower(): t for t in SignalType}
_new_def = object.__new__
_set = object.__setattr__


def _trusted_def(sig: SignalConfig, owner_quality: tuple[str, Quality]) -> SignalDef:
    """A :class:`SignalDef` from a validated signal entry, without checking again."""
    typ = _TYPES[sig.type]
    initial: bool | int | float | None = sig.initial
    if initial is not None and typ is SignalType.FLOAT:
        initial = float(initial)
    d = _new_def(SignalDef)
    _set(d, "name", sig.name)
    _set(d, "type", typ)
    _set(d, "unit", sig.unit)
    _set(d, "owner", owner_quality[0])
    _set(d, "writable", sig.writable)
    _set(d, "initial", initial)
    _set(d, "initial_quality", owner_quality[1])
    _set(d, "minimum", None if sig.min is None else float(sig.min))
    _set(d, "maximum", None if sig.max is None else float(sig.max))
    _set(d, "allow_nonfinite", False)
    return d


def _hash_model(model: BaseModel) -> str:
    text = json.dumps(model.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def dump_plant_yaml(config: PlantConfig) -> str:
    """A plant config as YAML text that loads back to an equal model (keys at their
    default values are left out; durations written with their unit)."""
    return dump_yaml(config.model_dump(mode="json", exclude_defaults=True))


def load_plant(path: str | FsPath, *, specs: Mapping[str, BlockSpec] | None = None) -> Plant:
    """Load and validate a plant file; raise :class:`ConfigErrors` listing every problem.

    A file that cannot be read (missing, no permission, not a regular file) raises
    :class:`OSError` (the CLI calls that a usage error); one too large or not UTF-8 is
    a :class:`ConfigErrors`.
    """
    p = FsPath(path)
    try:
        text = read_plant_file(p)  # regular files only, bounded (see _yaml.py)
    except YamlError as exc:
        line, col = exc.position if exc.position is not None else (None, None)
        raise ConfigErrors([ConfigError(exc.message, file=str(path), line=line,
                                        column=col)]) from None
    return load_plant_text(text, str(path), specs=specs, path=p)


def load_plant_text(
    text: str,
    filename: str = "<string>",
    *,
    specs: Mapping[str, BlockSpec] | None = None,
    path: FsPath | None = None,
) -> Plant:
    """Validate plant YAML given as text; ``filename`` is what errors name.

    A file in the plain subset of YAML that generators write is read by the fast reader
    (``_fastyaml.py``, no positions); when that finds anything to say (an error or a
    warning needs its line), the file is read again by the exact reader, and the
    messages come from that reading alone.
    """
    if specs is None:
        specs = block_specs()
    # A large plant is a million small objects made in one go and kept: the cyclic
    # garbage collector, triggered by the allocations, would walk all of them again and
    # again (half the time of a 100k-signal check) to find no cycle. Off while loading.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _load_text(text, filename, specs, path)
    finally:
        if was_enabled:
            gc.enable()


def _load_text(text: str, filename: str, specs: Mapping[str, BlockSpec],
               path: FsPath | None) -> Plant:
    text_hash = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    if len(text) <= DEFAULT_LIMITS.file_bytes and _SURROGATE.search(text) is None:
        box = [fast_parse(text)]  # the only reference: _check drops it when done with it
        if box[0] is not None:
            with contextlib.suppress(ConfigErrors):
                plant = _check(box, SourceMap(), [], filename, specs=specs, path=path,
                               text_hash=text_hash)
                if not plant.warnings:
                    return plant
        del box
    try:
        data, smap, problems = parse_yaml(text)
    except YamlError as exc:
        line, col = exc.position if exc.position is not None else (None, None)
        raise ConfigErrors([ConfigError(exc.message, file=filename, line=line, column=col,
                                        key_path=format_path(exc.path))]) from None
    return _check([data], smap, problems, filename, specs=specs, path=path,
                  text_hash=text_hash)


def _check(box: list[Any], smap: SourceMap, problems: list[YamlError], filename: str, *,
           specs: Mapping[str, BlockSpec], path: FsPath | None,
           text_hash: str = "") -> Plant:
    """Validate read data (``box[0]``): models, semantic pass, history and alarm checks.
    Once the models hold a valid config, the plain data is dropped from ``box`` (the
    caller holds no other reference): at 100k signals that is tens of MB less at the
    peak of the semantic pass."""
    data = box[0]
    diag = Diagnostics(filename, smap)
    diag.yaml(problems)
    config = _validate(data, diag)
    is_mapping = isinstance(data, dict)
    part = _from_config(config, data) if config is not None else _partial(data, diag)
    if config is not None:
        box.clear()
        del data
    analysis = analyze(part, specs, diag) if is_mapping else Analysis()
    if config is not None:
        check_history(config, analysis.owners, diag)
        check_alarms(config, analysis.owners, diag)
        check_retain(config, diag)
    if diag.errors or config is None:
        raise ConfigErrors(diag.errors, diag.warnings)
    by_name = analysis.blocks
    return Plant(
        config=config,
        path=path,
        order=list(analysis.order),
        blocks=[by_name[n] for n in analysis.order],
        warnings=sorted(diag.warnings, key=lambda e: (e.line or 0, e.column or 0)),
        signal_types=analysis.signal_types,
        block_writers=analysis.block_writers,
        driver_writers=analysis.driver_writers,
        owners=analysis.owners,
        text_hash=text_hash,
    )


def _validate(data: Any, diag: Diagnostics) -> PlantConfig | None:
    if data is None:
        diag.error((), "the file is empty; a plant file is a mapping with at least "
                       "'instance' (see docs/config.md)")
        return None
    if not isinstance(data, dict):
        diag.error((), "a plant file is a mapping (instance:, scan:, signals:, blocks:, "
                       f"...), not a {type(data).__name__}")
        return None
    try:
        return PlantConfig.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            diag.pydantic(PlantConfig, data, err)
        return None


def _from_config(config: PlantConfig, data: dict[str, Any]) -> Partial:
    """The :class:`Partial` of a file whose models all passed (no second validation)."""
    part = Partial(instance=config.instance, scan=config.scan,
                   scan_set=frozenset(config.scan.model_fields_set))
    part.signals = list(enumerate(config.signals))
    part.blocks = list(enumerate(config.blocks))
    part.drivers = list(enumerate(config.drivers))
    part.signal_names = [(i, s.name) for i, s in part.signals]
    part.block_names = [(i, b.name) for i, b in part.blocks]
    _names(data.get("drivers"), part.driver_names)
    return part


def _names(items: Any, into: list[tuple[int, str]]) -> None:
    if isinstance(items, list):
        for i, item in enumerate(items):
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                into.append((i, item["name"]))


def _partial(data: Any, diag: Diagnostics) -> Partial:
    """Validate each entry alone, so the semantic pass sees every good one (and what
    can be checked of a failed driver entry: ``_salvage.py``)."""
    part = Partial()
    if not isinstance(data, dict):
        return part
    if isinstance(data.get("instance"), str):
        part.instance = data["instance"]
    scan = data.get("scan", {})
    if isinstance(scan, dict):
        try:
            part.scan = ScanConfig.model_validate(scan)
            part.scan_set = frozenset(part.scan.model_fields_set)
        except ValidationError:
            part.scan = None
    _names(data.get("signals"), part.signal_names)
    _names(data.get("blocks"), part.block_names)
    _names(data.get("drivers"), part.driver_names)
    _entries(data.get("signals"), SignalConfig.model_validate, part.signals,
             part.loose_signals)
    _entries(data.get("blocks"), BlockConfig.model_validate, part.blocks, part.loose_blocks)
    _entries(data.get("drivers"), _DRIVER_ADAPTER.validate_python, part.drivers,
             part.loose_drivers)
    drivers = data.get("drivers")
    if isinstance(drivers, list):
        good = {i for i, _ in part.drivers}
        for i, item in enumerate(drivers):
            if i not in good and (rest := salvage_driver(item, i, diag)) is not None:
                part.drivers.append((i, rest))
        part.drivers.sort(key=lambda pair: pair[0])
        part.loose_signals.add(NO_SIGNAL)
    return part


def _entries(items: Any, validate: Any, good: list[tuple[int, Any]], loose: set[str]) -> None:
    """Validate each entry of a list section alone; failed entries lend their name."""
    if not isinstance(items, list):
        return
    for i, item in enumerate(items):
        try:
            good.append((i, validate(item)))
        except ValidationError:
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                loose.add(item["name"])
