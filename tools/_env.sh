# Shared by tools/demo.sh and tools/test.sh (sourced, not run): apt packages and the
# project's .venv, with what the C core's build needs (gcc, Python headers).

petra_sudo() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Install the given Debian packages that are not installed yet.
petra_apt_install() {
  local missing=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  ((${#missing[@]})) || return 0
  echo "petra: installing ${missing[*]}"
  petra_sudo apt-get update -qq
  petra_sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
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
      "$py" -m venv .venv 2>/dev/null || { petra_apt_install python3-venv; "$py" -m venv .venv; }
    fi
    # shellcheck disable=SC1091
    . .venv/bin/activate
  fi
  python -m pip install -q --upgrade pip 2>&1 | grep -v -i "warning" || true
}
