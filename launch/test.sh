#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, runs every test with ctest in parallel.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/launch/setup.sh"
"$root/launch/build.sh"
# The interoperability tests read exported files with transformers and tensorboard.
export RF_TEST_PYTHON="$("$root/launch/python_env.sh")"
cd "${RF_BUILD_DIR:-$root/build}"
ctest --output-on-failure -j "$(nproc)" "$@"
