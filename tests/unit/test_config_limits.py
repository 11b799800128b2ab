"""Hostile plant files (issue 11, item 5): each ends with a located error, never a
traceback, a hang or gigabytes. Time and memory are measured by
``bench/config_load.py``; these tests assert the errors only.

The CLI is run in-process (``petra.cli.main``) except where a regression would hang
the test run (a FIFO): that one runs in a child with a timeout.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from petra.cli import main
from petra.config import ConfigError, ConfigErrors, load_plant, load_plant_text
from petra.config._yaml import (
    MAX_FILE_BYTES,
    Limits,
    YamlError,
    parse_yaml,
    read_plant_file,
)

LOCATED = re.compile(
    r"^(?P<file>[^:]+):(?P<line>\d+):(?P<col>\d+):( (?P<key>[^:]*):)? (?P<msg>.+)$")


def errors(text: str) -> list[ConfigError]:
    with pytest.raises(ConfigErrors) as info:
        load_plant_text(textwrap.dedent(text), "p.yaml")
    return info.value.errors


def check_file(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str],
               ) -> tuple[int, list[str]]:
    plant = tmp_path / "plant.yaml"
    plant.write_text(textwrap.dedent(text))
    code = main(["check", "-q", "--no-warnings", str(plant)])
    return code, capsys.readouterr().err.splitlines()


def assert_located(lines: list[str], line: int, fragment: str) -> None:
    """Every stderr line is ``FILE:LINE:COL: [key:] message``; one at ``line`` holds
    ``fragment``."""
    assert lines, "no error printed"
    for text in lines:
        assert LOCATED.match(text), f"not a located one-line error: {text!r}"
        assert "Traceback" not in text
    hits = [t for t in lines if (m := LOCATED.match(t)) and int(m["line"]) == line
            and fragment in t]
    assert hits, f"no error at line {line} with {fragment!r}: {lines}"


# ----------------------------------------------------------------------------- bounds

def alias_bomb() -> str:
    lines = ["instance: bomb",
             'a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    lines.append("api: {x: *a8}")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_at_the_alias(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = check_file(tmp_path, alias_bomb(), capsys)
    assert code == 1
    # a5 holds 9^5 = 59049 copied values; the copies of a6 cross 100000.
    assert_located(lines, 7, "aliases and merge keys expand to more than 100000 values")
    assert len(lines) == 1


def test_alias_budget_counts_merges_too() -> None:
    text = "a: &a {x: 1, y: 2}\nb: {<<: *a}\nc: {<<: *a}\n"
    data, _, _ = parse_yaml(text, Limits(alias_nodes=4))
    assert data["c"] == {"x": 1, "y": 2}
    with pytest.raises(YamlError) as info:
        parse_yaml(text + "d: {<<: *a}\n", Limits(alias_nodes=4))
    assert info.value.position == (4, 4) and "expand to more than 4" in info.value.message


def test_file_over_the_size_limit_is_refused_before_reading(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    big = tmp_path / "big.yaml"
    with big.open("wb") as f:  # 50 MB, sparse: refused on its size, never read
        f.write(b"instance: big\n")
        f.truncate(50 * 1024 * 1024)
    assert main(["check", str(big)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"{big}: the file is {50 * 1024 * 1024} bytes; a plant file may hold at "
                   "most 16 MiB")


def test_file_that_grows_past_the_limit_while_read_is_refused() -> None:
    # /proc files report size 0 and then deliver more: the read itself is bounded.
    with pytest.raises(YamlError, match="grew past 64 bytes"):
        read_plant_file("/proc/self/maps", Limits(file_bytes=64))


def test_text_over_the_limit_is_refused_by_the_parser() -> None:
    with pytest.raises(YamlError, match="characters; a plant file may hold"):
        parse_yaml("#" * (MAX_FILE_BYTES + 1))


def test_dev_zero_is_not_a_plant_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "/dev/zero"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "petra check: cannot read /dev/zero: not a regular file (a character device)"


def test_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "plant.yaml"
    os.mkfifo(fifo)
    r = subprocess.run([sys.executable, "-m", "petra", "check", str(fifo)],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 2
    assert r.stderr.strip() == (f"petra check: cannot read {fifo}: not a regular file "
                                "(a FIFO or pipe)")


def test_directory_is_not_a_plant_file(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError):
        load_plant(tmp_path)


def test_bad_utf8_is_located(tmp_path: Path) -> None:
    p = tmp_path / "p.yaml"
    p.write_bytes(b"instance: t\nsignals:\n  - {name: \xff\xfe, type: bool}\n")
    with pytest.raises(ConfigErrors) as info:
        load_plant(p)
    (e,) = info.value.errors
    assert (e.line, e.column) == (3, 12) and "not UTF-8 text" in e.message


@pytest.mark.parametrize("opener, closer", [("[", "]"), ("{a: ", "}")])
def test_nesting_too_deep_is_located(opener: str, closer: str, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    n = 300
    code, lines = check_file(tmp_path, f"instance: t\napi: {opener * n}1{closer * n}\n",
                             capsys)
    assert code == 1
    assert_located(lines, 2, "lists and mappings nest deeper than 64 levels")


def test_nesting_of_100000_brackets_ends_quickly() -> None:
    # libyaml's scanner reads ahead through brackets and stops at its own limit (1000);
    # the events reach 64 first when anything stands between the brackets.
    with pytest.raises(YamlError, match="nesting depth") as info:
        parse_yaml("[" * 100_000)
    assert info.value.position is not None
    with pytest.raises(YamlError, match="deeper than 64") as info:
        parse_yaml("[1, " * 100_000)
    assert info.value.position == (1, 257)  # the 65th bracket


def test_depth_limit_holds_through_aliases() -> None:
    deep = "{a: " * 40 + "1" + "}" * 40
    with pytest.raises(YamlError, match=r"deeper than 64 levels \(through an alias\)"):
        parse_yaml(f"x: &d {deep}\ny: {{b: {{c: [*d, *d]}}}}\n"
                   f"z: {'[' * 30}*d{']' * 30}\n")


def test_deep_but_allowed_nesting_loads() -> None:
    d = 60
    data, _, problems = parse_yaml("x: " + "[" * d + "1" + "]" * d)
    assert problems == []
    data = data["x"]
    for _ in range(d):
        data = data[0]
    assert data == 1


def test_value_count_limit() -> None:
    with pytest.raises(YamlError, match="more than 10 values in one file") as info:
        parse_yaml("[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]", Limits(nodes=10))
    assert info.value.position == (1, 29)


# ----------------------------------------------------------------------------- scalars

def test_bad_explicit_int_is_located_once() -> None:
    errs = errors("""\
        instance: t
        signals:
          - {name: a, type: int, initial: !!int abc}
    """)
    assert [(e.line, e.column, e.key_path, e.message) for e in errs] == [
        (3, 35, "signals[0].initial", "!!int needs an integer, got 'abc'")]


def test_five_thousand_digit_integer_is_located() -> None:
    errs = errors(f"instance: t\nsignals:\n  - {{name: a, type: int, initial: {'7' * 5000}}}\n")
    assert [(e.line, e.column, e.key_path, e.message) for e in errs] == [
        (3, 35, "signals[0].initial",
         "a number of 5000 characters is too long (at most 4300)")]


def test_long_hex_and_float_are_bounded_too() -> None:
    errs = errors(f"instance: t\nscan: {{cpu: 0x{'f' * 4400}, period: {'1' * 4400}.5}}\n")
    assert {e.key_path for e in errs} == {"scan.cpu", "scan.period"}
    assert all("characters is too long" in e.message for e in errs)


@pytest.mark.parametrize("text, message", [
    ("!!bool yes", "!!bool needs true or false, got 'yes'"),
    ("!!bool 1", "!!bool needs true or false, got '1'"),
    ("!!float abc", "!!float needs a number, got 'abc'"),
    ("!!null nothing", "!!null needs null, ~ or nothing, got 'nothing'"),
    ("!!binary aGk=", "unsupported YAML tag '!!binary'"),
    ("!!timestamp 2024-01-01", "unsupported YAML tag '!!timestamp'"),
    ("!custom x", "unsupported YAML tag '!custom'"),
])
def test_explicit_scalar_tags_must_fit(text: str, message: str) -> None:
    errs = errors(f"instance: t\nsignals:\n  - {{name: a, type: bool, writable: {text}}}\n")
    assert [(e.line, e.key_path, e.message) for e in errs] == [
        (3, "signals[0].writable", message)]


def test_explicit_core_tags_that_fit_are_accepted() -> None:
    data, _, problems = parse_yaml(
        "a: !!int 0x1F\nb: !!float 3\nc: !!str 12\nd: !!bool TRUE\ne: !!null ~\n"
        "f: ! 12\ng: !!float .inf\n")
    assert problems == []
    assert data == {"a": 31, "b": 3.0, "c": "12", "d": True, "e": None, "f": "12",
                    "g": float("inf")}
    assert isinstance(data["b"], float)


@pytest.mark.parametrize("tag, body, what", [
    ("!!python/object/apply:os.system", "{args: [echo pwned]}", "a mapping"),
    ("!!python/object/new:dict", "{}", "a mapping"),
    ("!!set", "{a: null}", "a mapping"),
    ("!!omap", "[{a: 1}]", "a list"),
    ("!!python/tuple", "[1, 2]", "a list"),
    ("!!seq", "{a: 1}", "a mapping"),
    ("!!map", "[1]", "a list"),
])
def test_tags_on_mappings_and_lists_are_errors(tag: str, body: str, what: str) -> None:
    errs = errors(f"instance: t\napi: {tag} {body}\n")
    assert any(e.key_path == "api" and e.line == 2 and e.column == 6
               and e.message == f"unsupported YAML tag {tag!r} on {what}"
               for e in errs), [e.format() for e in errs]


def test_python_tag_on_a_mapping_is_reported_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with pytest.raises(ConfigErrors):
        load_plant_text(f"instance: t\napi: !!python/object/apply:os.system "
                        f"{{args: ['touch {marker}']}}\n")
    assert not marker.exists()


def test_explicit_map_and_seq_tags_are_accepted() -> None:
    data, _, problems = parse_yaml("a: !!map {x: 1}\nb: !!seq [1]\nc: ! {y: 2}\n")
    assert problems == [] and data == {"a": {"x": 1}, "b": [1], "c": {"y": 2}}


# ----------------------------------------------------------------------------- aliases

def test_anchor_alias_and_merge_positions() -> None:
    text = textwrap.dedent("""\
        base: &b
          x: 1
          y: oops
        one: {<<: *b, x: 2}
        two: *b
    """)
    data, smap, problems = parse_yaml(text)
    assert problems == []
    assert data["one"] == {"x": 2, "y": "oops"} and data["two"] == {"x": 1, "y": "oops"}
    assert data["two"] is not data["base"]  # a copy, not a shared object
    assert smap.values[("one", "x")] == (4, 18)   # explicit key: where it is written
    assert smap.values[("one", "y")] == (3, 6)    # merged key: in the anchored text
    assert smap.values[("two",)] == (5, 6)        # the alias itself
    assert smap.values[("two", "y")] == (3, 6)    # below it: the anchored text


def test_merge_of_a_list_first_source_wins() -> None:
    data, _, problems = parse_yaml(
        "a: &a {x: 1}\nb: &b {x: 2, y: 2}\nc: {<<: [*a, *b, {z: 3}], w: 0}\n")
    assert problems == []
    assert list(data["c"].items()) == [("w", 0), ("x", 1), ("y", 2), ("z", 3)]


@pytest.mark.parametrize("text, message, pos", [
    ("a: &a [1, *a]\n", "recursive YAML alias", (1, 11)),
    ("a: &a {b: {<<: *a}}\n", "recursive YAML alias", (1, 16)),
    ("a: *nowhere\n", "alias *nowhere names no anchor written before it", (1, 4)),
    ("a: {<<: 5}\n", "a merge key '<<' needs a mapping or a list of mappings", (1, 9)),
    ("a: {<<: [1]}\n", "a merge key '<<' needs a mapping or a list of mappings", (1, 10)),
    ("a: 1\na: 2\n", "duplicate key 'a' (first written at line 1)", (2, 1)),
    ("[1]: x\n", "a key must be a string; quote it", (1, 1)),
    ("? {a: 1}\n: x\n", "a key must be a string; quote it", (1, 3)),
    ("1: x\n", "a key must be a string; quote it", (1, 1)),
])
def test_alias_and_key_problems_are_located(text: str, message: str,
                                            pos: tuple[int, int]) -> None:
    _, _, problems = parse_yaml(text)
    assert [(p.message, p.position) for p in problems] == [(message, pos)]


def test_alias_as_a_key() -> None:
    data, _, problems = parse_yaml("a: &k name\nb: {*k : 1}\n")
    assert problems == [] and data["b"] == {"name": 1}


def test_two_documents_are_an_error() -> None:
    with pytest.raises(YamlError, match="a single document") as info:
        parse_yaml("a: 1\n---\nb: 2\n")
    assert info.value.position == (2, 1)


def test_control_character_is_located() -> None:
    with pytest.raises(YamlError) as info:
        parse_yaml("a: 1\nb: x\x07y\n")
    assert info.value.position is not None and info.value.position[0] == 2


# ----------------------------------------------------------------------------- names

@pytest.mark.parametrize("entry, key", [
    ('instance: "x\\n"', "instance"),
    ('instance: t\nsignals: [{name: "a\\n", type: bool}]', "signals[0].name"),
    ('instance: t\nblocks: [{name: "b\\n", type: X}]', "blocks[0].name"),
    ('instance: t\ndrivers: [{kind: mqtt, name: "d\\n"}]', "drivers[0].name"),
])
def test_names_ending_in_a_newline_are_refused(entry: str, key: str) -> None:
    errs = errors(entry + "\n")
    assert any(e.key_path == key for e in errs), [e.format() for e in errs]
    for e in errs:
        assert "\n" not in e.format()


# ----------------------------------------------------------------------------- topics

@pytest.mark.parametrize("key, value, fragment", [
    ("topic_prefix", "x/{bogus}", "has the placeholder {bogus}; it may use {instance}"),
    ("topic_prefix", "x/{instance.__class__}", "placeholder {instance.__class__}"),
    ("status_topic", "{prefix}/{", "is not a valid template: Single '{'"),
    ("status_topic", "{prefix}/}", "is not a valid template: Single '}'"),
    ("status_topic", "{0}", "has the placeholder {0}"),
    ("status_topic", "{}", "has the placeholder {}"),
    ("status_topic", "{prefix!r}", "has the placeholder {prefix!r}"),
    ("status_topic", "{prefix:>9}", "has the placeholder {prefix:>9}"),
    ("status_topic", "{prefix}/+", "holds '+'"),
    ("status_topic", "{prefix}/#", "holds '#'"),
    ("status_topic", "", "must not be empty"),
])
def test_bad_topic_templates_are_refused(key: str, value: str, fragment: str) -> None:
    errs = errors(f"instance: t\nmqtt:\n  {key}: {value!r}\n".replace("'", '"')
                  if "'" not in value else f"instance: t\nmqtt:\n  {key}: \"{value}\"\n")
    e = next(e for e in errs if e.key_path == f"mqtt.{key}")
    assert e.line == 3 and fragment in e.message


@pytest.mark.parametrize("section, fragment", [
    ('publish: [{signals: [a], topic: "{prefix}/{sig}"}]', "mqtt.publish[0].topic"),
    ('publish: [{signals: [a], topic: "{prefix}/{instance}"}]', "mqtt.publish[0].topic"),
    ('batch: {topic: "{signal}"}', "mqtt.batch.topic"),
    ('commands: {topic: "{prefix}/{path}"}', "mqtt.commands.topic"),
    ('commands: {reply_topic: "{prefix}/+/r"}', "mqtt.commands.reply_topic"),
    ('commands: {reply_prefix: "{prefix}/{signal}"}', "mqtt.commands.reply_prefix"),
])
def test_bad_templates_in_every_topic_field(section: str, fragment: str) -> None:
    errs = errors(f"instance: t\nsignals: [{{name: a, type: bool}}]\nmqtt:\n  {section}\n")
    assert [e.key_path for e in errs] == [fragment]


def test_good_topic_templates_pass() -> None:
    plant = load_plant_text(textwrap.dedent("""\
        instance: t
        signals: [{name: a.b, type: bool}]
        mqtt:
          topic_prefix: "site/{instance}"
          status_topic: "{prefix}/status/{instance}"
          batch: {topic: "{prefix}/batch"}
          commands: {topic: "{prefix}/cmd", reply_topic: "{prefix}/cmd/{{reply}}"}
          publish:
            - {signals: ["a.*"], topic: "{prefix}/{path}/{signal}"}
    """), "p.yaml")
    assert plant.config.mqtt is not None
    rule = plant.config.mqtt.publish[0]
    assert rule.topic.format(prefix="p", signal="a.b", path="a/b") == "p/a/b/a.b"


# ----------------------------------------------------------------------------- drivers

DRIVERS = """\
instance: t
signals:
  - {name: a, type: int}
drivers:
  - kind: modbus_tcp
    name: plc1
    host: 127.0.0.1
    port: 99999
    points:
      - {signal: nosuch, table: holding, address: 1}
      - {signal: a, table: input, address: 2, direction: write}
      - {signal: a, table: holding, address: 3, group: fast}
  - kind: s7
    name: s7a
    host: 127.0.0.1
    port: 0
    points:
      - {signal: nosuch2, address: DB1.DBX0.9}
      - {signal: a, address: DB1.DBW2}
      - {signal: 5, address: DB1.DBW4}
"""


def test_a_failed_driver_entry_does_not_hide_its_other_errors() -> None:
    errs = errors(DRIVERS)
    got = {(e.line, e.key_path, e.message) for e in errs}
    assert got == {
        (5, "drivers[0]", "points[2] names poll group 'fast'; groups: none defined"),
        (8, "drivers[0].port", "expected less than or equal to 65535, got 99999"),
        (10, "drivers[0].points[0].signal", "unknown signal 'nosuch'"),
        (11, "drivers[0].points[1]", "table input is read-only; direction must be read"),
        (16, "drivers[1].port", "expected greater than or equal to 1, got 0"),
        (18, "drivers[1].points[0].signal", "unknown signal 'nosuch2'"),
        (18, "drivers[1].points[0].address",
         "bad S7 address 'DB1.DBX0.9' at column 10: bit number 9 is not 0-7"),
        (19, "drivers[1].points[1].signal", "signal 'a' has two writers: driver 's7a' and "
                                            "driver 'plc1' at line 12; a signal has one writer"),
        (20, "drivers[1].points[2].signal", "expected a valid string, got 5"),
    }, sorted(got)


def test_a_driver_whose_name_fails_stays_loose() -> None:
    errs = errors("""\
        instance: t
        signals: [{name: a, type: int}]
        drivers:
          - {kind: s7, name: "bad name!", host: h, points: [{signal: nosuch, address: DB1.DBW0}]}
    """)
    assert [e.key_path for e in errs] == ["drivers[0].name"]


def test_s7_address_error_is_one_line(tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = check_file(tmp_path, """\
        instance: t
        signals: [{name: a, type: int}]
        drivers:
          - kind: s7
            name: s
            host: h
            points: [{signal: a, address: DB1.DBQ0}]
    """, capsys)
    assert code == 1
    assert_located(lines, 7, "bad S7 address 'DB1.DBQ0' at column 7: expected X, B, W or D "
                             "after DB, found 'Q'")
    assert len(lines) == 1


def test_messages_quoting_huge_values_are_bounded() -> None:
    errs = errors(f"instance: t\nscan: {{period: !!int {'x' * 1_000_000}}}\n")
    assert all(len(e.format()) < 1200 for e in errs)


def test_units_and_owners_with_control_characters_are_refused() -> None:
    errs = errors('instance: t\nsignals:\n  - {name: a, type: bool, unit: "\\e[2J", '
                  'owner: "x\\ty"}\n')
    assert {(e.key_path, e.message) for e in errs} == {
        ("signals[0].unit", "unit '\\x1b[2J' holds control characters"),
        ("signals[0].owner", "owner 'x\\ty' holds control characters")}


def test_a_bad_tag_on_a_key_does_not_hide_the_mappings_errors() -> None:
    errs = errors("instance: t\nscan: {!!int abc: 1, cpu: x}\n")
    assert {(e.key_path, e.message) for e in errs} == {
        ("scan", "!!int needs an integer, got 'abc'"),
        ("scan.abc", "unknown key 'abc'; expected one of: cpu, cpu_dma_latency, grid_offset, "
                     "journal_capacity, mode, period, policy, priority, rt, scan_down, spin, wait"),
        ("scan.cpu", "expected a valid integer, got 'x'")}
