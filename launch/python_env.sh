#!/usr/bin/env bash
# The Python environment of the interoperability tests: a virtual environment (by default
# build/python-env) over Debian's python3-torch and python3-numpy, with the pinned packages of
# tests/python-requirements.txt from the Python package registry. Idempotent: quick when the
# environment already holds exactly those pins. Prints the environment's python.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
env_dir="${RF_PYTHON_ENV:-${RF_BUILD_DIR:-$root/build}/python-env}"
requirements="$root/tests/python-requirements.txt"
stamp="$env_dir/requirements.installed"

if [ -x "$env_dir/bin/python" ] && cmp -s "$requirements" "$stamp"; then
  echo "$env_dir/bin/python"
  exit 0
fi
echo "python_env: installing $(grep -v '^#' "$requirements" | awk '{print $1}' | xargs) into $env_dir" >&2
# Debian's interpreter (not one earlier on PATH): its site packages hold python3-torch.
/usr/bin/python3 -m venv --system-site-packages "$env_dir"
"$env_dir/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" >&2
cp "$requirements" "$stamp"
echo "$env_dir/bin/python"
