"""What the fuzz tests share: the budget, the corpus, the plant they attack, the invariants.

Budget: every fuzz test runs ``PETRA_FUZZ_EXAMPLES`` examples (default 300), with no
per-example deadline (a slow example on a loaded machine is not a failure; a hang
would be, and pytest's own run time shows it). Raise it for a longer hunt::

    PETRA_FUZZ_EXAMPLES=20000 python -m pytest tests/fuzz -q

The corpus (``corpus/``) holds the nasty inputs found so far, checked in: every entry
runs through every parser on every run, before and besides the random examples.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from petra.shm import Quality, Segment, SignalDef, SignalType

CORPUS = Path(__file__).parent / "corpus"
EXAMPLES = int(os.environ.get("PETRA_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])


def corpus_files(kind: str) -> list[Path]:
    return sorted((CORPUS / kind).iterdir())


def large_inputs() -> dict[str, bytes]:
    """The corpus entries too big to keep literally, built from their recipes."""
    recipes = json.loads((CORPUS / "large.json").read_text())
    return {r["name"]: (r["prefix"] + r["repeat"] * r["times"] + r["suffix"]).encode()
            for r in recipes}


def payload_corpus() -> list[bytes]:
    big = large_inputs()
    return [p.read_bytes() for p in corpus_files("payloads")] + [
        v for k, v in big.items() if not k.startswith("command-")]


def command_corpus() -> list[bytes]:
    big = large_inputs()
    return [p.read_bytes() for p in corpus_files("commands")] + [
        v for k, v in big.items() if k.startswith("command-")]


# -- the plant under attack ----------------------------------------------------------
SIGNALS = [
    SignalDef("sp", SignalType.FLOAT, writable=True, minimum=0, maximum=5, initial=1.0),
    SignalDef("free", SignalType.FLOAT, writable=True, allow_nonfinite=True),
    SignalDef("count", SignalType.INT, writable=True, minimum=-100, maximum=100),
    SignalDef("flag", SignalType.BOOL, writable=True),
    SignalDef("pv", SignalType.FLOAT, initial=3.5),
    SignalDef("f", SignalType.FLOAT), SignalDef("n", SignalType.INT),
    SignalDef("b", SignalType.BOOL), SignalDef("lim", SignalType.FLOAT, minimum=0, maximum=100),
    SignalDef("sec.a", SignalType.FLOAT), SignalDef("sec.b", SignalType.INT),
    SignalDef("scan.out", SignalType.FLOAT, owner="scan", initial=5.0),
]
NAMES = [s.name for s in SIGNALS]


def segment_fixture() -> Any:
    """A module-scoped fixture of the plant every target attacks (one segment per test
    module, unlinked afterwards): ``fseg = segment_fixture()`` in the module."""
    @pytest.fixture(scope="module")
    def fseg() -> Iterator[Segment]:
        seg = Segment.create(f"fz{uuid.uuid4().hex[:10]}", SIGNALS)
        yield seg
        seg.unlink()
        seg.close()
    return fseg


def assert_sane(seg: Segment) -> None:
    """No slot holds a GOOD value its signal does not allow."""
    for info in seg.signals:
        s = seg.read_index(info.index)
        if s.quality != Quality.GOOD or info.type is SignalType.BOOL:
            continue
        v = s.value
        assert isinstance(v, int | float) and not isinstance(v, bool)
        if isinstance(v, float) and not math.isfinite(v):
            assert info.allow_nonfinite, f"{info.name}: GOOD {v}"
            if math.isnan(v):
                continue
        assert info.minimum is None or v >= info.minimum, f"{info.name}: GOOD {v}"
        assert info.maximum is None or v <= info.maximum, f"{info.name}: GOOD {v}"


def snapshot(seg: Segment, names: list[str]) -> dict[str, tuple[Any, ...]]:
    """Each signal's sample, comparable with ``==`` even when a value is NaN (two NaN
    floats never compare equal, so a plain Sample would always look changed)."""
    out: dict[str, tuple[Any, ...]] = {}
    for n in names:
        s = seg.read(n)
        v = s.value
        key = "nan" if isinstance(v, float) and math.isnan(v) else v
        out[n] = (key, *s[1:])
    return out


def same(a: Any, b: Any) -> bool:
    """Equality that treats NaN as equal to NaN, through lists and dicts."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and bool(a == b)


# -- strategies ----------------------------------------------------------------------
def splice(base: bytes, insert: bytes, at: int) -> bytes:
    """``base`` with ``insert`` put in at a position (a cheap mutation of a seed)."""
    k = at % (len(base) + 1)
    return base[:k] + insert + base[k:]


def mutated(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    return st.builds(splice, st.sampled_from(seeds), st.binary(max_size=16),
                     st.integers(0, 2**31))


NUMBER_TEXT = st.one_of(
    st.from_regex(r"\A[+-]?\d{0,45}(\.\d{0,10})?([eE][+-]?\d{0,6})?\Z"),
    st.floats().map(repr), st.integers(-(10**60), 10**60).map(str),
    st.sampled_from(["nan", "-inf", "Infinity", "1_0", "0x1", "\u0661", "1e", ".", "", " 1 "]),
    st.text(max_size=50))

JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(-(10**45), 10**45),
                      st.floats(), st.text(max_size=12))
JSON_DOC = st.recursive(JSON_LEAF, lambda kids: st.one_of(
    st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=6), kids, max_size=4)),
    max_leaves=40)


def json_within_limits(doc: Any, depth: int = 0, max_depth: int = 32) -> bool:
    """True when the bounded parser must accept ``json.dumps(doc)`` as it is."""
    if isinstance(doc, bool) or doc is None or isinstance(doc, str):
        return True
    if isinstance(doc, int):
        return len(str(doc)) <= 40
    if isinstance(doc, float):
        return not math.isfinite(doc) or len(repr(doc)) <= 40
    if depth + 1 > max_depth:
        return False
    items = doc.values() if isinstance(doc, dict) else doc
    return all(json_within_limits(x, depth + 1, max_depth) for x in items)
