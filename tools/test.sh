#!/usr/bin/env bash
# Install everything the test suite needs on a Debian machine, then run all of it:
# lint (ruff), types (mypy --strict), and pytest (unit, integration with real peers,
# stress). Extra arguments go to pytest, e.g. `tools/test.sh tests/integration -k modbus`.
set -euo pipefail
cd "$(dirname "$0")/.."

# Real peers the integration tests start themselves on 127.0.0.1 (no services are
# left running): Mosquitto, socat (Modbus RTU over a pty pair), cyclictest, openssl.
APT_PKGS=(mosquitto mosquitto-clients socat rt-tests openssl)
missing=()
for p in "${APT_PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  echo "test.sh: installing ${missing[*]}"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ -z "${VIRTUAL_ENV:-}" ]; then
  if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv 2>/dev/null || {
      SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
      $SUDO apt-get install -y -qq python3-venv >/dev/null; "$PY" -m venv .venv; }
  fi
  # shellcheck disable=SC1091
  . .venv/bin/activate
fi
python -m pip install -q --upgrade pip 2>&1 | grep -v -i "warning" || true
python -m pip install -q -e '.[test]' 2>&1 | grep -v -i "warning" || true
python -c "import petra._native" # the C core built

echo "test.sh: ruff"; ruff check .
echo "test.sh: mypy --strict"; mypy
echo "test.sh: pytest"; python -m pytest "$@"
