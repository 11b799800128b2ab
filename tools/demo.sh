#!/usr/bin/env bash
# Install Petra into ./.venv and run the demo plant in the foreground (Ctrl-C stops it).
#
# The first run creates .venv, installs the dependencies and builds the C core (a
# minute or two, with a progress line per step); later runs skip all that unless
# pyproject.toml, setup.py or the C sources changed, and start the plant at once.
# Extra arguments go to `petra run` (e.g. --instance NAME, --health off).
set -euo pipefail
cd "$(dirname "$0")/.."
PETRA_TOOL=demo
. tools/_env.sh

petra_venv
petra_install ""

instance=demo
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case ${args[i]} in
    --instance) instance=${args[i + 1]:-demo} ;;
    --instance=*) instance=${args[i]#--instance=} ;;
  esac
done

cat <<EOF
demo: starting examples/demo-plant.yaml as instance '$instance' (Ctrl-C stops it).
demo: the plant starts stopped. In another terminal, in $(pwd):
        .venv/bin/petra-top                                    # watch it live (q quits, w writes)
        .venv/bin/petra write $instance plant.start=true           # start the pump: the level rises
        .venv/bin/petra write $instance tank.level_sp=4            # move the setpoint (0..5 m)
        .venv/bin/petra read $instance 'tank.*'                    # read values once
      (or '. .venv/bin/activate' once, then plain petra / petra-top)
EOF
exec petra run examples/demo-plant.yaml "$@"
