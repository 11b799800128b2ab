"""Plant config: every error kind at its line and column, all errors at once, the order.

Block types here are test doubles passed as ``specs=`` (not registered globally), so the
tests do not depend on which built-ins exist and do not leak into other tests.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from petra.blocks import BlockSpec, Const, Param, Port, PortType
from petra.config import (
    ConfigError,
    ConfigErrors,
    Plant,
    PlantConfig,
    format_duration,
    load_plant,
    load_plant_text,
    parse_duration,
)
from petra.shm import SignalType

FIXTURES = Path(__file__).parent / "fixtures" / "configs"

B, INT, F, N, A = PortType.BOOL, PortType.INT, PortType.FLOAT, PortType.NUM, PortType.ANY
SPECS: dict[str, BlockSpec] = {s.name: s for s in (
    BlockSpec("TEST_AND", "test", "n-input and", (Port("in", B),), (Port("out", B),),
              variadic="in", min_inputs=2, max_inputs=4),
    BlockSpec("TEST_ADD", "test", "n-input add", (Port("in", N),), (Port("out", N),),
              variadic="in"),
    BlockSpec("TEST_NOT", "test", "not", (Port("in", B),), (Port("out", B),)),
    BlockSpec("TEST_GT", "test", "greater", (Port("in1", N), Port("in2", N)), (Port("out", B),),
              (Param("tolerance", float, 0.0, min=0),)),
    BlockSpec("TEST_PID", "test", "pid",
              (Port("pv", F), Port("sp", F), Port("enable", B, True)), (Port("out", F),),
              (Param("kp", float, min=0, min_exclusive=True), Param("ti", float, 0.0, min=0),
               Param("ts", float, 0.1, min=0, min_exclusive=True, max=10),
               Param("mode", str, "auto", choices=("auto", "manual")),
               Param("n", int, 1, min=1, max=10), Param("reverse", bool, False))),
    BlockSpec("TEST_DELAY", "test", "unit delay", (Port("in", A),), (Port("out", A),),
              delay=True),
    BlockSpec("TEST_COUNT", "test", "cycle counter", (), (Port("out", INT),)),
    BlockSpec("TEST_MOVE", "test", "copy", (Port("in", A),), (Port("out", A),)),
)}


def load(text: str) -> Plant:
    return load_plant_text(textwrap.dedent(text), "p.yaml", specs=SPECS)


def errors(text: str) -> list[ConfigError]:
    with pytest.raises(ConfigErrors) as info:
        load(text)
    return info.value.errors


def one(errs: list[ConfigError], key_path: str) -> ConfigError:
    found = [e for e in errs if e.key_path == key_path]
    assert len(found) == 1, f"{key_path}: {[e.format() for e in errs]}"
    return found[0]


def with_blocks(body: str) -> str:
    """SIGNALS followed by block entries written at the usual two-space indent."""
    return SIGNALS + textwrap.indent(textwrap.dedent(body), "  ")


def pos(text: str, line: int, token: str, nth: int = 1) -> tuple[int, int]:
    """(line, column) of the ``nth`` ``token`` on 1-based ``line`` of the dedented text."""
    src = textwrap.dedent(text).splitlines()[line - 1]
    col = -1
    for _ in range(nth):
        col = src.index(token, col + 1)
    return line, col + 1


def at(err: ConfigError) -> tuple[int | None, int | None]:
    return err.line, err.column


SIGNALS = """\
instance: t
signals:
  - {name: a, type: bool}
  - {name: b, type: bool}
  - {name: x, type: float}
  - {name: y, type: float}
  - {name: n, type: int}
blocks:
"""  # blocks start at line 9


# --------------------------------------------------------------------- valid files

def test_valid_demo_fixture() -> None:
    plant = load_plant(FIXTURES / "valid_demo.yaml", specs=SPECS)
    assert plant.config.instance == "demo"
    assert plant.config.scan.period_ns == 10_000_000
    assert plant.config.scan.grid_offset_ns == 5_000_000
    assert plant.order == ["level_model", "level_ctl", "valve_lag", "high", "alarm",
                           "counter"]
    assert [b.name for b in plant.blocks] == plant.order
    assert plant.warnings == []
    assert plant.block_writers["valve.cmd"] == "level_ctl"
    assert plant.signal_types["cycles"] == "int"
    defs = plant.signal_defs()
    assert [d.name for d in defs] == [s.name for s in plant.config.signals]
    level = defs[0]
    assert (level.type, level.unit, level.owner, level.initial) == (
        SignalType.FLOAT, "m", "scan", 2.0)
    sp = defs[1]
    assert (sp.owner, sp.writable) == ("", True)
    pid = plant.block("level_ctl")
    assert pid.params == {"kp": 2.0, "ti": 5.0, "ts": 0.1, "mode": "auto", "n": 1,
                          "reverse": False}
    assert pid.inputs == {"pv": "tank.level", "sp": "tank.sp", "enable": "pump.run"}
    alarm = plant.block("alarm")
    assert alarm.n_inputs == 3 and alarm.inputs["in3"] == Const(True)


def test_minimal_file_and_defaults() -> None:
    plant = load("instance: t\n")
    sc = plant.config.scan
    assert (sc.period_ns, sc.policy, sc.fifo_priority, sc.wait, sc.spin_ns) == (
        10_000_000, "other", None, "sleep", 0)
    assert plant.order == [] and plant.signal_defs() == []
    assert plant.config.mqtt is None


def test_source_hash_ignores_formatting_but_not_meaning() -> None:
    a = load("instance: t\nscan: {period: 10ms}\n")
    b = load("# comment\nscan:\n  period: 10   # ms\ninstance: t\n")
    c = load("instance: t\nscan: {period: 20ms}\n")
    assert a.source_hash == b.source_hash != c.source_hash


def test_durations() -> None:
    assert parse_duration("10ms") == 10_000_000
    assert parse_duration("250us") == 250_000
    assert parse_duration("1.5s") == 1_500_000_000
    assert parse_duration("100 ns") == 100
    assert parse_duration(10) == 10_000_000
    assert parse_duration(0.5) == 500_000
    for bad in ("10", "10m", "fast", True, -1, float("inf"), None):
        with pytest.raises(ValueError):
            parse_duration(bad)
    for ns in (100, 250_000, 10_000_000, 3_000_000_000, 1_500_000):
        assert parse_duration(format_duration(ns)) == ns


def test_yaml_core_schema_scalars() -> None:
    plant = load("""\
        instance: t
        signals:
          - {name: on, type: bool, initial: false}
          - {name: yes, type: float, initial: 1e3}
          - {name: c, type: int, initial: 012}
    """)
    names = [s.name for s in plant.config.signals]
    assert names == ["on", "yes", "c"]
    assert plant.config.signals[1].initial == 1000.0
    assert plant.config.signals[2].initial == 12


def test_anchors_and_merge_keys() -> None:
    plant = load("""\
        instance: t
        signals:
          - &f {name: a, type: float, unit: m, min: 0, max: 10}
          - {<<: *f, name: b}
    """)
    assert plant.config.signals[1].unit == "m" and plant.config.signals[1].name == "b"


# --------------------------------------------------------------------- YAML level

def test_yaml_syntax_error_has_position() -> None:
    errs = errors("instance: t\nsignals: [\n  {name: a\n")
    assert len(errs) == 1 and errs[0].line is not None
    assert "invalid YAML" in errs[0].message


def test_duplicate_yaml_keys() -> None:
    text = """\
        instance: t
        scan:
          period: 10ms
          period: 20ms
    """
    errs = errors(text)
    e = one(errs, "scan.period")
    assert at(e) == (4, 3) and "duplicate key 'period' (first written at line 3)" in e.message


def test_non_string_key_and_empty_and_non_mapping() -> None:
    e = one(errors("instance: t\n1: x\n"), "")
    assert at(e) == (2, 1) and "key must be a string" in e.message
    assert "empty" in errors("# nothing\n")[0].message
    assert "mapping" in errors("- a\n- b\n")[0].message


def test_unsupported_tag() -> None:
    errs = errors("instance: t\nscan: {period: !!binary aGk=}\n")
    assert any(e.key_path == "scan.period" and "unsupported YAML tag" in e.message
               for e in errs)


# --------------------------------------------------------------------- structure

def test_unknown_key_with_hint() -> None:
    text = """\
        instance: t
        scan:
          perod: 10ms
        signal: []
    """
    errs = errors(text)
    e = one(errs, "scan.perod")
    assert at(e) == (3, 3) and "did you mean 'period'?" in e.message
    e = one(errs, "signal")
    assert at(e) == (4, 1) and "did you mean 'signals'?" in e.message


def test_unknown_key_without_near_miss_lists_keys() -> None:
    text = "instance: t\nsignals:\n  - {name: a, type: bool, zzzz: 1}\n"
    e = one(errors(text), "signals[0].zzzz")
    assert at(e) == pos(text, 3, "zzzz")
    assert "expected one of:" in e.message and "writable" in e.message


def test_missing_required_key() -> None:
    text = """\
        scan: {period: 10ms}
        signals:
          - name: a
    """
    errs = errors(text)
    e = one(errs, "")
    assert "missing required key 'instance'" in e.message
    e = one(errs, "signals[0]")
    assert at(e) == (3, 5) and "missing required key 'type'" in e.message


def test_wrong_types_and_literals() -> None:
    text = """\
        instance: t
        log_level: loud
        scan:
          cpu: "1"
          rt: 1
          journal_capacity: 1000
          policy: rr
        signals:
          - {name: a, type: real, writable: yes}
    """
    errs = errors(text)
    assert "expected 'debug', 'info', 'warning' or 'error', got 'loud'" in one(
        errs, "log_level").message
    assert at(one(errs, "scan.cpu")) == (4, 8)
    assert "valid integer" in one(errs, "scan.cpu").message
    assert "valid boolean, got 1" in one(errs, "scan.rt").message
    assert "power of two" in one(errs, "scan.journal_capacity").message
    assert "'other' or 'fifo'" in one(errs, "scan.policy").message
    e = one(errs, "signals[0].type")
    assert at(e) == pos(text, 9, "real") and "got 'real'" in e.message
    assert "got 'yes'" in one(errs, "signals[0].writable").message


def test_scan_ranges_and_cross_field_rules() -> None:
    text = """\
        instance: t
        scan:
          period: 50us
          priority: 100
    """
    errs = errors(text)
    assert "100us..10s, got 50us" in one(errs, "scan.period").message
    assert at(one(errs, "scan.priority")) == (4, 13)
    text = """\
        instance: t
        scan:
          period: 1ms
          wait: hybrid
          spin: 1ms
          grid_offset: 2ms
          rt: true
    """
    errs = errors(text)
    assert at(one(errs, "scan.spin")) == (5, 9)
    assert "shorter than the period 1ms" in one(errs, "scan.spin").message
    assert "shorter than the period" in one(errs, "scan.grid_offset").message
    assert "needs policy: fifo" in one(errs, "scan.rt").message


def test_scan_warnings() -> None:
    plant = load("""\
        instance: t
        scan: {priority: 50, spin: 100us, cpu: 4096}
    """)
    keys = {w.key_path for w in plant.warnings}
    assert keys == {"scan.priority", "scan.spin", "scan.cpu"}
    assert plant.config.scan.fifo_priority is None
    fifo = load("instance: t\nscan: {policy: fifo}\n").config.scan
    assert fifo.fifo_priority == 80


def test_invalid_names() -> None:
    text = """\
        instance: bad name
        signals:
          - {name: 1abc, type: bool}
        blocks:
          - {name: "b c", type: TEST_NOT}
    """
    errs = errors(text)
    assert at(one(errs, "instance")) == (1, 11)
    e = one(errs, "signals[0].name")
    assert at(e) == pos(text, 3, "1abc") and "signal name '1abc' is invalid" in e.message
    assert "block name 'b c' is invalid" in one(errs, "blocks[0].name").message


def test_instance_name_too_long() -> None:
    assert "1-48" in one(errors(f"instance: {'a' * 49}\n"), "instance").message


# --------------------------------------------------------------------- signals

def test_signal_values_and_ranges() -> None:
    text = """\
        instance: t
        signals:
          - {name: a, type: float, min: 5, max: 1}
          - {name: b, type: int, initial: 1.5}
          - {name: c, type: bool, initial: 1, min: 0}
          - {name: d, type: float, min: 0, max: 10, initial: 11, safe_value: -1}
          - {name: e, type: int, initial: "3"}
          - {name: f, type: float, min: .nan}
          - {name: g, type: float, unit: "way too long unit"}
    """
    errs = errors(text)
    assert at(one(errs, "signals[0].max")) == pos(text, 3, "1}")
    assert "below min" in one(errs, "signals[0].max").message
    assert "expected a int value for a int signal, got 1.5" in one(
        errs, "signals[1].initial").message
    assert "got 1" in one(errs, "signals[2].initial").message
    assert "a bool signal has no min" in one(errs, "signals[2].min").message
    assert "outside min/max [0, 10]" in one(errs, "signals[3].initial").message
    assert "safe_value -1 is outside" in one(errs, "signals[3].safe_value").message
    assert "expected a bool or a number, got str '3'" in one(
        errs, "signals[4].initial").message
    assert "finite" in one(errs, "signals[5].min").message
    assert "15 bytes" in one(errs, "signals[6].unit").message


def test_duplicate_names() -> None:
    text = """\
        instance: t
        signals:
          - {name: a, type: bool}
          - {name: a, type: float}
        blocks:
          - {name: k, type: TEST_NOT, inputs: {in: a}}
          - {name: k, type: TEST_NOT, inputs: {in: a}}
    """
    errs = errors(text)
    e = one(errs, "signals[1].name")
    assert at(e) == pos(text, 4, "a,")
    assert "duplicate signal name 'a' (first defined at line 3)" in e.message
    assert "duplicate block name 'k'" in one(errs, "blocks[1].name").message


def test_owner_derived_and_checked() -> None:
    plant = load(SIGNALS + "  - {name: k, type: TEST_NOT, inputs: {in: a}, outputs: {out: b}}\n")
    owners = {d.name: d.owner for d in plant.signal_defs()}
    assert owners["b"] == "scan" and owners["a"] == ""
    text = """\
        instance: t
        signals:
          - {name: a, type: bool}
          - {name: b, type: bool, owner: "driver:plc1"}
        blocks:
          - {name: k, type: TEST_NOT, inputs: {in: a}, outputs: {out: b}}
    """
    errs = errors(text)
    assert "disagrees with the writer" in one(errs, "signals[1].owner").message


# --------------------------------------------------------------------- blocks

def test_unknown_block_type_with_hint() -> None:
    e = one(errors(SIGNALS + "  - {name: k, type: TEST_NOOT}\n"), "blocks[0].type")
    assert at(e) == (9, 21) and "unknown block type 'TEST_NOOT'; did you mean 'TEST_NOT'?" in (
        e.message)


def test_unknown_signal_with_hint() -> None:
    text = with_blocks("""\
          - name: k
            type: TEST_NOT
            inputs: {in: aa}
            outputs: {out: zzz}
    """)
    errs = errors(text)
    e = one(errs, "blocks[0].inputs.in")
    assert at(e) == (11, 18) and "unknown signal 'aa'; did you mean 'a'?" in e.message
    e = one(errs, "blocks[0].outputs.out")
    assert at(e) == (12, 20) and e.message == "unknown signal 'zzz'"


def test_port_signal_type_mismatch() -> None:
    text = with_blocks("""\
          - {name: k, type: TEST_NOT, inputs: {in: x}, outputs: {out: y}}
          - {name: g, type: TEST_GT, inputs: {in1: a, in2: n}, outputs: {out: b}}
    """)
    errs = errors(text)
    e = one(errs, "blocks[0].inputs.in")
    assert at(e) == pos(text, 9, "x}") and "takes bool, but signal 'x' is float" in e.message
    assert "gives bool, but signal 'y' is float" in one(errs, "blocks[0].outputs.out").message
    assert "takes int or float, but signal 'a' is bool" in one(
        errs, "blocks[1].inputs.in1").message


def test_constant_of_wrong_type() -> None:
    text = with_blocks("""\
          - {name: g, type: TEST_GT, inputs: {in1: true, in2: 2}, outputs: {out: b}}
          - {name: k, type: TEST_NOT, inputs: {in: 1}, outputs: {out: a}}
          - {name: p, type: TEST_PID, inputs: {pv: x, sp: 2, enable: [1]}}
    """)
    errs = errors(text)
    e = one(errs, "blocks[0].inputs.in1")
    assert at(e) == pos(text, 9, "true") and "got constant true" in e.message
    assert "takes bool, got constant 1" in one(errs, "blocks[1].inputs.in").message
    assert "signal name or a constant" in one(errs, "blocks[2].inputs.enable").message
    assert not [e for e in errs if e.key_path == "blocks[2].inputs.sp"]  # int on float: fine


def test_unknown_ports() -> None:
    text = with_blocks("""\
          - {name: k, type: TEST_NOT, inputs: {inn: a, bogus: b}, outputs: {ot: b}}
    """)
    errs = errors(text)
    e = one(errs, "blocks[0].inputs.inn")
    assert at(e) == (9, 40) and "unknown input 'inn' of TEST_NOT; did you mean 'in'?" in e.message
    assert "TEST_NOT has inputs in" in one(errs, "blocks[0].inputs.bogus").message
    assert "unknown output 'ot'" in one(errs, "blocks[0].outputs.ot").message


def test_missing_required_input_is_an_error_default_is_filled() -> None:
    errs = errors(SIGNALS + "  - {name: p, type: TEST_PID, inputs: {pv: x}, params: {kp: 1}}\n")
    e = one(errs, "blocks[0].inputs")
    assert at(e) == (9, 31) and "missing required input 'sp' of TEST_PID (float)" in e.message
    plant = load(SIGNALS + "  - {name: p, type: TEST_PID, inputs: {pv: x, sp: x}, "
                           "outputs: {out: y}, params: {kp: 1}}\n")
    assert plant.block("p").inputs["enable"] == Const(True)


def test_unconnected_outputs() -> None:
    plant = load(SIGNALS + "  - {name: p, type: TEST_NOT, inputs: {in: a}}\n")
    w = [w for w in plant.warnings if w.key_path == "blocks[0]"]
    assert len(w) == 1 and "no output connected" in w[0].message


def test_variadic_input_count() -> None:
    text = with_blocks("""\
          - {name: k1, type: TEST_AND, inputs: {in1: a, in2: b, in5: a}}
          - {name: k2, type: TEST_AND, inputs: {in1: a, in3: a}}
          - {name: k3, type: TEST_AND, inputs: {in1: a}}
          - {name: k4, type: TEST_AND, inputs: {in0: a, in1: a, in2: a}}
    """)
    errs = errors(text)
    e = one(errs, "blocks[0].inputs")
    assert at(e) == pos(text, 9, "inputs") and "takes 2..4 inputs in1..inN, got N = 5" in (
        e.message)
    assert "missing required input 'in2'" in one(errs, "blocks[1].inputs").message
    assert "takes 2..4 inputs in1..inN, got N = 1" in one(errs, "blocks[2].inputs").message
    assert "unknown input 'in0'" in one(errs, "blocks[3].inputs.in0").message
    plant = load(SIGNALS + "  - {name: k, type: TEST_AND, inputs: {in1: a, in2: a, in3: false},"
                           " outputs: {out: b}}\n")
    assert plant.block("k").n_inputs == 3


def test_params_errors() -> None:
    text = with_blocks("""\
          - name: p
            type: TEST_PID
            inputs: {pv: x, sp: y}
            outputs: {out: x}
            params: {kpp: 1, ti: -1, ts: 0, mode: auot, n: 2.0, reverse: 1}
          - name: q
            type: TEST_PID
            inputs: {pv: x, sp: y}
            params: {ts: 11}
    """)
    errs = errors(text)
    e = one(errs, "blocks[0].params.kpp")
    assert at(e) == pos(text, 13, "kpp")
    assert "unknown parameter 'kpp' of TEST_PID; did you mean 'kp'?" in e.message
    assert "missing required parameter 'kp' of TEST_PID (a number)" in one(
        errs, "blocks[0].params").message
    assert "must be >= 0, got -1" in one(errs, "blocks[0].params.ti").message
    assert "must be > 0, got 0" in one(errs, "blocks[0].params.ts").message
    assert "must be one of auto, manual, got 'auot'; did you mean 'auto'?" in one(
        errs, "blocks[0].params.mode").message
    assert "takes an int, got 2.0" in one(errs, "blocks[0].params.n").message
    assert "takes a bool, got 1" in one(errs, "blocks[0].params.reverse").message
    assert "must be <= 10, got 11" in one(errs, "blocks[1].params.ts").message


def test_two_writers() -> None:
    text = with_blocks("""\
          - {name: k1, type: TEST_NOT, inputs: {in: a}, outputs: {out: b}}
          - {name: k2, type: TEST_NOT, inputs: {in: a}, outputs: {out: b}}
    """)
    errs = errors(text)
    e = one(errs, "blocks[1].outputs.out")
    assert at(e) == pos(text, 10, "b}")
    assert "two writers: block 'k2' and block 'k1' at line 9" in e.message


def test_algebraic_loop() -> None:
    text = with_blocks("""\
          - {name: first, type: TEST_MOVE, inputs: {in: y}, outputs: {out: x}}
          - {name: free, type: TEST_NOT, inputs: {in: a}, outputs: {out: b}}
          - {name: second, type: TEST_ADD, inputs: {in1: x, in2: 1}, outputs: {out: y}}
    """)
    errs = errors(text)
    e = one(errs, "blocks[0]")
    assert at(e) == (9, 5)
    assert "algebraic loop: first -> second -> first" in e.message


def test_self_loop_and_two_loops() -> None:
    text = with_blocks("""\
          - {name: s, type: TEST_NOT, inputs: {in: a}, outputs: {out: a}}
          - {name: p, type: TEST_MOVE, inputs: {in: x}, outputs: {out: y}}
          - {name: q, type: TEST_MOVE, inputs: {in: y}, outputs: {out: n}}
          - {name: r, type: TEST_MOVE, inputs: {in: n}, outputs: {out: x}}
    """)
    errs = errors(text)
    assert "algebraic loop: s -> s" in one(errs, "blocks[0]").message
    e = one(errs, "blocks[1]")
    assert at(e) == (10, 5) and "p -> q -> r -> p" in e.message


def test_loop_through_delay_block_is_fine_and_ordered() -> None:
    plant = load(with_blocks("""\
          - {name: use, type: TEST_MOVE, inputs: {in: y}, outputs: {out: n}}
          - {name: calc, type: TEST_ADD, inputs: {in1: y, in2: 1}, outputs: {out: x}}
          - {name: z1, type: TEST_DELAY, inputs: {in: x}, outputs: {out: y}}
    """))
    # calc -> z1 -> calc is a loop through a delay; the edge out of z1 into calc is dropped,
    # the edge z1 -> use is not part of a cycle and is kept: use runs after z1.
    assert plant.order == ["calc", "z1", "use"]


def test_delay_block_outside_a_loop_runs_before_its_readers() -> None:
    plant = load(with_blocks("""\
          - {name: reader, type: TEST_MOVE, inputs: {in: y}, outputs: {out: n}}
          - {name: z1, type: TEST_DELAY, inputs: {in: x}, outputs: {out: y}}
    """))
    assert plant.order == ["z1", "reader"]


def test_order_is_topological_with_stable_ties() -> None:
    plant = load(with_blocks("""\
          - {name: c, type: TEST_NOT, inputs: {in: b}, outputs: {out: a}}
          - {name: free1, type: TEST_MOVE, inputs: {in: x}}
          - {name: b1, type: TEST_GT, inputs: {in1: x, in2: 1}, outputs: {out: b}}
          - {name: free2, type: TEST_COUNT, outputs: {out: n}}
    """))
    assert plant.order == ["free1", "b1", "c", "free2"]


# --------------------------------------------------------------------- warnings

def test_signal_warnings() -> None:
    plant = load("""\
        instance: t
        signals:
          - {name: unused, type: bool}
          - {name: never_written, type: bool}
          - {name: op, type: bool, writable: true}
          - {name: out, type: bool, writable: true}
        blocks:
          - {name: k, type: TEST_AND, inputs: {in1: never_written, in2: op}, outputs: {out: out}}
    """)
    by_key = {w.key_path: w for w in plant.warnings}
    assert "never read or written" in by_key["signals[0]"].message
    assert at(by_key["signals[0]"]) == (3, 5)
    assert "nothing writes it" in by_key["signals[1]"].message
    assert "operator's value will be overwritten" in by_key["signals[3].writable"].message
    assert "signals[2]" not in by_key
    assert [w.line for w in plant.warnings] == sorted(w.line or 0 for w in plant.warnings)


# --------------------------------------------------------------------- all at once

def test_all_errors_of_a_file_at_once_sorted() -> None:
    with pytest.raises(ConfigErrors) as info:
        load_plant(FIXTURES / "invalid_many.yaml", specs=SPECS)
    errs = info.value.errors
    got = [(e.line, e.column, e.key_path) for e in errs]
    assert got == [
        (1, 11, "instance"),
        (3, 11, "scan.period"),
        (4, 3, "scan.polcy"),
        (6, 37, "signals[0].initial"),
        (7, 12, "signals[1].name"),
        (8, 21, "signals[2].type"),
        (12, 25, "blocks[0].inputs.sp"),
        (13, 18, "blocks[0].params.kp"),
        (15, 11, "blocks[1].type"),
    ]
    text = str(info.value).splitlines()
    assert text[0].startswith(str(FIXTURES / "invalid_many.yaml") + ":1:11: instance: ")
    assert len(text) == len(errs)


def test_bad_entry_lends_its_name() -> None:
    text = """\
        instance: t
        signals:
          - {name: a, type: real}
          - {name: b, type: bool}
        blocks:
          - {name: k, type: TEST_NOT, inputs: {in: a}, outputs: {out: b}}
    """
    errs = errors(text)
    assert [e.key_path for e in errs] == ["signals[0].type"]


def test_config_error_format() -> None:
    e = ConfigError("boom", file="f.yaml", key_path="blocks[3].inputs.pv", line=4, column=7)
    assert str(e) == "f.yaml:4:7: blocks[3].inputs.pv: boom"


def test_not_utf8(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_bytes(b"instance: \xff\n")
    with pytest.raises(ConfigErrors) as info:
        load_plant(p, specs=SPECS)
    assert "not UTF-8" in info.value.errors[0].message


def test_model_dump_round_trip_of_fixture() -> None:
    plant = load_plant(FIXTURES / "valid_demo.yaml", specs=SPECS)
    again = PlantConfig.model_validate(plant.config.model_dump(mode="json"))
    assert again == plant.config


# --------------------------------------------------------------------- drivers

DRIVER_PLANT = """\
instance: t
signals:
  - {name: level, type: float}
  - {name: run, type: bool}
  - {name: count, type: int}
  - {name: cmd, type: float}
blocks:
  - {name: k, type: TEST_MOVE, inputs: {in: run}, outputs: {out: run2}}
drivers:
  - kind: modbus_tcp
    name: plc1
    host: 127.0.0.1
    points:
      - {signal: level, table: holding, address: 0, scale: 0.1}
      - {signal: levl, table: holding, address: 1}
      - {signal: run, table: coil, address: 0}
      - {signal: cmd, table: holding, address: 2, direction: write}
      - {signal: count, table: coil, address: 1}
  - kind: modbus_tcp
    name: plc1
    host: 127.0.0.1
    points:
      - {signal: level, table: input, address: 0, type: float32}
"""


def test_driver_references() -> None:
    errs = errors(DRIVER_PLANT.replace("run2", "cmd"))
    text = DRIVER_PLANT
    e = one(errs, "drivers[0].points[1].signal")
    assert at(e) == pos(text, 15, "levl") and "unknown signal 'levl'; did you mean 'level'?" in (
        e.message)
    e = one(errs, "drivers[0].points[4].signal")
    assert "gives bool here, but signal 'count' is int" in e.message
    # the driver reads 'level' twice (two drivers): the second is the error
    e = one(errs, "drivers[1].points[0].signal")
    assert "two writers: driver 'plc1' and driver 'plc1' at line 14" in e.message
    assert "duplicate driver name 'plc1'" in one(errs, "drivers[1].name").message
    # the block writes 'cmd', which the driver only reads from the segment: one writer
    assert not [x for x in errs if "cmd" in x.message]


def test_driver_and_block_write_one_signal() -> None:
    text = DRIVER_PLANT.replace("run2", "level").split("  - kind: modbus_tcp\n    name: plc1\n"
                                                      "    host: 127.0.0.1\n    points:\n"
                                                      "      - {signal: level, table: input")[0]
    text = text.replace("{signal: levl, table: holding, address: 1}",
                        "{signal: cmd, table: holding, address: 1, direction: write}")
    text = text.replace("{signal: count, table: coil, address: 1}",
                        "{signal: run, table: coil, address: 1, direction: write}")
    errs = errors(text)
    e = one(errs, "drivers[0].points[0].signal")
    assert "two writers: driver 'plc1' and block 'k' at line 8" in e.message


def test_driver_owner_and_structure_errors() -> None:
    plant = load("""\
        instance: t
        signals:
          - {name: level, type: float}
        drivers:
          - kind: modbus_tcp
            name: plc1
            host: 127.0.0.1
            points:
              - {signal: level, table: holding, address: 0, scale: 0.1}
    """)
    assert plant.signal_defs()[0].owner == "driver:plc1"
    assert plant.driver_writers == {"level": "plc1"}
    text = """\
        instance: t
        drivers:
          - kind: modbus_tcp
            name: plc1
            hots: 127.0.0.1
          - {kind: profibus, name: x}
    """
    errs = errors(text)
    e = one(errs, "drivers[0].hots")
    assert at(e) == pos(text, 5, "hots") and "did you mean 'host'?" in e.message
    assert "missing required key 'host'" in one(errs, "drivers[0]").message
    assert one(errs, "drivers[1]").line == 6
