#!/usr/bin/env bash
# The launch scripts' failure paths without SLURM, a GPU or real benchmarks: bench/run.sh replaces
# a suite's results only when the suite completed (a failed or interrupted one leaves the previous
# file as it was), launch/slurm/reformer.sbatch gives train exactly one --resume (the user's own
# if the arguments hold one) and refuses to run outside a SLURM job, and launch/slurm/selftest.sh
# answers --help and refuses other arguments before its root check and before it installs
# anything, and launch/train.sh -n 2 signalled while its ranks start exits as a stop (75, 130). The programs are stubs: the benchmark via RF_BENCH, srun/scontrol/apt-get on PATH,
# the trainer in a folder named by RF_BUILD_DIR.
# shellcheck disable=SC2016  # (the stubs' bodies expand when the stubs run)
set -euo pipefail
# shellcheck source=tests/shell_test_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/shell_test_lib.sh"
# Whatever the caller's environment holds must not change what the scripts do here.
unset RF_RESUME RF_BENCH RF_BENCH_RESULTS OPENBLAS_CORETYPE CONFIG RF_ROOT
while read -r name; do unset "$name"; done < <(compgen -e | grep '^SLURM_' || true)

stubs="$tmp/stubs"        # srun, scontrol, apt-get: they log their arguments, one a line
nobuild="$tmp/nobuild"    # an RF_BUILD_DIR without a trainer
mkdir -p "$stubs" "$nobuild"
stub() {  # stub PATH BODY: a script that runs BODY
  printf '#!/usr/bin/env bash\n%s\n' "$2" > "$1"
  chmod +x "$1"
}

# --- bench/run.sh: a suite replaces its results only when it completed -------------------------
# The benchmark prints a row, then fails when its arguments match STUB_FAIL; with STUB_STARTED
# it first creates that file and takes a second (time to interrupt run.sh).
stub "$stubs/step_bench" '[ -z "${STUB_STARTED:-}" ] || { touch "$STUB_STARTED"; sleep 1; }
echo "{\"stub\": \"$*\"}"
[ -z "${STUB_FAIL:-}" ] || [[ ! "$*" =~ $STUB_FAIL ]]'
results="$tmp/results"
mkdir -p "$results"
# REFERENCE_PYTHON=false: no reformer-pytorch rows; RF_BUILD_DIR without a trainer: no
# `reformer --version` for OPENBLAS_CORETYPE (and with RF_BENCH set, no build).
run_bench() {  # run_bench NAME SUITE: run.sh SUITE, its stdout and stderr in $tmp/NAME.{out,err}
  RF_BENCH_RESULTS="$results" RF_BENCH="$stubs/step_bench" RF_BUILD_DIR="$nobuild" \
    REFERENCE_PYTHON=false bash "$root/bench/run.sh" "$2" > "$tmp/$1.out" 2> "$tmp/$1.err"
}
previous() {  # previous SUITE...: committed-looking results to be kept or replaced
  local s
  for s in "$@"; do echo "{\"previous\": \"$s\"}" > "$results/$s.jsonl"; done
}
kept() {  # kept SUITE WHAT: the suite's file still holds its previous results, and only them
  [ "$(cat "$results/$1.jsonl" 2>/dev/null)" = "{\"previous\": \"$1\"}" ] ||
    fail "$2: $results/$1.jsonl should still hold the previous results; it holds" \
      "'$(head -c 200 "$results/$1.jsonl" 2>/dev/null)'"
}
replaced() {  # replaced SUITE WHAT: the suite's file holds the new rows, only them, no partial left
  if [ ! -s "$results/$1.jsonl" ] || grep -qv '^{"stub"' "$results/$1.jsonl"; then
    fail "$2: $results/$1.jsonl should hold only the new rows; it holds" \
      "'$(head -c 200 "$results/$1.jsonl" 2>/dev/null)'"
  fi
  [ ! -e "$results/.$1.jsonl.partial" ] || fail "$2: the completed suite left its partial file"
}
one_error_line() {  # one_error_line FILE SUITE WHAT: run.sh's single line naming the suite
  if [ "$(grep -c '^run.sh:' "$1")" -ne 1 ] ||
     ! grep -qE "^run.sh: suite '$2' did not complete .*/$2\.jsonl is untouched" "$1"; then
    echo "--- $1:" >&2; cat "$1" >&2
    fail "$3: stderr should hold one line saying suite '$2' did not complete, its results untouched"
  fi
}

# A failing benchmark (every run fails after printing its row).
previous throughput
if STUB_FAIL=. run_bench fail throughput; then
  fail "run.sh: a failing benchmark should make it fail"
fi
kept throughput "a failed suite"
one_error_line "$tmp/fail.err" throughput "a failed suite"
expect_in "$results/.throughput.jsonl.partial" '^\{"stub"' \
  "the failed suite's partial file should keep its rows"
expect_in "$tmp/fail.out" '^\{"stub"' "run.sh should still show the rows on stdout"

# The same suite completing replaces the file (and the old partial file).
run_bench ok throughput || {
  cat "$tmp/ok.err" >&2
  fail "run.sh throughput on a working benchmark failed"
}
replaced throughput "a completed suite"
[ "$(grep -c '^{"stub"' "$tmp/ok.out")" -eq "$(wc -l < "$results/throughput.jsonl")" ] ||
  fail "the results should hold the rows run.sh showed"
! grep -q '^run.sh:' "$tmp/ok.err" || fail "run.sh reported an error for a completed suite"

# `all`, the depth suite failing (only it sets model.recompute=layers): the suites before it are
# replaced, depth keeps its results, million (after it, never run) too.
previous throughput dropout length depth million
if STUB_FAIL='model\.recompute=layers' run_bench all all; then
  fail "run.sh all: a failing depth suite should make it fail"
fi
for s in throughput dropout length; do
  replaced "$s" "run.sh all, suite $s before the failing one"
done
kept depth "run.sh all, the failing depth suite"
kept million "run.sh all, the suite after the failing one"
one_error_line "$tmp/all.err" depth "run.sh all"

# Interrupted (SIGTERM while a benchmark runs): the results stay, status 143.
previous million
rm -f "$tmp/started"
RF_BENCH_RESULTS="$results" RF_BENCH="$stubs/step_bench" RF_BUILD_DIR="$nobuild" \
  REFERENCE_PYTHON=false STUB_STARTED="$tmp/started" \
  bash "$root/bench/run.sh" million > "$tmp/term.out" 2> "$tmp/term.err" &
bench_pid=$!
for _ in $(seq 100); do [ -e "$tmp/started" ] && break; sleep 0.1; done
[ -e "$tmp/started" ] || fail "run.sh million did not start the benchmark within 10 s"
kill -TERM "$bench_pid"
status=0; wait "$bench_pid" || status=$?
[ "$status" -eq 143 ] || fail "run.sh killed by SIGTERM exited with status $status, not 143"
kept million "an interrupted suite"
one_error_line "$tmp/term.err" million "an interrupted suite"

# --- launch/train.sh -n 2: a signal while the ranks start is a stop, not a failure -------------
# A copy of the script beside stub setup.sh and build.sh; the ranks are stubs that do not handle
# SIGUSR1 (a real rank before it installs its handler): they die of it, mpirun exits 138.
mkdir -p "$tmp/copy/launch" "$tmp/rank-build"
cp "$root/launch/train.sh" "$tmp/copy/launch/"
stub "$tmp/copy/launch/setup.sh" 'exit 0'
stub "$tmp/copy/launch/build.sh" 'exit 0'
stub "$tmp/rank-build/reformer" 'touch "$STUB_STARTED.${OMPI_COMM_WORLD_RANK:-x}"; sleep 60'
echo "train: {}" > "$tmp/exp.yaml"
for signal in TERM INT; do
  rm -f "$tmp/rank-started".*
  # (A background job starts with SIGINT ignored, which bash cannot undo: env gives it back.)
  RF_BUILD_DIR="$tmp/rank-build" STUB_STARTED="$tmp/rank-started" \
    env --default-signal=INT bash "$tmp/copy/launch/train.sh" "$tmp/exp.yaml" -n 2 \
    > "$tmp/starting.out" 2> "$tmp/starting.err" &
  train_pid=$!
  for _ in $(seq 100); do
    [ -e "$tmp/rank-started.0" ] && [ -e "$tmp/rank-started.1" ] && break
    sleep 0.1
  done
  [ -e "$tmp/rank-started.1" ] || fail "train.sh -n 2 did not start the stub ranks within 10 s"
  kill "-$signal" "$train_pid"
  status=0; wait "$train_pid" || status=$?
  want=75; [ "$signal" = INT ] && want=130
  if [ "$status" -ne "$want" ]; then
    cat "$tmp/starting.out" "$tmp/starting.err" >&2
    fail "train.sh -n 2 signalled ($signal) while its ranks started exited $status, not $want"
  fi
  expect_in "$tmp/starting.err" "^train.sh: the ranks were still starting and stopped before" \
    "train.sh -n 2 signalled ($signal) while its ranks started"
done

# --- launch/slurm/reformer.sbatch: one --resume; outside a job, a clear error ------------------
stub "$stubs/srun" 'printf "%s\n" "$@" > "$SRUN_LOG"; exit "${STUB_SRUN_STATUS:-0}"'
stub "$stubs/scontrol" 'echo "scontrol $*" >> "$SCONTROL_LOG"'
export SRUN_LOG="$tmp/srun.log" SCONTROL_LOG="$tmp/scontrol.log"
slurm_build="$tmp/slurm-build"
mkdir -p "$slurm_build"
stub "$slurm_build/reformer" 'exit 0'   # only `[ -x ]`: srun is the stub
sbatch_job() {  # sbatch_job NAME ARGS...: the script as SLURM runs it; output: $tmp/NAME.{out,err}
  rm -f "$SRUN_LOG"
  SLURM_JOB_ID=42 SLURM_NTASKS=2 SLURM_JOB_NUM_NODES=1 CONFIG="$tmp/exp.yaml" \
    RF_BUILD_DIR="$slurm_build" PATH="$stubs:$PATH" \
    bash "$root/launch/slurm/reformer.sbatch" "$@" > "$tmp/$1.out" 2> "$tmp/$1.err"
}
resumes() {  # resumes: the --resume options (with their values) in the logged srun command
  awk 'value { printf "%s--resume %s", sep, $0; sep = " "; value = 0; next }
       /^--resume$/ { value = 1 } /^--resume=/ { printf "%s%s", sep, $0; sep = " " }' "$SRUN_LOG"
}
expect_resume() {  # expect_resume NAME WANT WHAT ARGS...: the job passes train exactly WANT
  local name="$1" want="$2" what="$3"; shift 3
  local status=0
  sbatch_job "$name" "$@" || status=$?
  [ "$status" -eq 0 ] || {
    cat "$tmp/$name.out" "$tmp/$name.err" >&2
    fail "$what: status $status"
  }
  [ -s "$SRUN_LOG" ] || fail "$what: srun was not run"
  [ "$(resumes)" = "$want" ] || fail "$what: train got '$(resumes)', not '$want'"
  expect_in "$SRUN_LOG" "^$tmp/exp.yaml\$" "$what: train should get the CONFIG"
  expect_in "$SRUN_LOG" '^train\.steps=5$' "$what: train should get the arguments"
}
expect_resume auto "--resume auto" "no --resume in the arguments" --set train.steps=5
RF_RESUME=auto-or-new expect_resume auto-or-new "--resume auto-or-new" "RF_RESUME=auto-or-new" \
  --set train.steps=5
expect_resume user "--resume $tmp/step-5.h5" "the user's --resume X" \
  --set train.steps=5 --resume "$tmp/step-5.h5"
expect_resume user-eq "--resume=$tmp/step-5.h5" "the user's --resume=X" \
  --resume="$tmp/step-5.h5" --set train.steps=5
[ ! -e "$SCONTROL_LOG" ] || fail "reformer.sbatch ran scontrol for a run that ended with status 0"

# Outside SLURM (no SLURM_* variables): one line, status 2, nothing run; with or without CONFIG.
outside="reformer.sbatch: not inside a SLURM job (SLURM_JOB_ID unset): submit it with sbatch"
for config in "$tmp/exp.yaml" ""; do
  rm -f "$SRUN_LOG"
  status=0
  CONFIG="$config" RF_BUILD_DIR="$slurm_build" PATH="$stubs:$PATH" \
    bash "$root/launch/slurm/reformer.sbatch" > "$tmp/outside.out" 2> "$tmp/outside.err" ||
    status=$?
  if [ "$status" -ne 2 ] || [ "$(cat "$tmp/outside.err")" != "$outside" ]; then
    cat "$tmp/outside.out" "$tmp/outside.err" >&2
    fail "reformer.sbatch outside SLURM (CONFIG='$config'): status $status, not 2 with the line" \
      "'$outside'"
  fi
  [ ! -e "$SRUN_LOG" ] || fail "reformer.sbatch outside SLURM ran srun"
done

# --- launch/slurm/selftest.sh: arguments before the root check and the packages ----------------
# RF_BUILD_DIR without a trainer and apt-get a stub that fails: even a script that ignored its
# arguments stops before the daemons (at the root or the trainer check) and installs nothing.
stub "$stubs/apt-get" 'echo "apt-get $*" >> "$APT_LOG"; exit 1'
export APT_LOG="$tmp/apt.log"
selftest() {  # selftest NAME ARGS...: output in $tmp/NAME.{out,err}, prints the status
  local status=0
  RF_BUILD_DIR="$nobuild" PATH="$stubs:$PATH" bash "$root/launch/slurm/selftest.sh" "${@:2}" \
    > "$tmp/$1.out" 2> "$tmp/$1.err" < /dev/null || status=$?
  echo "$status"
}
for help in --help -h; do
  status="$(selftest help "$help")"
  [ "$status" -eq 0 ] || {
    cat "$tmp/help.err" >&2
    fail "selftest.sh $help: status $status, not 0"
  }
  expect_in "$tmp/help.out" '^ +sudo launch/slurm/selftest\.sh ' \
    "selftest.sh $help should print the usage"
  [ ! -s "$tmp/help.err" ] || { cat "$tmp/help.err" >&2; fail "selftest.sh $help wrote to stderr"; }
done
status="$(selftest bogus --bogus)"
if [ "$status" -ne 2 ] || [ "$(wc -l < "$tmp/bogus.err")" -ne 1 ] ||
   ! grep -q "selftest.sh: unknown argument '--bogus'" "$tmp/bogus.err"; then
  cat "$tmp/bogus.out" "$tmp/bogus.err" >&2
  fail "selftest.sh --bogus: status $status; it should exit 2 with one line naming the argument"
fi
[ ! -e "$APT_LOG" ] || fail "selftest.sh ran apt-get: $(cat "$APT_LOG")"
echo "launch scripts: ok"
