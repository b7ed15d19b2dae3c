#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, runs every test with ctest in parallel.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/launch/setup.sh"
"$root/launch/build.sh"
# The interoperability tests read exported files with transformers and tensorboard.
export RF_TEST_PYTHON="$("$root/launch/python_env.sh")"
build="${RF_BUILD_DIR:-$root/build}"
# The longest tests first (tests/test_costs.txt), where this build folder has no times of its own.
"$root/launch/test_costs.py" seed "$build" plain
cd "$build"
ctest --output-on-failure -j "$(nproc)" "$@"
