#!/usr/bin/env bash
# Runs ctest in BUILD_DIR with the cores shared out as the tests' RESOURCE_GROUPS ask
# (tests/CMakeLists.txt): writes BUILD_DIR/ctest_resources.json, one `cores` slot per core and one
# `waiting` slot, and runs one more test at a time than there are cores. A test that computes
# takes its cores; one that mostly waits (for a network timeout, a dead rank, a stub's sleep)
# takes the waiting slot, so it runs beside the computing ones instead of alone on an idle machine.
# Usage: launch/ctest.sh BUILD_DIR [ctest arguments...]; RF_TEST_CORES (default nproc) sets the
# cores. (Plain `ctest -j N` still works: it runs the waiting tests as one core's work, as before.)
set -euo pipefail
build="${1:?usage: launch/ctest.sh BUILD_DIR [ctest arguments...]}"
shift
[ -d "$build" ] || { echo "ctest.sh: no build folder '$build'" >&2; exit 2; }
build="$(cd "$build" && pwd)"  # (ctest runs inside it and reads the resource file from there)
cores="${RF_TEST_CORES:-$(nproc)}"
[[ "$cores" =~ ^[1-9][0-9]*$ ]] || { echo "ctest.sh: RF_TEST_CORES must be a positive whole number, not '$cores'" >&2; exit 2; }
# The MPI tests take two cores' slots; a one-core machine offers two, so that they can run at all.
slots=$((cores < 2 ? 2 : cores))
spec="$build/ctest_resources.json"
printf '{"version": {"major": 1, "minor": 0}, "local": [{"cores": [{"id": "0", "slots": %d}], "waiting": [{"id": "0", "slots": 1}]}]}\n' \
  "$slots" > "$spec"
cd "$build"
exec ctest --output-on-failure -j "$((slots + 1))" --resource-spec-file "$spec" "$@"
