# Shared by tools/demo.sh and tools/test.sh (sourced, not run): apt packages and the
# project's .venv, with what the C core's build needs (gcc, Python headers).
#
# Output: one progress line per step that takes time; pip's own output goes to
# .venv/petra-install.log and is shown only when a step fails (then the script stops).

petra_sudo() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

petra_say() { printf '%s: %s\n' "${PETRA_TOOL:-petra}" "$*"; }

# Install the given Debian packages that are not installed yet.
petra_apt_install() {
  local missing=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  ((${#missing[@]})) || return 0
  petra_say "installing ${missing[*]} (apt)"
  petra_sudo apt-get update -qq
  petra_sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# Run a command with its output in the install log; on failure show the log's end.
petra_logged() {
  local log=${VIRTUAL_ENV:-.venv}/petra-install.log
  if ! "$@" >>"$log" 2>&1; then
    petra_say "failed: $*"
    tail -n 30 "$log" >&2
    petra_say "the whole output is in $log"
    return 1
  fi
}

# Create (if needed) and activate .venv with ${PYTHON:-python3}; an already active
# virtualenv is used as it is.
petra_venv() {
  local py=${PYTHON:-python3}
  command -v gcc >/dev/null 2>&1 || petra_apt_install gcc
  if ! "$py" -c 'import os, sysconfig; raise SystemExit(not os.path.exists(
        os.path.join(sysconfig.get_paths()["include"], "Python.h")))' 2>/dev/null; then
    petra_apt_install python3-dev
  fi
  if [ -z "${VIRTUAL_ENV:-}" ]; then
    if [ ! -x .venv/bin/python ]; then
      petra_say "creating .venv ($("$py" --version 2>&1))"
      "$py" -m venv .venv 2>/dev/null || { petra_apt_install python3-venv; "$py" -m venv .venv; }
      # shellcheck disable=SC1091
      . .venv/bin/activate
      petra_logged python -m pip install --upgrade pip
    else
      # shellcheck disable=SC1091
      . .venv/bin/activate
    fi
  fi
}

# What an install depends on: a change here (or another Python, or other extras)
# means pip must run again; anything else is picked up by the editable install.
petra_build_hash() {
  {
    python -c 'import sys; print(sys.version)'
    printf 'extras=%s\n' "$1"
    cat pyproject.toml setup.py MANIFEST.in petra/_native_build.py csrc/*.h csrc/*.c
  } | sha256sum | cut -d' ' -f1
}

# Install petra (editable) with the given extras ("" or "test", "plot", ...), unless
# the stamp says this exact install is already there. The C core is built in place.
petra_install() {
  local extras=$1 stamp=$VIRTUAL_ENV/petra-install.stamp want spec=.
  want=$(petra_build_hash "$extras")
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
      && compgen -G 'petra/_native*.so' >/dev/null && [ -x "$VIRTUAL_ENV/bin/petra" ]; then
    petra_say "petra is installed and up to date ($VIRTUAL_ENV)"
    return 0
  fi
  [ -n "$extras" ] && spec=".[$extras]"
  local t0=$SECONDS
  petra_say "installing Python dependencies${extras:+ and extras [$extras]} (first time: a minute or two) ..."
  # The build requirements go into the venv too, so the build below needs no
  # isolated environment (faster, and no second download of setuptools and cffi).
  python - "$extras" >"$VIRTUAL_ENV/petra-requirements.txt" <<'EOF'
import sys, tomllib
with open("pyproject.toml", "rb") as f:
    data = tomllib.load(f)
reqs = list(data["build-system"]["requires"]) + list(data["project"]["dependencies"])
for extra in filter(None, sys.argv[1].split(",")):
    reqs += data["project"]["optional-dependencies"][extra]
print("\n".join(reqs))
EOF
  petra_logged python -m pip install -r "$VIRTUAL_ENV/petra-requirements.txt"
  petra_say "building the C core and installing petra ..."
  petra_logged python -m pip install --no-deps --no-build-isolation -e "$spec"
  python -c "import petra._native" || { petra_say "the C core did not build"; return 1; }
  echo "$want" >"$stamp"
  petra_say "installed in $((SECONDS - t0)) s"
}
