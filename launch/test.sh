#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, runs every test with ctest in parallel.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/launch/setup.sh"
build="${RF_BUILD_DIR:-$root/build}"
# The interoperability tests read exported files with transformers and tensorboard. Their Python
# environment (mostly downloads: ~25 s at half a core's use on two cores) is made while the build
# compiles.
mkdir -p "$build"
"$root/launch/python_env.sh" > "$build/python_env.out" 2> "$build/python_env.log" &
python_env=$!
trap 'kill "$python_env" 2> /dev/null || true' EXIT
"$root/launch/build.sh"
if ! wait "$python_env"; then
  cat "$build/python_env.log" >&2
  echo "test: making the Python environment failed (launch/python_env.sh; log above)" >&2
  exit 1
fi
trap - EXIT
cat "$build/python_env.log" >&2
RF_TEST_PYTHON="$(tail -1 "$build/python_env.out")"
export RF_TEST_PYTHON
# The longest tests first (tests/test_costs.txt), where this build folder has no times of its own.
"$root/launch/test_costs.py" seed "$build" plain
# ctest in parallel, the tests that mostly wait beside those that compute (launch/ctest.sh).
exec "$root/launch/ctest.sh" "$build" "$@"
