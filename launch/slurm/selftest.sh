#!/usr/bin/env bash
# End-to-end check of launch/slurm/reformer.sbatch against a REAL (throwaway) Slurm cluster.
#
#   sudo launch/slurm/selftest.sh            # from anywhere; about 4 minutes on a 2-core VM
#   KEEP=1 sudo launch/slurm/selftest.sh     # keep the temporary folder (logs) for inspection
#
# What it does:
#   1. installs Debian's slurmctld, slurmd, slurm-client and munge if they are missing;
#   2. starts munged, slurmctld and slurmd as root, with every file (key, sockets, state, logs,
#      slurm.conf) in one temporary folder and on free ports, so nothing in /etc is touched and
#      an existing Slurm/munge installation is left alone (clients find ours via SLURM_CONF);
#   3. submits the real reformer.sbatch with a tiny CPU model, overriding only what a CPU-only
#      node needs (--gpus-per-node=0 --ntasks-per-node=2 --cpus-per-task=N) and the times:
#        0  plain `srun` (no --mpi) cannot start the ranks: why the script passes --mpi=pmix;
#        A  time limit: --signal=USR1@N reaches the ranks, they checkpoint and exit 75, the script
#           requeues the job, the requeued job (restart 1) resumes in the same log and finishes;
#        B  scheduler requeue (`scontrol requeue`, what preemption with PreemptMode=REQUEUE does):
#           SIGTERM -> checkpoint within KillWait, Slurm requeues, restart 1 resumes; also checks
#           that --cpus-per-task reaches the srun step (SRUN_CPUS_PER_TASK, Slurm >= 22.05);
#        C  `scancel` of that job: SIGTERM -> checkpoint, the job ends CANCELLED, NOT requeued;
#        E  USR1 to the batch shell only (`scancel --batch -s USR1`, like --signal=B:USR1@N): the
#           script forwards it through srun to the ranks, which checkpoint; the script requeues;
#        F  `scancel -s USR1` (steps only) reaches the ranks directly; the script requeues;
#        D  README's mpirun-in-sbatch recipe: --signal=B:USR1@N, trap and forward to mpirun;
#   4. prints PASS/FAIL lines and phase timings; exits 0 only if every check passed;
#   5. always (trap on EXIT/INT/TERM) cancels the jobs, stops the daemons by their PID files and
#      removes the temporary folder.
#
# Needs root (daemons, apt) and a built trainer: ${RF_BUILD_DIR:-<repo>/build}/reformer.
set -euo pipefail

# Arguments first, before the root check and the packages: it takes none, and `--help` (or a typo)
# as root used to install Slurm and run the whole test.
if [ $# -gt 0 ]; then
  case "$1" in
    -h|--help)  # the header above, its "What it does" list shortened to one line
      awk 'NR == 1 { next } !/^#/ { exit } /^# What it does:/ { skip = 1 } /^# Needs / { skip = 0 }
           !skip { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"
      echo "It installs Debian's Slurm and munge if missing; the comment at the top of" \
        "${BASH_SOURCE[0]} says what it does."
      exit 0 ;;
  esac
  echo "selftest.sh: unknown argument '$1': it takes none (KEEP=1, RF_BUILD_DIR go in the" \
    "environment; --help shows the usage)" >&2
  exit 2
fi

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
sbatch_script="$repo/launch/slurm/reformer.sbatch"
binary="${RF_BUILD_DIR:-$repo/build}/reformer"

[ "$(id -u)" -eq 0 ] || { echo "selftest.sh: run as root (it starts slurmctld/slurmd/munged)" >&2; exit 2; }
[ -x "$binary" ] || { echo "selftest.sh: no $binary; build the trainer first (launch/build.sh)" >&2; exit 2; }

# --- 1. packages -------------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null ||
   ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
  echo "installing slurmctld slurmd slurm-client munge ..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null ||
    { apt-get update >/dev/null && apt-get install -y --no-install-recommends \
        slurmctld slurmd slurm-client munge >/dev/null; }
fi

# --- cleanup, installed before anything is started ---------------------------------------------
tmp="$(mktemp -d /tmp/rf-slurm-selftest.XXXXXX)"
chmod 0755 "$tmp"  # munged refuses a socket folder that is not world-readable/executable
export SLURM_CONF="$tmp/slurm.conf"

stop_pidfile() {  # stop_pidfile FILE: TERM the daemon named in FILE and wait (max 15 s) for it
  local pid
  [ -s "$1" ] || return 0
  pid="$(cat "$1")"
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
  kill -9 "$pid" 2>/dev/null || true
}

cleanup() {
  local status=$?
  set +e
  trap - EXIT INT TERM
  if [ -s "$tmp/slurmctld.pid" ]; then
    # Cancel our jobs first: killing slurmd would leave their slurmstepd/ranks running.
    scancel --full $(squeue -h -o %i 2>/dev/null) 2>/dev/null
    for _ in $(seq 60); do [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break; sleep 1; done
  fi
  stop_pidfile "$tmp/slurmd.pid"
  stop_pidfile "$tmp/slurmctld.pid"
  stop_pidfile "$tmp/munge/run/munged.pid"
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM   # turn signals into an exit so the EXIT trap cleans up

# --- 2. a single-node cluster in $tmp ------------------------------------------------------------
free_port() {  # a TCP port nobody listens on (another Slurm may own 6817/6818)
  local p
  for p in $(shuf -i 20000-40000 -n 100); do
    [ "$p" = "${1:-}" ] && continue
    ss -Hltn "sport = :$p" | grep -q . || { echo "$p"; return 0; }
  done
  return 1
}
ctld_port="$(free_port)"
slurmd_port="$(free_port "$ctld_port")"
host="$(hostname -s)"
# Scenario B runs 2 ranks x 2 CPUs; config_overrides below lets a 2-core machine pose as 4 CPUs.
cpus="$(nproc)"; [ "$cpus" -ge 4 ] || cpus=4
mem_mb=$(( $(awk '/MemAvailable/ {print $2}' /proc/meminfo) / 1024 * 3 / 4 ))

mkdir -p "$tmp/munge/key" "$tmp/munge/run" "$tmp/state" "$tmp/spool" "$tmp/log" "$tmp/work"
chmod 0700 "$tmp/munge/key"; chmod 0755 "$tmp/munge" "$tmp/munge/run"   # munged checks these
dd if=/dev/urandom of="$tmp/munge/key/munge.key" bs=1024 count=1 status=none
chmod 0400 "$tmp/munge/key/munge.key"
munged --force --key-file="$tmp/munge/key/munge.key" --socket="$tmp/munge/run/munge.sock" \
  --pid-file="$tmp/munge/run/munged.pid" --log-file="$tmp/log/munged.log" \
  --seed-file="$tmp/munge/seed"

cat >"$SLURM_CONF" <<EOF
ClusterName=rfselftest
SlurmctldHost=$host
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire=30 (default 120) and KillWait=30 make a requeued job start again after ~30-60 s.
AuthInfo=socket=$tmp/munge/run/munge.sock,cred_expire=30
KillWait=30
# Keep finished jobs visible to scontrol long enough to check their final state.
MinJobAge=900
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/log/slurmctld.log
SlurmdLogFile=$tmp/log/slurmd.log
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# No cgroups on a container/VM like this one.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
# MpiDefault stays "none" (Slurm's default) on purpose: the script itself must ask for pmix.
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SlurmdParameters=config_overrides
NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
slurmctld
slurmd

# --- helpers -------------------------------------------------------------------------------------
t_start=$(date +%s)
now() { echo $(( $(date +%s) - t_start )); }
failures=0
check() {  # check "description" command...: one PASS/FAIL line
  local what="$1"; shift
  if "$@"; then echo "PASS: $what"; else echo "FAIL: $what"; failures=$((failures + 1)); fi
}
wait_for() {  # wait_for SECONDS "description" command...: poll once a second; fatal on timeout
  local limit="$1" what="$2"; shift 2
  local t0; t0=$(date +%s)
  until "$@"; do
    if [ $(( $(date +%s) - t0 )) -ge "$limit" ]; then
      # Later steps depend on this one: stop here, show what happened; the trap cleans up.
      echo "FAIL: timed out after ${limit}s waiting for: $what"
      for f in "$tmp"/work/*.out; do [ -f "$f" ] && { echo "--- $f"; cat "$f"; }; done
      echo "--- squeue"; squeue; echo "--- slurmctld.log (tail)"; tail -n 30 "$tmp/log/slurmctld.log"
      exit 1
    fi
    sleep 1
  done
}
job_field() { scontrol show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1; }
state_is() { [ "$(job_field "$1" JobState)" = "$2" ]; }
has() { grep -qE -- "$2" "$1" 2>/dev/null; }   # has FILE REGEX
lacks() { ! has "$@"; }
idle() { [ "$(sinfo -h -o %t 2>/dev/null)" = idle ]; }

wait_for 60 "node idle" idle
echo "cluster up in $(now)s (slurmctld :$ctld_port, slurmd :$slurmd_port, $cpus CPUs, SLURM_CONF=$SLURM_CONF)"

make_config() {  # make_config NAME: a tiny CPU model that would train for hours
  cat >"$tmp/$1.yaml" <<EOF
model: {vocab_size: 32, d_model: 32, d_ff: 64, n_layers: 2, n_heads: 2, d_head: 16, attention: [lsh, local], position: learned}
lsh: {bucket_size: 16, local_chunk: 16}
train: {seq_len: 64, batch_size: 1, steps: 50000000, log_every: 20000, eval_every: 0, checkpoint_every: 500, out_dir: $tmp/run-$1}
EOF
}
# The CPU-only overrides every submission needs (sbatch options win over #SBATCH lines); the
# rest (--requeue, --open-mode=append, --output, --signal unless overridden) comes from the script.
cpu_only=(--gpus-per-node=0 --ntasks-per-node=2 --cpus-per-task=1)
submit() {  # submit NAME sbatch-options...: prints the job id; the log is $tmp/work/reformer-ID.out
  local name="$1"; shift
  CONFIG="$tmp/$name.yaml" RF_ROOT="$repo" \
    sbatch --parsable --chdir="$tmp/work" "${cpu_only[@]}" "$@" "$sbatch_script"
}

# --- 0: without --mpi=pmix (MpiDefault=none) Debian's Open MPI cannot start under srun ----------
echo "== 0: plain srun, no --mpi"
make_config 0
plain_out="$(srun -n 2 --time=1 "$binary" train --config "$tmp/0.yaml" --set train.steps=10 2>&1 || true)"
check "0: plain srun fails with \"OMPI was not built with SLURM's PMI support\"" \
  grep -q "OMPI was not built with SLURM's PMI support" <<<"$plain_out"
stop_step() { sed -n "s/^stopped at step \([0-9]*\) on request.*/\1/p" "$1" | sed -n "${2}p"; }

# --- A: time limit -> USR1 -> checkpoint, exit 75 -> script requeues -> resume -> finish ----------
echo "== A: --time=3 --signal=USR1@120 (the script's own requeue path)"
make_config A
tA=$(date +%s)
jobA=$(submit A --time=3 --signal=USR1@120)
logA="$tmp/work/reformer-$jobA.out"
wait_for 60 "A: ranks started" has "$logA" '^  ranks: 2 '
echo "   job $jobA running with 2 ranks after $(( $(date +%s) - tA ))s"
tA1=$(date +%s)
# USR1 is due 60 s (180-120) after the start; the controller checks periodically and was seen
# sending it up to ~30 s early, so a margin of a minute keeps it clear of the start-up.
wait_for 150 "A: USR1 stop and script requeue" has "$logA" 'stopped with a checkpoint before the end; requeueing'
tA2=$(date +%s)
nA=$(stop_step "$logA" 1)
echo "   stopped at step ${nA:-?} $(( tA2 - tA1 ))s after the ranks started"
# Let the resumed run finish: 3000 more steps take seconds, long before its own USR1 would come.
[ -n "$nA" ] && sed -i "s/steps: 50000000/steps: $(( nA + 3000 ))/" "$tmp/A.yaml"
wait_for 150 "A: restart 1 resumed" has "$logA" '^  resumed from '
tA3=$(date +%s)
echo "   requeued job resumed $(( tA3 - tA2 ))s after the stop"
wait_for 120 "A: job finished" state_is "$jobA" COMPLETED
tA4=$(date +%s)
echo "   finished $(( tA4 - tA3 ))s after resuming; scenario A took $(( tA4 - tA ))s"
check "A: srun --mpi=pmix started 2 ranks (ranks: 2)" has "$logA" '^  ranks: 2 \(0@.*, 1@.*\)'
check "A: script saw 2 ranks, restart 0" has "$logA" "^job $jobA: 2 ranks on 1 node\(s\), restart 0"
check "A: ranks stopped on SIGUSR1 at a step boundary" has "$logA" "^stopped at step $nA on request \(SIGUSR1\)"
# (the file itself may be pruned later by train.keep_checkpoints, so check rank 0's report)
check "A: rank 0 wrote the checkpoint" has "$logA" "^saved .*/checkpoints/step-0*$nA\.h5 after "
check "A: both ranks exited with status 75" has "$logA" 'tasks 0-1: Exited with exit code 75'
check "A: the script requeued the job" has "$logA" "^job $jobA: stopped with a checkpoint before the end; requeueing"
check "A: restart 1 appended to the same log" has "$logA" "^job $jobA: 2 ranks on 1 node\(s\), restart 1"
check "A: resumed from the checkpoint" has "$logA" "^  resumed from .*step-0*$nA\.h5 at step $nA\$"
check "A: resumed run trained to the end" has "$logA" "^step +$(( ${nA:-0} + 3000 ))/$(( ${nA:-0} + 3000 )) "
check "A: job COMPLETED, exit 0, 1 restart" \
  test "$(job_field "$jobA" JobState) $(job_field "$jobA" ExitCode) $(job_field "$jobA" Restarts)" = "COMPLETED 0:0 1"

# --- B: scheduler requeue (SIGTERM to everything) -> checkpoint -> Slurm requeues -> resume ------
echo "== B: scontrol requeue (what preemption with PreemptMode=REQUEUE does)"
make_config B
tB=$(date +%s)
jobB=$(submit B --time=10 --cpus-per-task=2)
logB="$tmp/work/reformer-$jobB.out"
wait_for 60 "B: training started" has "$logB" '^step +1/'
stepB="$(scontrol show step "$jobB.0" 2>/dev/null || true)"
sleep 3
tB1=$(date +%s)
scontrol requeue "$jobB"
wait_for 60 "B: SIGTERM stop" has "$logB" 'on request \(SIGTERM\)'
echo "   ranks checkpointed $(( $(date +%s) - tB1 ))s after the requeue"
nB=$(stop_step "$logB" 1)
wait_for 150 "B: restart 1 resumed" has "$logB" '^  resumed from '
tB2=$(date +%s)
echo "   requeued job resumed $(( tB2 - tB1 ))s after scontrol requeue"
check "B: --cpus-per-task=2 reached the srun step (4 CPUs for 2 tasks)" grep -q 'CPUs=4 Tasks=2' <<<"$stepB"
check "B: OMP_NUM_THREADS follows --cpus-per-task" has "$logB" 'executor: cpu, 2 OpenMP threads'
check "B: ranks stopped on SIGTERM" has "$logB" "^stopped at step $nB on request \(SIGTERM\)"
check "B: both ranks exited with status 75" has "$logB" 'tasks 0-1: Exited with exit code 75'
check "B: Slurm (not the script) requeued it" lacks "$logB" 'requeueing$'
check "B: restart 1 resumed from the checkpoint" has "$logB" "^  resumed from .*step-0*$nB\.h5 at step $nB\$"

# --- C: scancel -> checkpoint, CANCELLED, no requeue ---------------------------------------------
echo "== C: scancel of the resumed job B"
sleep 3
tC=$(date +%s)
scancel "$jobB"
# (squeue -j also lists finished jobs, so ask for the state)
wait_for 60 "C: job ended" state_is "$jobB" CANCELLED
sleep 5   # a wrongly requeued job would be back in the queue by now
echo "   job ended $(( $(date +%s) - tC ))s after scancel"
nC=$(stop_step "$logB" 2)
check "C: ranks checkpointed on SIGTERM" \
  test -n "$nC" -a -f "$tmp/run-B/checkpoints/step-$(printf %08d "${nC:-0}").h5"
check "C: job CANCELLED, not requeued (1 restart)" \
  test "$(job_field "$jobB" JobState) $(job_field "$jobB" Restarts)" = "CANCELLED 1"

# --- E: USR1 to the batch shell only -> forwarded through srun -> checkpoint -> script requeues ---
echo "== E: scancel --batch -s USR1 (USR1 to the batch shell only, as --signal=B:USR1@N does)"
make_config E
jobE=$(submit E --time=10)
logE="$tmp/work/reformer-$jobE.out"
wait_for 60 "E: training started" has "$logE" '^step +1/'
sleep 2
tE1=$(date +%s)
scancel --batch -s USR1 "$jobE"
wait_for 60 "E: script requeue" has "$logE" 'requeueing$'
echo "   stopped and requeued $(( $(date +%s) - tE1 ))s after the signal"
nE=$(stop_step "$logE" 1)
check "E: the batch shell forwarded USR1" has "$logE" 'SIGUSR1 on the batch shell; forwarding it to the ranks'
check "E: ranks stopped on SIGUSR1 and wrote a checkpoint" \
  has "$logE" "^stopped at step $nE on request \(SIGUSR1\)"
check "E: both ranks exited with status 75" has "$logE" 'tasks 0-1: Exited with exit code 75'
# wait_for fails the self-test when the restart never shows, so it is the check itself.
wait_for 30 "E: job requeued (1 restart)" test "$(job_field "$jobE" Restarts)" = 1
scancel "$jobE"

# --- F: scancel -s USR1 (steps only): the ranks get it directly -> checkpoint -> script requeues --
echo "== F: scancel -s USR1 (checkpoint and requeue by hand)"
make_config F
jobF=$(submit F --time=10)
logF="$tmp/work/reformer-$jobF.out"
wait_for 60 "F: training started" has "$logF" '^step +1/'
sleep 2
tF1=$(date +%s)
scancel -s USR1 "$jobF"
wait_for 60 "F: script requeue" has "$logF" 'requeueing$'
echo "   stopped and requeued $(( $(date +%s) - tF1 ))s after the signal"
check "F: ranks stopped on SIGUSR1 (not via the batch shell)" \
  test -n "$(stop_step "$logF" 1)" -a -z "$(grep 'forwarding it to the ranks' "$logF")"
check "F: both ranks exited with status 75" has "$logF" 'tasks 0-1: Exited with exit code 75'
wait_for 30 "F: job back in the queue" test "$(job_field "$jobF" Restarts)" = 1
scancel "$jobF"

# --- D: README's mpirun recipe: --signal=B:USR1@N, trap in the batch shell, forward to mpirun ---
echo "== D: mpirun inside sbatch, --time=3 --signal=B:USR1@120, forwarded by the batch shell"
make_config D
cat >"$tmp/mpirun.sbatch" <<'EOF'
#!/usr/bin/env bash
#SBATCH --signal=B:USR1@120
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=mpirun-%j.out
set -uo pipefail
echo "job $SLURM_JOB_ID: restart ${SLURM_RESTART_COUNT:-0}"
pid=""
trap 'kill -USR1 "$pid"' USR1
# --allow-run-as-root only because this test runs as root.
mpirun --allow-run-as-root "$RF_BINARY" train --config "$CONFIG" --resume auto &
pid=$!
while :; do wait "$pid"; status=$?; kill -0 "$pid" 2>/dev/null || break; done
echo "mpirun exited with status $status"
if [ "$status" -eq 75 ]; then scontrol requeue "$SLURM_JOB_ID" && exit 0; fi
exit "$status"
EOF
jobD=$(CONFIG="$tmp/D.yaml" RF_BINARY="$binary" \
  sbatch --parsable --chdir="$tmp/work" -n 2 --time=3 "$tmp/mpirun.sbatch")
logD="$tmp/work/mpirun-$jobD.out"
wait_for 60 "D: ranks started" has "$logD" '^  ranks: 2 '
tD1=$(date +%s)
wait_for 150 "D: mpirun stopped" has "$logD" '^mpirun exited with status'
echo "   stopped $(( $(date +%s) - tD1 ))s after the ranks started"
nD=$(stop_step "$logD" 1)
check "D: ranks stopped on SIGUSR1 and wrote a checkpoint" \
  has "$logD" "^stopped at step $nD on request \(SIGUSR1\)"
check "D: mpirun exited with status 75" has "$logD" '^mpirun exited with status 75$'
# wait_for fails the self-test when the restart never shows, so it is the check itself.
wait_for 30 "D: job requeued (1 restart)" test "$(job_field "$jobD" Restarts)" = 1
scancel "$jobD"

echo "total $(now)s"

if [ "$failures" -eq 0 ]; then echo "selftest: PASS"; else
  echo "selftest: FAIL ($failures)"
  for f in "$tmp"/work/*.out; do echo "--- $f"; cat "$f"; done
  exit 1
fi
