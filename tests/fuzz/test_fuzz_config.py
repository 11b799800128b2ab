"""Fuzzing the plant file reader and validator (issue 11): whatever the text, loading it
ends with a :class:`Plant` or with :class:`ConfigErrors`, each error one located line.
Never another exception, never a hang (the bounds of ``_yaml.py`` stop the expensive
texts; their time and memory are in ``bench/config_load.py``).

Three sources of input:

- the checked-in corpus ``corpus/config/*.yaml``: nasty files written by hand (bombs,
  tags, recursion, odd bytes, every driver key wrong), each naming on its first line
  (``# expect: FRAGMENT``) a fragment one of its errors must hold, or ``valid``;
- text made of YAML's punctuation, tag and anchor tokens and plant words (Hypothesis);
- valid plant files, then mutated byte-wise (Hypothesis).

Budget: ``PETRA_FUZZ_EXAMPLES`` examples per property (default 150); no deadline (the
machine is shared), the bound is the example count.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from petra.config import ConfigErrors, Plant, load_plant, load_plant_text
from petra.config._yaml import Limits, YamlError, dump_yaml, parse_yaml

CORPUS = Path(__file__).parent / "corpus" / "config"
EXAMPLES = int(os.environ.get("PETRA_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
LOCATED = re.compile(r"^[^\n]+?(:\d+(:\d+)?)?: [^\n]+$")


def outcome(text: str, name: str = "f.yaml") -> Plant | ConfigErrors:
    """Load ``text``; only a Plant or ConfigErrors may come out, with sound errors."""
    try:
        return load_plant_text(text, name)
    except ConfigErrors as exc:
        check_errors(exc)
        return exc


def check_errors(exc: ConfigErrors) -> None:
    assert exc.errors, "ConfigErrors without an error"
    for e in exc.errors:
        line = e.format()
        assert "\n" not in line and "\r" not in line, line
        assert LOCATED.match(line), line
        assert len(line) < 1200, line[:200]
        assert e.line is None or (e.line >= 1 and e.column is not None and e.column >= 1)


# ----------------------------------------------------------------------------- corpus

CORPUS_FILES = sorted(CORPUS.glob("*.yaml"))


def test_the_corpus_is_there() -> None:
    assert len(CORPUS_FILES) >= 40


@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: p.stem)
def test_corpus_file(path: Path, tmp_path: Path) -> None:
    first = path.read_bytes().decode("utf-8", "replace").lstrip("\ufeff").splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name}: first line names the outcome"
    expect = first.removeprefix("# expect: ").strip()
    try:
        plant = load_plant(path)
    except ConfigErrors as exc:
        check_errors(exc)
        assert expect != "valid", [e.format() for e in exc.errors]
        assert any(expect in e.format() for e in exc.errors), (
            f"{path.name}: no error holds {expect!r}: {[e.format() for e in exc.errors]}")
        assert all(e.file == str(path) for e in exc.errors)
        return
    assert expect == "valid", f"{path.name} loaded but should fail with {expect!r}"
    assert isinstance(plant, Plant)
    assert not Path("/tmp/petra-fuzz-pwned").exists()


# ----------------------------------------------------------------------------- tokens

TOKENS = st.sampled_from([
    "{", "}", "[", "]", ",", ": ", ":", "- ", "-", "? ", "\n", "\n  ", "\n    ", " ", "\t",
    "'", '"', "#", "|", ">", "%", "@", "`", "\\", "\r\n", "\x00", "\ufeff", "---", "...",
    "&a ", "&b ", "*a", "*b", "<<: ", "<<", "!!int ", "!!bool ", "!!float ", "!!str ",
    "!!null ", "!!map ", "!!seq ", "!!set ", "!!binary ", "!!python/object/apply:os.system ",
    "!custom ", "! ", "!<tag:x> ", "%TAG !e! tag:e:\n---\n", "!e!x ",
    "instance", "t", "scan", "period", "10ms", "signals", "name", "type", "bool", "float",
    "int", "blocks", "drivers", "kind", "modbus_tcp", "s7", "mqtt", "points", "signal",
    "address", "DB1.DBX0.9", "mqtt", "topic", "{prefix}", "{bogus}", "publish", "true",
    "yes", "on", "~", "null", "0x1F", "1e999", ".nan", "-.inf", "9" * 120, "é", "☃", "\u202e",
])


@FUZZ
@given(st.lists(TOKENS, max_size=80).map("".join))
def test_token_soup_ends_in_a_result_or_located_errors(text: str) -> None:
    outcome(text)


@FUZZ
@given(st.text(st.characters(exclude_categories=()), max_size=300))  # surrogates too
def test_any_text_ends_in_a_result_or_located_errors(text: str) -> None:
    outcome(text)


@FUZZ
@given(st.lists(TOKENS, max_size=60).map("".join),
       st.builds(Limits, file_bytes=st.integers(1, 400), depth=st.integers(1, 8),
                 nodes=st.integers(1, 40), alias_nodes=st.integers(0, 20),
                 number_chars=st.integers(1, 10)))
def test_tight_limits_stop_with_a_positioned_error(text: str, limits: Limits) -> None:
    try:
        data, smap, problems = parse_yaml(text, limits)
    except YamlError as exc:
        assert exc.position is None or min(exc.position) >= 1
        assert "\n" not in exc.message
        return
    for p in problems:
        assert p.position is not None and min(p.position) >= 1
    assert smap.values.get(()) is not None or data is None


# ----------------------------------------------------------------------------- mutants

_names = st.from_regex(r"[a-z][a-z0-9_]{0,5}(\.[a-z0-9]{1,4})?", fullmatch=True)


@st.composite
def plants(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(_names, min_size=1, max_size=6, unique=True))
    kinds = st.sampled_from(["bool", "int", "float"])
    signals: list[dict[str, Any]] = [
        {"name": n, "type": draw(kinds), "writable": draw(st.booleans())} for n in names]
    plant: dict[str, Any] = {"instance": "fz", "scan": {"period": "10ms"}, "signals": signals}
    ints = [s["name"] for s in signals if s["type"] == "int"]
    with_drivers: bool = draw(st.booleans())
    if ints and with_drivers:
        plant["drivers"] = [{
            "kind": "modbus_tcp", "name": "plc", "host": "127.0.0.1",
            "points": [{"signal": ints[0], "table": "holding",
                        "address": draw(st.integers(0, 10))}]}, {
            "kind": "s7", "name": "cpu", "host": "127.0.0.1",
            "points": [{"signal": draw(st.sampled_from(ints)), "address": "DB1.DBW0",
                        "direction": "write"}]}]
    if draw(st.booleans()):
        plant["mqtt"] = {"publish": [{"signals": ["*"], "topic": "{prefix}/{path}"}],
                         "commands": {}}
    return plant


@st.composite
def mutants(draw: st.DrawFn) -> str:
    text = dump_yaml(draw(plants()))
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        piece = draw(TOKENS)
        if op == "insert":
            text = text[:pos] + piece + text[pos:]
        elif op == "delete":
            text = text[:pos] + text[pos + draw(st.integers(1, 8)):]
        else:
            text = text[:pos] + piece + text[pos + len(piece):]
    return text


@FUZZ
@given(plants())
def test_generated_plants_load(plant: dict[str, Any]) -> None:
    result = outcome(dump_yaml(plant))
    assert isinstance(result, Plant), [e.format() for e in result.errors]


@FUZZ
@given(mutants())
def test_mutated_plants_end_in_a_result_or_located_errors(text: str) -> None:
    outcome(text)
