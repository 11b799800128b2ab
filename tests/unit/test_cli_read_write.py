"""The pure parts of ``petra read`` / ``petra write``: which instance, which signals,
which assignments. The commands themselves run against a real plant in
``tests/integration/test_operator_e2e.py``."""

from __future__ import annotations

import re

import pytest

from petra.cli._target import UsageError, split_instance
from petra.cli.read import select
from petra.cli.write import parse_assignments
from petra.config import parse_scalar
from petra.errors import PetraError, UnknownSignalError

RUNNING = ["demo", "line2"]


def test_instance_from_option_first_word_or_the_only_one() -> None:
    assert split_instance(["a=1"], "line2", RUNNING, is_instance=False) == ("line2", ["a=1"])
    assert split_instance(["demo", "a=1"], None, RUNNING, is_instance=True) == (
        "demo", ["a=1"])
    assert split_instance(["a=1"], None, ["demo"], is_instance=False) == ("demo", ["a=1"])
    # a first word that is not a running instance is a signal pattern
    assert split_instance(["tank.*"], None, ["demo"], is_instance=True) == ("demo", ["tank.*"])
    with pytest.raises(UsageError, match="2 instances are running"):
        split_instance(["a=1"], None, RUNNING, is_instance=False)
    with pytest.raises(PetraError, match="no running Petra instance"):
        split_instance(["a=1"], None, [], is_instance=False)


def test_assignments() -> None:
    assert parse_assignments(["a=1", "b = true", "c=-2.5e3"]) == [
        ("a", "1"), ("b", "true"), ("c", "-2.5e3")]
    for bad in ("a", "=1", "a=", " = "):
        with pytest.raises(UsageError, match="expected SIGNAL=VALUE"):
            parse_assignments([bad])


@pytest.mark.parametrize(("text", "value"), [
    ("true", True), ("FALSE", False), ("12", 12), ("-3", -3), ("0x1f", 31), ("2.5", 2.5),
    ("1e3", 1000.0), ("-inf", float("-inf")), ("  7 ", 7)])
def test_values_read_as_in_the_plant_file(text: str, value: object) -> None:
    got = parse_scalar(text)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize("text", ["on", "yes", "abc", "", "1,5", "2024-01-01", "1:30"])
def test_what_is_not_a_value(text: str) -> None:
    with pytest.raises(ValueError, match="not a value"):
        parse_scalar(text)


def test_nan_is_a_value_for_the_writer_to_refuse() -> None:
    nan = parse_scalar("nan")
    assert isinstance(nan, float) and nan != nan  # noqa: PLR0124


def test_select_names_and_globs_in_slot_order() -> None:
    names = ["plant.start", "tank.level", "tank.level_sp", "pump.flow"]
    assert select(names, []) == names
    assert select(names, ["tank.*", "plant.start"]) == ["plant.start", "tank.level",
                                                        "tank.level_sp"]
    with pytest.raises(UnknownSignalError, match=re.escape("did you mean tank.level")):
        select(names, ["tank.levle"])
    with pytest.raises(UnknownSignalError, match=re.escape("no signal matches 'valve.*'")):
        select(names, ["valve.*"])
