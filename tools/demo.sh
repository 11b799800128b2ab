#!/usr/bin/env bash
# Install Petra into ./.venv and run the demo plant in the foreground (Ctrl-C stops it).
# Watch it from another terminal with:  .venv/bin/petra-top
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/_env.sh

petra_venv
python -m pip install -q -e . 2>&1 | grep -v -i "warning" || true
echo "demo: starting examples/demo-plant.yaml; in another terminal: .venv/bin/petra-top"
exec petra run examples/demo-plant.yaml "$@"
