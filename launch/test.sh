#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, runs every test with ctest in parallel.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/launch/setup.sh"
# The interoperability tests read exported files with transformers and tensorboard. Their Python
# environment (pip, mostly waiting on the network: 35 s on a clean clone) is made while the build
# runs.
python_out="$(mktemp)"
python_log="$(mktemp)"
"$root/launch/python_env.sh" > "$python_out" 2> "$python_log" &
python_pid=$!
trap 'kill "$python_pid" 2> /dev/null || true; rm -f "$python_out" "$python_log"' EXIT
"$root/launch/build.sh"
if ! wait "$python_pid"; then
  cat "$python_log" >&2
  echo "test: making the Python environment failed (launch/python_env.sh)" >&2
  exit 1
fi
cat "$python_log" >&2
RF_TEST_PYTHON="$(cat "$python_out")"
export RF_TEST_PYTHON
cd "${RF_BUILD_DIR:-$root/build}"
ctest --output-on-failure -j "$(nproc)" "$@"
