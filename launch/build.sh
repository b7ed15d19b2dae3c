#!/usr/bin/env bash
# Configures (once) and builds the project into build/ with all cores.
# RF_BUILD_DIR overrides the build folder; extra arguments go to CMake at configure time;
# RF_BUILD_TARGET builds one target and what it needs (launch/train.sh: the trainer, not the tests).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${RF_BUILD_DIR:-$root/build}"
mkdir -p "$build"
# A configure that failed (a library missing before launch/setup.sh ran) leaves a cache but no
# build files: configure again then, from a clean cache, so the retry is not stuck on the failure.
if [ ! -f "$build/build.ninja" ] && [ ! -f "$build/Makefile" ]; then
  rm -rf "$build/CMakeCache.txt" "$build/CMakeFiles"
  echo "build: configuring in $build"
  # Ninja (launch/setup.sh installs it) compiles a target's sources while the libraries it links
  # are still building; make waits for each library first (a 2-core build spent 80 s compiling
  # the two CUDA files alone). An existing build folder keeps the generator it was made with.
  if [ -z "${CMAKE_GENERATOR:-}" ] && command -v ninja > /dev/null; then export CMAKE_GENERATOR=Ninja; fi
  if ! cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release "$@" > "$build/configure.log" 2>&1; then
    cat "$build/configure.log" >&2
    echo "build: CMake configuration failed (log above, also in $build/configure.log)" >&2
    exit 1
  fi
  grep -E "CUDA executor" "$build/configure.log" || true
fi
target_args=()
[ -z "${RF_BUILD_TARGET:-}" ] || target_args=(--target "$RF_BUILD_TARGET")
if ! cmake --build "$build" -j "$(nproc)" ${target_args[@]+"${target_args[@]}"} 2>&1 |
  sed -u '/Built target/d; /Consolidate compiler/d'; then
  echo "build: compilation failed" >&2
  exit 1
fi
