#!/usr/bin/env bash
# The GPU bundle's scripts without a GPU: launch/gpu-bundle-run.sh (the bundle's run.sh) picks the
# machine's loader or the bundle's by glibc version, and launch/gpu-check.sh runs its stages in
# order of importance, reruns a failing selftest with blocking launches, honours RF_CHECK_ONLY,
# RF_CHECK_SKIP and the budget, writes the throughput rows to gpu.jsonl and packs the results. The
# bundle's programs are stubs that record how they were called.
set -euo pipefail
# shellcheck source=tests/shell_test_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/shell_test_lib.sh"

bundle="$tmp/bundle"
mkdir -p "$bundle/bin" "$bundle/lib/glibc"
cp "$root/launch/gpu-bundle-run.sh" "$bundle/run.sh"
cp "$root/launch/gpu-check.sh" "$bundle/gpu-check.sh"

# --- run.sh: the loader
if [ "$(uname -m)" = x86_64 ] && [ -e /lib64/ld-linux-x86-64.so.2 ]; then
  cp "$(command -v readlink)" "$bundle/bin/readlink"
  cp -L /lib64/ld-linux-x86-64.so.2 "$bundle/lib/glibc/"
  echo 0.1 > "$bundle/lib/glibc/VERSION"  # built with an older glibc than this machine's
  [ "$("$bundle/run.sh" readlink /proc/self/exe)" = "$bundle/bin/readlink" ] ||
    fail "run.sh: a machine with a newer glibc should run the program with its own loader"
  echo 999.0 > "$bundle/lib/glibc/VERSION"  # built with a newer one
  [ "$("$bundle/run.sh" readlink /proc/self/exe)" = "$bundle/lib/glibc/ld-linux-x86-64.so.2" ] ||
    fail "run.sh: a machine with an older glibc should run the program with the bundle's loader"
  rm "$bundle/bin/readlink" "$bundle/lib/glibc/ld-linux-x86-64.so.2"
else
  echo "note: not x86-64 with /lib64/ld-linux-x86-64.so.2: the loader choice is not checked"
fi
if "$bundle/run.sh" no_such_program 2> "$tmp/err"; then fail "run.sh ran a missing program"; fi
expect_in "$tmp/err" "no program 'no_such_program'" "run.sh: the error should name the program"

# --- gpu-check.sh on stubs (the machine's loader: they are scripts)
echo 0.1 > "$bundle/lib/glibc/VERSION"
stub() {  # stub NAME BODY: a program of the bundle that logs its arguments, then runs BODY
  printf '#!/usr/bin/env bash\necho "%s $*" >> "$STUB_LOG"\n%s\n' "$1" "$2" > "$bundle/bin/$1"
  chmod +x "$bundle/bin/$1"
}
stub reformer 'echo "blocking=${CUDA_LAUNCH_BLOCKING:-0}"
[[ " $* " == *" --precision ${STUB_FAILING_PRECISION:-none} "* ]] && exit 1
echo "selftest: all passed"'
stub gpu_test 'echo "[  PASSED  ] 9 tests."'
stub step_bench 'sleep "${STUB_STEP_S:-0}"; echo "{\"stub\": \"$*\"}"; echo "timing on stderr" >&2'
stub attention_bench 'echo "{\"forward_ms\": 1}"'
export STUB_LOG="$tmp/calls.log"
export RF_CHECK_SKIP='^(machine|reformer-pytorch|dense|ncu)'  # no Python or Nsight needed

# Everything, bf16's selftest failing.
: > "$STUB_LOG"
if STUB_FAILING_PRECISION=bf16 RF_CHECK_PACK="$tmp/pack.tgz" \
  "$root/launch/gpu-check.sh" "$bundle" "$tmp/all" > "$tmp/all.log" 2>&1; then
  fail "gpu-check.sh: a failing selftest should make the run fail"
fi
mapfile -t order < <(grep -oE '^== [a-z0-9-]+' "$tmp/all.log" | cut -c4-)
[ "${order[*]:0:5}" = "selftest-fp32 selftest-bf16 selftest-bf16-blocking gpu-test ours-4k-fp32" ] ||
  fail "gpu-check.sh: stages ran in the order ${order[*]:0:5}"
expect_in "$tmp/all/selftest-bf16-blocking.txt" "blocking=1" \
  "the failing selftest's rerun should wait for every launch"
[ ! -e "$tmp/all/selftest-fp32-blocking.txt" ] || fail "a passing selftest was run again"
rows="$(grep -c '^{"stub"' "$tmp/all/gpu.jsonl" || true)"
ours="$(grep "^step_bench .*reference.yaml --steps 5" "$STUB_LOG" | grep -c -v profile-ops || true)"
[ "$rows" -eq "$ours" ] && [ "$rows" -ge 20 ] ||
  fail "gpu.jsonl holds $rows rows for $ours throughput runs"
! grep -q "timing on stderr" "$tmp/all/gpu.jsonl" || fail "a program's stderr reached gpu.jsonl"
expect_in "$tmp/all/ours-64k-bf16-unchunked.txt" "timing on stderr" "a row's stderr goes to its stage file"
expect_in "$STUB_LOG" "^step_bench .*train.seq_len=65536 .*model.ff_chunk=0 --set model.head_chunk=0" \
  "the unchunked 64K row should set both chunks to 0"
expect_in "$STUB_LOG" "^step_bench .*model.d_model=1024 .*model.n_layers=12" "the paper-size model's rows"
for skipped in reformer-pytorch-64k-fp32 dense-16k-bf16 machine; do
  [ ! -e "$tmp/all/$skipped.txt" ] || fail "RF_CHECK_SKIP did not skip $skipped"
done
tar -tzf "$tmp/pack.tgz" > "$tmp/packed.txt"
expect_in "$tmp/packed.txt" "selftest-bf16-blocking.txt" "the pack should hold every stage's output"
expect_in "$tmp/all/done.txt" "status 1" "done.txt should give the failing status"

# RF_CHECK_ONLY: just the fp32 selftest, which passes.
: > "$STUB_LOG"
RF_CHECK_ONLY='^selftest-fp32$' "$root/launch/gpu-check.sh" "$bundle" "$tmp/only" > "$tmp/only.log" 2>&1 ||
  fail "gpu-check.sh: a run whose stages all pass should succeed"
[ "$(wc -l < "$STUB_LOG")" -eq 1 ] || fail "RF_CHECK_ONLY ran $(wc -l < "$STUB_LOG") programs, not 1"

# A budget: rows of 2 s (each estimated at 10-30 s) in 20 s leave the later ones skipped, named
# in skipped.txt.
: > "$STUB_LOG"
STUB_STEP_S=2 RF_CHECK_ONLY='^ours-' "$root/launch/gpu-check.sh" "$bundle" "$tmp/budget" 20 \
  > "$tmp/budget.log" 2>&1 || true
ran="$(grep -c "^step_bench" "$STUB_LOG" || true)"
[ "$ran" -ge 2 ] && [ "$ran" -lt "$ours" ] || fail "within a 20 s budget $ran of $ours rows of 2 s ran"
expect_in "$tmp/budget/skipped.txt" "^skipped ours-[a-z0-9-]+: -?[0-9]+ s of the budget left" \
  "skipped.txt should name the stages the budget left out"
echo "gpu tools: ok"
