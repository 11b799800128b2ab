"""``petra check`` exit codes and output; the committed JSON Schema and docs/config.md
checked against the models so neither can drift."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from petra.blocks import _spec
from petra.cli import main
from petra.config import block_specs, load_plant_text
from petra.config._models import OWN_MODELS, PlantConfig
from petra.config._schema import plant_json_schema, render_schema

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures" / "configs"
VALID = FIXTURES / "valid_demo.yaml"
INVALID = FIXTURES / "invalid_many.yaml"


@pytest.fixture
def test_specs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the block types the fixtures use, for this test only."""
    from test_config import SPECS  # the sibling module's test doubles

    for name, spec in SPECS.items():
        monkeypatch.setitem(_spec._REGISTRY, name, spec)


def test_check_valid_exit_0_and_summary(test_specs: None,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(VALID)]) == 0
    out, err = capsys.readouterr()
    assert "valid plant 'demo'" in out
    assert "signals: 8 (bool 3, float 4, int 1)" in out
    assert "TEST_PID 1" in out and "drivers: 0" in out
    assert "execution order: level_model, level_ctl, valve_lag, high, alarm, counter" in out
    assert err == ""


def test_check_valid_json(test_specs: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--json", str(VALID)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["valid"] is True and result["schema"] == 1 and result["errors"] == []
    s = result["summary"]
    assert s["signals"] == {"float": 4, "bool": 3, "int": 1}
    assert s["order"][0] == "level_model" and s["scan"]["period_ns"] == 10_000_000
    assert len(s["source_hash"]) == 64


def test_check_invalid_exit_1_errors_on_stderr(test_specs: None,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(INVALID)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 9
    pattern = re.compile(r"^(.+):(\d+):(\d+): (\S+): (.+)$")
    for line in lines:
        m = pattern.match(line)
        assert m is not None, line
        assert m.group(1) == str(INVALID)
    assert lines[2].endswith("scan.polcy: unknown key 'polcy'; did you mean 'policy'?")


def test_check_invalid_json(test_specs: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--json", str(INVALID)]) == 1
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert result["valid"] is False and result["summary"] is None
    first = result["errors"][0]
    assert (first["line"], first["column"], first["key_path"]) == (1, 11, "instance")
    assert len(err.splitlines()) == len(result["errors"])


def test_check_warnings_go_to_stderr(tmp_path: Path, test_specs: None,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "w.yaml"
    p.write_text("instance: t\nsignals:\n  - {name: lonely, type: bool}\n")
    assert main(["check", str(p)]) == 0
    out, err = capsys.readouterr()
    assert f"{p}:3:5: signals[0]: warning: signal 'lonely' is never read" in err
    assert "warnings: 1" in out
    assert main(["check", "-q", "--no-warnings", str(p)]) == 0
    assert capsys.readouterr() == ("", "")


def test_check_missing_file_is_usage_error(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(tmp_path / "nope.yaml")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["check", str(tmp_path)]) == 2  # a directory


def test_check_exit_codes_as_a_process(tmp_path: Path) -> None:
    """The command scripts run: exit 1 with errors on stderr, 2 for usage errors."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("instance: t\nscan: {period: 1h}\n")
    cmd = [sys.executable, "-m", "petra", "check"]
    r = subprocess.run([*cmd, str(bad)], capture_output=True, text=True, timeout=60,
                       check=False)
    assert r.returncode == 1
    assert r.stderr.startswith(f"{bad}:2:16: scan.period: expected a duration")
    ok = tmp_path / "ok.yaml"
    ok.write_text("instance: t\n")
    r = subprocess.run([*cmd, str(ok)], capture_output=True, text=True, timeout=60,
                       check=False)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([*cmd, str(tmp_path / "missing.yaml")], capture_output=True, text=True,
                       timeout=60, check=False)
    assert r.returncode == 2
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 2


# --------------------------------------------------------------------- schema and docs

def test_committed_schema_is_fresh() -> None:
    committed = (ROOT / "docs" / "schema" / "plant.schema.json").read_text(encoding="utf-8")
    assert committed == render_schema(), "stale schema: run python tools/gen_schema.py"


def test_schema_defaults_are_written_as_users_write_them() -> None:
    scan = plant_json_schema()["$defs"]["ScanConfig"]["properties"]
    assert scan["period"]["default"] == "10ms" and scan["spin"]["default"] == "200us"
    assert scan["grid_offset"]["default"] == "auto"


def _doc_tables() -> dict[str, dict[str, list[str]]]:
    """``<!-- model: Name -->`` -> {key: [cells]} from docs/config.md."""
    text = (ROOT / "docs" / "config.md").read_text(encoding="utf-8")
    tables: dict[str, dict[str, list[str]]] = {}
    for m in re.finditer(r"<!-- model: (\w+) -->\n((?:\|.*\n)+)", text):
        rows: dict[str, list[str]] = {}
        for line in m.group(2).splitlines()[2:]:
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            key = re.fullmatch(r"`([^`]+)`", cells[0])
            assert key is not None, line
            rows[key.group(1)] = cells
        tables[m.group(1)] = rows
    return tables


def _default_cell(value: Any) -> str:
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if value == "":
        return '`""`'
    if isinstance(value, dict | list):
        return f"`{json.dumps(value)}`" if not value else "`{}`"
    return f"`{value}`"


def test_docs_tables_match_the_schema() -> None:
    schema = plant_json_schema()
    tables = _doc_tables()
    assert set(tables) == {m.__name__ for m in OWN_MODELS}
    for model in OWN_MODELS:
        node = schema if model is PlantConfig else schema["$defs"][model.__name__]
        props: dict[str, Any] = node["properties"]
        required = set(node.get("required", []))
        rows = tables[model.__name__]
        assert set(rows) == set(props), (
            f"{model.__name__}: undocumented {sorted(set(props) - set(rows))}, "
            f"not in the schema {sorted(set(rows) - set(props))}")
        for key, prop in props.items():
            default_cell = rows[key][2]
            if key in required:
                assert default_cell == "required", (model.__name__, key)
            elif "default" in prop:
                assert default_cell == _default_cell(prop["default"]), (model.__name__, key)
            else:  # default_factory: an empty list or mapping
                assert default_cell in ("`[]`", "`{}`"), (model.__name__, key)


def test_docs_example_is_a_valid_plant() -> None:
    """The example at the top of docs/config.md validates against the built-in blocks."""
    specs = block_specs()
    needed = {"PID", "SCALE", "TANK", "TON"}
    assert needed <= set(specs), f"built-ins missing: {sorted(needed - set(specs))}"
    text = (ROOT / "docs" / "config.md").read_text(encoding="utf-8")
    m = re.search(r"```yaml\n(instance: demo.*?)```", text, re.S)
    assert m is not None
    plant = load_plant_text(m.group(1), "docs/config.md", specs=specs)
    assert plant.order == ["level_ctl", "valve", "tank", "high"] and plant.warnings == []
