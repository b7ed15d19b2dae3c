#!/usr/bin/env bash
# The sanitizer runs (README "Static analysis, sanitizers and fuzzing"): builds with GCC's
# sanitizers, CUDA off, in their own build folders, and runs
#   address  AddressSanitizer + UndefinedBehaviorSanitizer: the whole CPU test suite (build-asan)
#   thread   ThreadSanitizer: the tests of the loader thread (BatchStream prefetch) and of the
#            communication thread (gradient buckets averaged while the backward pass runs, under
#            mpirun), build-tsan
# Usage: launch/sanitize.sh [address|thread|all] [ctest arguments...]   (default: all, one after
# the other). A finding fails the test that met it (-fno-sanitize-recover). TEST_TMPDIR and
# RF_SANITIZE_JOBS (the cores ctest shares out: launch/ctest.sh; default nproc) are honoured.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
which="${1:-all}"
[ $# -gt 0 ] && shift
jobs="${RF_SANITIZE_JOBS:-$(nproc)}"
supp="$root/launch/sanitizers"

# Configures (once) and builds `targets` (all when empty) of a sanitizer build in `dir`.
build() {
  local dir="$1" sanitize="$2"
  shift 2
  mkdir -p "$dir"
  if [ ! -f "$dir/CMakeCache.txt" ]; then
    echo "sanitize: configuring $dir (RF_SANITIZE=$sanitize)"
    # (Ninja when installed, as launch/build.sh explains.)
    if [ -z "${CMAKE_GENERATOR:-}" ] && command -v ninja > /dev/null; then export CMAKE_GENERATOR=Ninja; fi
    if ! cmake -S "$root" -B "$dir" -DCMAKE_BUILD_TYPE=Release -DRF_CUDA=OFF \
      -DRF_SANITIZE="$sanitize" > "$dir/configure.log" 2>&1; then
      cat "$dir/configure.log" >&2
      echo "sanitize: CMake configuration of $dir failed" >&2
      exit 1
    fi
  fi
  local target_args=()
  for t in "$@"; do target_args+=(--target "$t"); done
  if ! cmake --build "$dir" -j "$(nproc)" "${target_args[@]}" 2>&1 |
    sed -u '/Built target/d; /Consolidate compiler/d'; then
    echo "sanitize: building $dir failed" >&2
    exit 1
  fi
}

run_address() {
  local dir="${RF_ASAN_BUILD_DIR:-$root/build-asan}"
  build "$dir" "address,undefined"
  # The longest tests first (tests/test_costs.txt): the bf16 sweep of the emulated CUDA kernels
  # alone takes minutes under ASan.
  "$root/launch/test_costs.py" seed "$dir" asan
  # detect_leaks stays on: lsan.supp names the only third-party leaks that are ignored.
  # detect_stack_use_after_return stays off: GCC 12 keeps 64-byte-aligned AVX-512 locals in
  # ASan's fake stack frames, which are only 32-byte aligned, and the kernels' aligned stores
  # then fault (chunk_attention_tiles.cpp, a toolchain limitation, not a bug of ours).
  # allocator_may_return_null: HDF5 asked for 2^64 bytes reading a damaged checkpoint that the
  # suite replays (fuzz/regressions/): as outside ASan, malloc returns NULL and HDF5 fails the
  # call; `new` of an impossible size still aborts.
  export ASAN_OPTIONS="detect_leaks=1:strict_string_checks=1:check_initialization_order=1:allocator_may_return_null=1"
  export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0"
  # Open MPI unloads its components at MPI_Finalize; kept loaded, their leaks name their files
  # (lsan.supp) instead of "<unknown module>".
  export OMPI_MCA_mca_base_component_disable_dlclose=1 PMIX_MCA_mca_base_component_disable_dlclose=1
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
  RF_TEST_PYTHON="$("$root/launch/python_env.sh")"
  export RF_TEST_PYTHON
  echo "sanitize: AddressSanitizer + UndefinedBehaviorSanitizer, the whole test suite"
  # The tests whose processes leak inside Open MPI or HDF5 take ASan's slow unwinder: a test
  # property of an ASan build (tests/CMakeLists.txt, SLOW_UNWINDER), so they share this run.
  # Run in the plain suite only: the learning tests and the network faults across simulated
  # hosts, which a sanitizer build does not even compile (tests/CMakeLists.txt says why);
  # `reformer selftest` (19 s), whose
  # ops Selftest.TheCpuVariantsPassEveryOp checks in both CPU variants under ASan; the checks
  # that the selftest finds planted faults (24 s: three more sweeps of every op; and three bf16
  # sweeps, 127 s under ASan on a 2-core Zen 1 EPYC, 2026-12-06, whose sound sweep
  # Selftest.ABf16CandidatePassesEveryOpWithItsBf16OpsChecked keeps under ASan); and the sweeps
  # of every op on the emulated CUDA kernels in other thread orders (36 and 58 s under ASan,
  # 2026-12-03). The two in ascending order, at fp32 and at bf16, run every kernel under ASan:
  # the bf16 one (175 s under ASan, 2026-12-05) is the only ASan run of the tensor-core attention
  # kernels (which no GPU has run yet) and of the kernels' bf16-writing variants. Also plain only:
  # gpu_tools, which runs stub programs, none of the build's (24 s under ASan), and
  # bench_thread_scaling (18 s), whose step_bench runs under ASan in step_bench_profile_ops; and
  # the start-up verification's fallbacks from planted bf16 and tensor-core faults (39 and 17 s):
  # their executor forwards to the CPU kernels that Selftest.ABf16CandidatePassesEveryOp... and
  # TheCpuVariantsPassEveryOp sweep under ASan, and what they add is the fallback's decisions.
  local plain_only_tests=(
    gpu_tools bench_thread_scaling selftest_cpu
    'Selftest\.AWrongKernelIsFoundAndNamed' 'Selftest\.WrongBf16OperandsAreFoundAndNamed'
    'Selftest\.StartUpVerificationTurnsOffWrongBf16Operands'
    'Selftest\.StartUpVerificationTurnsOffWrongTensorCoreAttention'
    'EmulatedCuda\.TheCudaKernelsPassEverySelftestOpWithTheThreadsAndBlocksReversed'
    'EmulatedCuda\.TheCudaKernelsPassEverySelftestOpWithTheWarpsOneAtATime'
    'EmulatedCuda\.TheCudaKernelsPassEverySelftestOpWithBf16OperandsAndTheWarpsOneAtATime')
  local plain_only
  plain_only="^($(IFS='|'; echo "${plain_only_tests[*]}"))$"
  RF_TEST_CORES="$jobs" "$root/launch/ctest.sh" "$dir" -E "$plain_only" "$@"
}

# The loader thread's tests; a `reformer train` from HDF5 shards, whose loader thread reads them
# while the main thread writes checkpoints (cli_test); and the MPI tests whose communicator thread
# averages gradient buckets during the backward pass (distributed_test trains through a
# prefetching stream too).
tsan_targets=(batch_stream_test cli_test reformer comms_test distributed_test)
tsan_tests='^(BatchStream\.|CommandLine\.PrepareShardsThenTrainFromThem$|comms_test_|distributed_test_)'

run_thread() {
  local dir="${RF_TSAN_BUILD_DIR:-$root/build-tsan}"
  build "$dir" "thread" "${tsan_targets[@]}"
  export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$supp/tsan.supp"
  echo "sanitize: ThreadSanitizer, the loader and communication threads"
  RF_TEST_CORES="$jobs" "$root/launch/ctest.sh" "$dir" -R "$tsan_tests" "$@"
}

case "$which" in
  address) run_address "$@" ;;
  thread) run_thread "$@" ;;
  all)
    status=0
    run_address "$@" || status=1
    run_thread "$@" || status=1
    exit $status
    ;;
  *)
    echo "usage: launch/sanitize.sh [address|thread|all] [ctest arguments...]" >&2
    exit 2
    ;;
esac
