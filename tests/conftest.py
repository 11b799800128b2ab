"""Fixtures for the whole suite.

Every Petra process a test starts appends its actions to an audit log; by default
that is the box's (``/var/lib/petra/audit``). The suite points ``PETRA_DATA_DIR`` at a
directory of its own, so tests never write into the machine's real data directory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session", autouse=True)
def petra_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    before = os.environ.get("PETRA_DATA_DIR")
    path = str(tmp_path_factory.mktemp("petra-data"))
    os.environ["PETRA_DATA_DIR"] = path
    yield path
    if before is None:
        os.environ.pop("PETRA_DATA_DIR", None)
    else:
        os.environ["PETRA_DATA_DIR"] = before
