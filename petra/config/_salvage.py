"""What is left of a driver entry that failed its model, so its other errors still show.

Pydantic stops at the first layer that fails: a driver entry with a bad ``port`` is not
built, so the checks that need the built entry never run. Without this module a bad
port hides that its points name unknown signals, that a point writes a signal a block
writes too, and the entry-level rules (a point naming an undefined poll group). A user
then fixes one error and meets the next on the following run.

:func:`salvage_driver` rebuilds the entry from its parts:

- each point (``points:``, ``subscriptions:``: every list of models with a ``signal``)
  is validated alone; one that fails is replaced, at its own index, by a stand-in that
  keeps only its signal name, direction and poll group (its type is unknown, so no type
  check is made against it; without a usable signal name it names nothing);
- top-level keys whose value fails are left out (their defaults stand in), then the
  entry is validated again, each failed point replaced by a copy of the list's first
  good point carrying the failed one's poll group (so indices do not move and the
  entry-level rules see every point's group): errors that appear only now are
  reported, except "missing" for the keys left out;
- the result, built without validation around the checked parts, goes to the semantic
  pass, which uses only its name and its points.

The stand-ins never leave ``petra check``: a plant with an error is never run.
"""

from __future__ import annotations

import typing
from functools import cache
from typing import Any

from pydantic import BaseModel, ValidationError

from petra.config._drivers import DriverConfig
from petra.config._errors import Diagnostics, clean_loc

NO_SIGNAL = ""  # the stand-in of a point without a usable signal name; loose, so silent


def _driver_models() -> dict[str, type[BaseModel]]:
    """``kind`` -> model class, from the union itself (new kinds are picked up)."""
    out: dict[str, type[BaseModel]] = {}
    union = typing.get_args(DriverConfig)[0]
    for cls in typing.get_args(union) or (union,):
        kind = cls.model_fields["kind"].annotation
        for value in typing.get_args(kind):
            out[str(value)] = cls
    return out


_MODELS = _driver_models()


def _point_lists(cls: type[BaseModel]) -> dict[str, type[BaseModel]]:
    """Fields of ``cls`` that are lists of models naming a signal."""
    out: dict[str, type[BaseModel]] = {}
    for name, f in cls.model_fields.items():
        if typing.get_origin(f.annotation) is list:
            (item,) = typing.get_args(f.annotation)
            if isinstance(item, type) and issubclass(item, BaseModel) and (
                    "signal" in item.model_fields):
                out[name] = item
    return out


@cache
def _stand_in_class(cls: type[BaseModel]) -> type[BaseModel]:
    """``cls`` whose ``type_hint`` is unknown (None): a stand-in's type is not known."""
    return type(f"StandIn{cls.__name__}", (cls,), {
        "__module__": __name__, "__doc__": "A point that failed its model (stand-in).",
        "type_hint": property(lambda self: None)})


def _point(cls: type[BaseModel], raw: Any) -> BaseModel | None:
    try:
        return cls.model_validate(raw)
    except ValidationError:
        return None


def _group(raw: Any) -> str:
    group = raw.get("group", "default") if isinstance(raw, dict) else "default"
    return group if isinstance(group, str) else "default"


def _stand_in(cls: type[BaseModel], raw: Any) -> BaseModel:
    raw = raw if isinstance(raw, dict) else {}
    fields: dict[str, Any] = {}
    signal = raw.get("signal")
    ok = isinstance(signal, str) and bool(signal)
    fields["signal"] = signal if ok else NO_SIGNAL
    if "direction" in cls.model_fields:
        direction = raw.get("direction", "read")
        usable = direction in typing.get_args(cls.model_fields["direction"].annotation)
        fields["direction"] = direction if ok and usable else "write"  # write: no writer
    if "group" in cls.model_fields:
        fields["group"] = _group(raw)
    return _stand_in_class(cls).model_construct(**fields)


def _copy_of(good: BaseModel | None, raw: Any) -> Any:
    """A valid point at a failed one's index: ``good`` with the failed one's group."""
    if good is None:
        return None
    data = good.model_dump()
    if "group" in data:
        data["group"] = _group(raw)
    return data


def _errors(exc: ValidationError, data: Any) -> list[tuple[tuple[str | int, ...], Any]]:
    return [(clean_loc(data, tuple(e["loc"])), e) for e in exc.errors()]


def _rebuild(cls: type[BaseModel], item: dict[str, Any]
             ) -> tuple[dict[str, Any], dict[str, list[BaseModel]]]:
    """The entry to validate again (failed points as copies of a good one) and, per
    point list, the points for the semantic pass (failed ones as stand-ins)."""
    fixed = dict(item)
    points: dict[str, list[BaseModel]] = {}
    for name, point_cls in _point_lists(cls).items():
        raw_points = item.get(name)
        if not isinstance(raw_points, list):
            fixed.pop(name, None)
            continue
        checked = [_point(point_cls, p) for p in raw_points]
        template = next((p for p in checked if p is not None), None)
        points[name] = [p if p is not None else _stand_in(point_cls, raw)
                        for p, raw in zip(checked, raw_points, strict=True)]
        fixed[name] = [] if template is None else [
            p if p is not None else _copy_of(template, raw)
            for p, raw in zip(checked, raw_points, strict=True)]
    return fixed, points


def _revalidate(cls: type[BaseModel], fixed: dict[str, Any], lists: set[str]
                ) -> tuple[list[tuple[tuple[str | int, ...], Any]], set[str]]:
    """Validate ``fixed`` again, leaving out top-level keys that fail, until only errors
    that leaving out cannot help remain; those errors and the keys left out."""
    dropped: set[str] = set()
    later: list[tuple[tuple[str | int, ...], Any]] = []
    for _ in range(len(fixed) + 1):
        try:
            cls.model_validate(fixed)
            return [], dropped
        except ValidationError as exc:
            later = _errors(exc, fixed)
        bad = {loc[0] for loc, e in later
               if loc and isinstance(loc[0], str) and loc[0] in fixed
               and loc[0] not in lists and e["type"] != "missing"}
        if not bad:
            break
        for key in bad:
            fixed.pop(key)
        dropped |= bad
    return later, dropped


def salvage_driver(item: Any, index: int, diag: Diagnostics) -> BaseModel | None:
    """The checkable rest of driver entry ``index`` (which failed its model), reporting
    into ``diag`` the errors its failure had hidden; None when its name or kind fail."""
    if not isinstance(item, dict):
        return None
    kind = item.get("kind")
    cls = _MODELS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        return None
    try:
        cls.model_validate(item)
        return None  # pragma: no cover - only called for entries that failed
    except ValidationError as exc:
        first = {(loc, e["msg"]) for loc, e in _errors(exc, item)}
    fixed, points = _rebuild(cls, item)
    later, dropped = _revalidate(cls, fixed, set(points))
    for loc, e in later:
        if (loc, e["msg"]) in first or (e["type"] == "missing" and loc[-1:] and
                                        loc[-1] in dropped):
            continue
        diag.pydantic(cls, fixed, e, prefix=("drivers", index))
    if "name" in dropped or not isinstance(fixed.get("name"), str):
        return None
    fixed.update(points)
    return cls.model_construct(**{k: v for k, v in fixed.items() if k in cls.model_fields})
