"""Fixtures of the integration tests; the peers themselves live in ``driver_peers.py``."""

from driver_peers import (  # noqa: F401 - re-exported pytest fixtures
    certs,
    make_segment,
    modbus_server,
    mosquitto,
    pty_pair,
    s7_server,
)
