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

# Whether a finding is HDF5's own: HDF5 1.10 itself crashes on some damaged files
# (fuzz/hdf5-crashes/), which no code of ours can prevent; the target is then restarted for the
# rest of its time, and the run is reported, not failed. That is a signal (SEGV, FPE, ...) whose
# first frame below the sanitizer's and libc's (glibc's string functions show as their sources,
# sysdeps/...) is in HDF5, or a memory error there on memory HDF5
# allocated. An overflow of a buffer we passed to HDF5 stays a finding.
first_frame_in_hdf5() {  # reads a report's stack on stdin
  grep -E '^ +#[0-9]+ ' |
    grep -vE 'asan|sanitizer|interceptor|libc\.so|sysdeps/|fuzzer::|operator new| in (malloc|calloc|realloc) ' |
    head -n1 | grep -q 'libhdf5'
}
crashed_inside_hdf5() {
  # (Also libFuzzer's out-of-memory: a single malloc over its limit, e.g. the 4 GB a damaged shard
  # header made HDF5 ask for in CI on 2026-12-02.)
  if grep -qE 'ERROR: libFuzzer: out-of-memory \(malloc' "$1"; then
    grep -m1 -A24 -E 'ERROR: libFuzzer: out-of-memory' "$1" | first_frame_in_hdf5
  elif grep -qE 'ERROR: AddressSanitizer: (SEGV|FPE|BUS|ILL|stack-overflow)' "$1"; then
    grep -m1 -A8 -E 'ERROR: AddressSanitizer' "$1" | first_frame_in_hdf5
  else
    # (A wild access into a redzone has no allocation to name: then the access site decides.)
    grep -m1 -A8 -E 'ERROR: AddressSanitizer: heap-' "$1" | first_frame_in_hdf5 &&
      { ! grep -q 'allocated by thread' "$1" ||
        grep -m1 -A8 -E 'allocated by thread' "$1" | first_frame_in_hdf5; }
  fi
}

# Fuzzes one target for `seconds`; logs build-fuzz/logs/<target>.log (all attempts) and writes
# its verdict to build-fuzz/logs/<target>.verdict: clean, hdf5 (stopped by HDF5 crashes only)
# or bug.
fuzz_one() {
  local target="$1" work="$build/corpus/$1" log="$build/logs/$1.log" verdict=clean
  local seeds=("$root/fuzz/corpus/$target")
  [ -d "$root/fuzz/regressions/$target" ] && seeds+=("$root/fuzz/regressions/$target")
  mkdir -p "$work"
  : > "$log"
  local end=$((SECONDS + seconds))
  while [ $SECONDS -lt $end ]; do
    # -timeout: an input that runs 20 s is a hang; -rss_limit_mb also caps one allocation (a
    # size read from the input that is allocated unchecked is a finding).
    if "$build/fuzz/${target}_fuzzer" -max_total_time=$((end - SECONDS)) -timeout=20 \
      -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$build/artifacts/$target-" \
      "$work" "${seeds[@]}" > "$log.attempt" 2>&1; then
      cat "$log.attempt" >> "$log"
      break
    fi
    cat "$log.attempt" >> "$log"
    if crashed_inside_hdf5 "$log.attempt" && ! grep -q 'rf fuzz:' "$log.attempt"; then
      verdict=hdf5
    else
      verdict=bug
      break
    fi
  done
  rm -f "$log.attempt"
  echo "$verdict" > "$build/logs/$target.verdict"
}
export -f fuzz_one crashed_inside_hdf5 first_frame_in_hdf5
export build root seconds

echo "fuzz: ${#targets[@]} targets x ${seconds} s, $parallel at a time"
status=0
printf '%s\n' "${targets[@]}" | xargs -P "$parallel" -I{} bash -c 'fuzz_one {}' || status=1
for target in "${targets[@]}"; do
  log="$build/logs/$target.log"
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | awk '{n += $1} END {print n}')
  corpus=$(find "$build/corpus/$target" -type f | wc -l)
  case "$(cat "$build/logs/$target.verdict" 2>/dev/null)" in
    clean) verdict="clean" ;;
    hdf5) verdict="clean; HDF5 itself crashed on an input (third-party, build-fuzz/artifacts/)" ;;
    *)
      verdict="FOUND A BUG (build-fuzz/logs/$target.log)"
      status=1
      tail -n 40 "$log"
      ;;
  esac
  printf 'fuzz: %-12s %10s runs  %5s inputs in its corpus  %s\n' "$target" "${runs:-?}" \
    "$corpus" "$verdict"
done
exit $status
