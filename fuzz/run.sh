#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan, CUDA off) in build-fuzz/ and fuzzes each for
# SECONDS, PARALLEL at a time (default 2), starting from the committed seeds (fuzz/corpus/<target>)
# and the inputs that once found bugs (fuzz/regressions/<target>, replayed first). New inputs go to
# build-fuzz/corpus/<target>, a crashing one to build-fuzz/artifacts/. Prints one line per target
# (runs, corpus size, verdict) and fails if any target found something, printing its report.
# The run is seeded by the commit (or RF_FUZZ_SEED), and the seed is logged: the same seed on the
# same starting corpus makes the same inputs, so a finding in CI (which starts with no
# build-fuzz/corpus) replays with
#   RF_FUZZ_SEED=S RF_FUZZ_BUILD_DIR=/tmp/fresh fuzz/run.sh SECONDS 1 TARGET
# Usage: fuzz/run.sh SECONDS [PARALLEL] [TARGET...]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds="${1:?usage: fuzz/run.sh SECONDS [PARALLEL] [TARGET...]}"
parallel="${2:-2}"
shift $(($# < 2 ? $# : 2))
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(config manifest shard checkpoint safetensors hf_config)
build="${RF_FUZZ_BUILD_DIR:-$root/build-fuzz}"
commit="$(git -C "$root" rev-parse --short=7 HEAD 2> /dev/null || echo 1)"
fuzz_seed="${RF_FUZZ_SEED:-$((16#$commit))}"

"$root/launch/setup.sh" fuzz
mkdir -p "$build"
# -DRF_WERROR=OFF: the GCC build holds the warnings at zero; clang warns on GCC's pragmas.
if [ ! -f "$build/CMakeCache.txt" ]; then
  echo "fuzz: configuring $build (clang, RF_FUZZ=ON)"
  # (Ninja when installed, as launch/build.sh explains.)
  if [ -z "${CMAKE_GENERATOR:-}" ] && command -v ninja > /dev/null; then export CMAKE_GENERATOR=Ninja; fi
  if ! cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER=clang-22 \
    -DCMAKE_CXX_COMPILER=clang++-22 -DRF_CUDA=OFF -DRF_FUZZ=ON -DBUILD_TESTING=OFF -DRF_WERROR=OFF \
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
# The reports are read by function name (a crash inside HDF5 on its own memory is told from ours
# below), so they must be symbolised. clang 22's runtime looks for llvm-symbolizer in its own
# LLVM's folder only: without the llvm-22 package it warned "invalid path to external symbolizer"
# and printed addresses, and a crash inside HDF5 on its own memory then read as a bug of ours.
ASAN_SYMBOLIZER_PATH="$(command -v llvm-symbolizer-22 || true)"
[ -n "$ASAN_SYMBOLIZER_PATH" ] ||
  { echo "fuzz: no llvm-symbolizer-22 (launch/setup.sh fuzz installs llvm-22)" >&2; exit 1; }
export ASAN_SYMBOLIZER_PATH
export OMP_NUM_THREADS=1
mkdir -p "$build/artifacts" "$build/logs"

# Whether a finding is HDF5's own: HDF5 1.10 itself crashes on some damaged files
# (fuzz/hdf5-crashes/), which no code of ours can prevent; the target is then restarted for the
# rest of its time, and the run is reported, not failed. That is a signal (SEGV, FPE, ...) whose
# first frame below the sanitizer's and libc's (glibc's string functions show as their sources,
# sysdeps/...) is in HDF5 or a decompressor it calls (a damaged file can name a deflate or szip
# filter), or a memory error there on memory that code allocated. An overflow of a buffer we
# passed to HDF5 stays a finding.
# ASan's interceptors of the C library, which show under their own names as frames of the fuzzer
# binary (a heap overflow read by HDF5's H5MM_strdup shows `in strdup` first: CI, 2026-12-02).
intercepted='malloc|calloc|realloc|free|strdup|strndup|strlen|strnlen|strcpy|strncpy|strcmp|strncmp|memcpy|memmove|memset|memcmp'
# Whether the first frame of a report's stack (on stdin) below the sanitizer's, libFuzzer's and the
# C library's is in one of the libraries matched by $1.
first_frame_in() {
  grep -E '^ +#[0-9]+ ' |
    grep -vE "asan|sanitizer|interceptor|libc\.so|sysdeps/|fuzzer::|operator new| in ($intercepted) " |
    head -n1 | grep -qE "$1"
}
hdf5_libraries='libhdf5|libz\.so|libsz\.so|libaec\.so'
first_frame_third_party() { first_frame_in "$hdf5_libraries"; }
# The stack under the first line matching $2 in report $1: its frames, up to the blank line after
# them (libFuzzer's out-of-memory report has a note and a blank line before its frames).
stack_after() {
  awk -v pattern="$2" '!on && $0 ~ pattern {on = 1; next}
    on && /^ +#[0-9]+ / {seen = 1; print; next}
    on && seen && /^ *$/ {exit}' "$1"
}
# Whose memory a heap report names (its `allocated by` stack): HDF5's or a library's that no
# pointer of ours reaches into (yaml-cpp's parser buffers: HDF5 read 801 bytes of them, freed by
# an earlier YAML::Load, with an offset from a damaged checkpoint, 2026-12-03). Memory of our own
# code (or of libstdc++ on its behalf) stays a finding.
owned_by_third_party() { first_frame_in "$hdf5_libraries|libyaml-cpp"; }
crashed_inside_hdf5() {
  # (Also libFuzzer's out-of-memory: a single malloc over its limit, e.g. the 4 GB a damaged shard
  # header made HDF5 ask for in CI on 2026-12-02; or the RSS limit, when one allocation holds most
  # of the live heap, e.g. the 1.9 GB of a shard's HDF5 metadata, 2026-12-03.)
  if grep -qE 'ERROR: libFuzzer: out-of-memory \(malloc' "$1"; then
    stack_after "$1" 'ERROR: libFuzzer: out-of-memory' | first_frame_third_party
  elif grep -qE 'ERROR: libFuzzer: out-of-memory \(used' "$1"; then
    grep -m1 -E '^[0-9]+ byte\(s\) \([0-9]+%\) in ' "$1" | grep -qE '\((5[0-9]|[6-9][0-9]|100)%\)' &&
      stack_after "$1" '^[0-9]+ byte\(s\) \([0-9]+%\) in ' | first_frame_third_party
  elif grep -qE 'ERROR: AddressSanitizer: (SEGV|FPE|BUS|ILL|stack-overflow|negative-size-param|memcpy-param-overlap)' "$1"; then
    # (A bad size or overlap passed to memcpy names no memory: the caller decides.)
    stack_after "$1" 'ERROR: AddressSanitizer' | first_frame_third_party
  else
    # (A wild access into a redzone has no allocation to name: then the access site decides.
    # A use after free names where the memory was freed and, after that, where it was allocated.)
    stack_after "$1" 'ERROR: AddressSanitizer: heap-' | first_frame_third_party &&
      { ! grep -q 'allocated by thread' "$1" ||
        stack_after "$1" 'allocated by thread' | owned_by_third_party; }
  fi
}
# The sanitizer's or libFuzzer's report in log $1: from its first line to its SUMMARY line.
print_report() {
  awk '/ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|rf fuzz:/ {on = 1}
       on {print; if (++n >= 120 || /^SUMMARY:/) exit}' "$1"
}

# Replaces report $2 with the report of its crashing input run again with the slow unwinder
# (when that crashes too): the fast one, kept for speed while fuzzing, stops at the first frame
# without a frame pointer, so an allocation or free inside HDF5 shows no caller at all. The
# replay caps single allocations only (-malloc_limit_mb, with its stack): with the RSS limit on
# too, libFuzzer's RSS thread could report over a malloc's report before its stack was printed
# (a 16 GiB malloc inside H5Fopen, 2026-12-02), leaving a finding no one could place.
replay_with_full_stacks() {
  local input
  input=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$2" | tail -n1)
  [ -n "$input" ] && [ -f "$input" ] || return 0
  if ! ASAN_OPTIONS="$ASAN_OPTIONS:fast_unwind_on_malloc=0" \
    "$build/fuzz/${1}_fuzzer" -rss_limit_mb=0 -malloc_limit_mb=2048 "$input" > "$2.replay" 2>&1; then
    mv "$2.replay" "$2"
  fi
  rm -f "$2.replay"
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
  rm -f "$build/logs/$target.finding"
  local end=$((SECONDS + seconds)) seed=$((fuzz_seed))
  while [ $SECONDS -lt $end ]; do
    # -timeout: an input that runs 20 s is a hang; -rss_limit_mb also caps one allocation (a
    # size read from the input that is allocated unchecked is a finding). -seed: the same seed on
    # the same starting corpus makes the same inputs, so a finding can be replayed (see above).
    echo "fuzz: $target -seed=$seed" >> "$log"
    if "$build/fuzz/${target}_fuzzer" -seed="$seed" -max_total_time=$((end - SECONDS)) \
      -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$build/artifacts/$target-" "$work" "${seeds[@]}" > "$log.attempt" 2>&1; then
      cat "$log.attempt" >> "$log"
      break
    fi
    cat "$log.attempt" >> "$log"
    replay_with_full_stacks "$target" "$log.attempt"
    if crashed_inside_hdf5 "$log.attempt" && ! grep -q 'rf fuzz:' "$log.attempt"; then
      verdict=hdf5
      seed=$((seed + 1))
    else
      verdict=bug
      cp "$log.attempt" "$build/logs/$target.finding"
      break
    fi
  done
  rm -f "$log.attempt"
  echo "$verdict" > "$build/logs/$target.verdict"
}
export intercepted hdf5_libraries
# (xargs runs each target in a new bash: every function and variable fuzz_one uses goes with it.)
export -f fuzz_one replay_with_full_stacks print_report crashed_inside_hdf5 first_frame_in \
  first_frame_third_party owned_by_third_party stack_after
export build root seconds fuzz_seed

echo "fuzz: ${#targets[@]} targets x ${seconds} s, $parallel at a time, -seed=$fuzz_seed"
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
      print_report "$build/logs/$target.finding"
      ;;
  esac
  printf 'fuzz: %-12s %10s runs  %5s inputs in its corpus  %s\n' "$target" "${runs:-?}" \
    "$corpus" "$verdict"
done
exit $status
