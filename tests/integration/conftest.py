"""Fixtures of the integration tests; the peers themselves live in ``driver_peers.py``."""

import os
from collections.abc import Iterator

import pytest
from driver_peers import (  # noqa: F401 - re-exported pytest fixtures
    certs,
    make_segment,
    modbus_server,
    mosquitto,
    pty_pair,
    s7_server,
)


@pytest.fixture(scope="session", autouse=True)
def petra_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Every Petra process a test starts appends its actions to an audit log, by
    default the box's (/var/lib/petra/audit): point PETRA_DATA_DIR at the suite's own
    directory so tests never write into the machine's data directory."""
    before = os.environ.get("PETRA_DATA_DIR")
    path = str(tmp_path_factory.mktemp("petra-data"))
    os.environ["PETRA_DATA_DIR"] = path
    yield path
    if before is None:
        os.environ.pop("PETRA_DATA_DIR", None)
    else:
        os.environ["PETRA_DATA_DIR"] = before
