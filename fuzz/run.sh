#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan, CUDA off) in build-fuzz/ and fuzzes each for
# SECONDS, PARALLEL at a time (default 2), starting from the committed seeds (fuzz/corpus/<target>)
# and the inputs that once found bugs (fuzz/regressions/<target>, replayed first). New inputs go to
# build-fuzz/corpus/<target>, a crashing one to build-fuzz/artifacts/. Prints one line per target
# (runs, corpus size, verdict) and fails if any target found something.
# Usage: fuzz/run.sh SECONDS [PARALLEL] [TARGET...]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds="${1:?usage: fuzz/run.sh SECONDS [PARALLEL] [TARGET...]}"
parallel="${2:-2}"
shift $(($# < 2 ? $# : 2))
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(config manifest shard checkpoint safetensors hf_config)
build="${RF_FUZZ_BUILD_DIR:-$root/build-fuzz}"

"$root/launch/setup.sh" fuzz
mkdir -p "$build"
# -DRF_WERROR=OFF: the GCC build holds the warnings at zero; clang warns on GCC's pragmas.
if [ ! -f "$build/CMakeCache.txt" ]; then
  echo "fuzz: configuring $build (clang, RF_FUZZ=ON)"
  if ! cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER=clang \
    -DCMAKE_CXX_COMPILER=clang++ -DRF_CUDA=OFF -DRF_FUZZ=ON -DBUILD_TESTING=OFF -DRF_WERROR=OFF \
    > "$build/configure.log" 2>&1; then
    cat "$build/configure.log" >&2
    echo "fuzz: CMake configuration failed" >&2
    exit 1
  fi
fi
if ! cmake --build "$build" -j "$(nproc)" --target fuzzers 2>&1 |
  sed -u '/Built target/d; /Consolidate compiler/d'; then
  echo "fuzz: build failed" >&2
  exit 1
fi

# allocator_may_return_null: a malloc of a size read from a damaged file (HDF5 asks for 2^64
# bytes: fuzz/regressions/checkpoint/) returns NULL, as it does outside ASan, and the library's
# check of it is what gets tested; `new` of such a size still aborts (a finding).
export ASAN_OPTIONS="detect_leaks=1:strict_string_checks=1:allocator_may_return_null=1"
export LSAN_OPTIONS="suppressions=$root/fuzz/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export OMP_NUM_THREADS=1
mkdir -p "$build/artifacts" "$build/logs"

# Fuzzes one target; its log is build-fuzz/logs/<target>.log.
fuzz_one() {
  local target="$1" work="$build/corpus/$1"
  local seeds=("$root/fuzz/corpus/$target")
  [ -d "$root/fuzz/regressions/$target" ] && seeds+=("$root/fuzz/regressions/$target")
  mkdir -p "$work"
  # -timeout: an input that runs 20 s is a hang; -rss_limit_mb also caps one allocation (a
  # size read from the input that is allocated unchecked is a finding).
  "$build/fuzz/${target}_fuzzer" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$build/artifacts/$target-" "$work" "${seeds[@]}" \
    > "$build/logs/$target.log" 2>&1
}
export -f fuzz_one
export build root seconds

echo "fuzz: ${#targets[@]} targets x ${seconds} s, $parallel at a time"
status=0
printf '%s\n' "${targets[@]}" | xargs -P "$parallel" -I{} bash -c 'fuzz_one {}' || status=1
for target in "${targets[@]}"; do
  log="$build/logs/$target.log"
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
  corpus=$(find "$build/corpus/$target" -type f | wc -l)
  if grep -qE '^(==[0-9]+==ERROR|SUMMARY: |.*runtime error:)|Test unit written to|rf fuzz:' "$log"; then
    verdict="FOUND A BUG (build-fuzz/logs/$target.log)"
    status=1
  else
    verdict="clean"
  fi
  printf 'fuzz: %-12s %10s runs  %5s inputs in its corpus  %s\n' "$target" "${runs:-?}" \
    "$corpus" "$verdict"
done
if [ $status -ne 0 ]; then
  for target in "${targets[@]}"; do
    grep -qE 'Test unit written to|==ERROR|runtime error:|rf fuzz:' "$build/logs/$target.log" &&
      tail -n 40 "$build/logs/$target.log"
  done
fi
exit $status
