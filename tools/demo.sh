#!/usr/bin/env bash
# Install Petra into ./.venv and run the demo plant in the foreground (Ctrl-C stops it).
# Watch it from another terminal with:  .venv/bin/petra-top
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ -z "${VIRTUAL_ENV:-}" ]; then
  if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv 2>/dev/null || {
      SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
      $SUDO apt-get update -qq; $SUDO apt-get install -y -qq python3-venv >/dev/null
      "$PY" -m venv .venv; }
  fi
  # shellcheck disable=SC1091
  . .venv/bin/activate
fi
python -m pip install -q --upgrade pip 2>&1 | grep -v -i "warning" || true
python -m pip install -q -e . 2>&1 | grep -v -i "warning" || true
echo "demo: starting examples/demo-plant.yaml; in another terminal: .venv/bin/petra-top"
exec petra run examples/demo-plant.yaml "$@"
