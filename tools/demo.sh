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

say() { printf '        %-52s # %s\n' "$1" "$2"; }
echo "demo: starting examples/demo-plant.yaml as instance '$instance' (Ctrl-C stops it)."
echo "demo: the plant starts stopped. In another terminal, in $(pwd):"
top=".venv/bin/petra-top"
[ "$instance" = demo ] || top="$top -i $instance"
say "$top" "watch it live (q quits, w writes)"
say ".venv/bin/petra write $instance plant.start=true" "start the pump: the level rises"
say ".venv/bin/petra write $instance tank.level_sp=4" "move the setpoint (0..5 m)"
say ".venv/bin/petra read $instance 'tank.*'" "read values once"
echo "      (or '. .venv/bin/activate' once, then plain petra and petra-top)"
exec petra run examples/demo-plant.yaml "$@"
