#!/usr/bin/env bash
# Install everything the test suite needs on a Debian machine, then run all of it:
# lint (ruff), types (mypy --strict), and pytest (unit, integration with real peers,
# stress). Extra arguments go to pytest, e.g. `tools/test.sh tests/integration -k modbus`.
set -euo pipefail
cd "$(dirname "$0")/.."
PETRA_TOOL=test
. tools/_env.sh

# Real peers the integration tests start themselves on 127.0.0.1 (no services are
# left running): Mosquitto, socat (Modbus RTU over a pty pair), cyclictest, openssl.
petra_apt_install mosquitto mosquitto-clients socat rt-tests openssl
petra_venv
petra_install test
python -c "import petra._native" # the C core built

# The Debian package test (tests/package, tools/test-package.sh: 5-17 minutes) builds,
# installs, boots and purges the package on this machine: it runs only when asked,
# `PETRA_PACKAGE_TESTS=1 tools/test.sh tests/package`, on a throwaway machine as root
# (CI sets it: .ci/run). Otherwise it reports itself as not enabled.

echo "test.sh: ruff"; ruff check .
echo "test.sh: mypy --strict"; mypy
echo "test.sh: pytest"; python -m pytest "$@"
