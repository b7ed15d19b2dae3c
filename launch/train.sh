#!/usr/bin/env bash
# Trains an experiment: installs what is missing, builds if needed, then runs `reformer train`,
# as one process or as RANKS MPI ranks (mpirun, with the options this machine needs).
#   launch/train.sh CONFIG [-n RANKS] [--set section.key=value ...] [--resume auto|auto-or-new]
# Each rank gets (cores / RANKS) OpenMP threads, at least one. Exit status 75 means a signal
# (SIGTERM, SIGUSR1) stopped training after a checkpoint, 130 that Ctrl-C did: rerun with
# --resume auto. With -n > 1, Ctrl-C works the same through this script (see below).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
usage="usage: launch/train.sh CONFIG.yaml [-n RANKS] [--set section.key=value ...] [--resume auto|auto-or-new]"
if [ $# -lt 1 ]; then echo "$usage" >&2; exit 2; fi
config="$1"
shift
if [ -d "$config" ]; then echo "train.sh: '$config' is a directory, not a config file" >&2; exit 2; fi
if [ ! -f "$config" ]; then echo "train.sh: config file '$config' not found" >&2; exit 2; fi
ranks=1
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    -n|--ranks)
      [ $# -ge 2 ] || { echo "train.sh: $1 needs a number" >&2; exit 2; }
      ranks="$2"; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
if ! [[ "$ranks" =~ ^[1-9][0-9]*$ ]]; then echo "train.sh: -n '$ranks' is not a positive number" >&2; exit 2; fi

"$root/launch/setup.sh"
RF_BUILD_TARGET=reformer "$root/launch/build.sh"  # (the trainer; launch/test.sh builds the rest)
binary="${RF_BUILD_DIR:-$root/build}/reformer"
if [ "$ranks" -eq 1 ]; then
  exec "$binary" train --config "$config" ${args[@]+"${args[@]}"}
fi

cores="$(nproc)"
threads=$(( cores / ranks )); [ "$threads" -ge 1 ] || threads=1
mpi_args=(-np "$ranks" --bind-to none -x "OMP_NUM_THREADS=$threads")
[ "$(id -u)" -eq 0 ] && mpi_args+=(--allow-run-as-root)
[ "$ranks" -gt "$cores" ] && mpi_args+=(--oversubscribe)
# Ctrl-C: mpirun's own answer to SIGINT ends the ranks at once (its SIGTERM to them reached none
# before its SIGKILL: 2026-12-07), losing the steps since the last checkpoint. So mpirun runs in
# a session of its own, out of the terminal's reach, and this script turns a first Ctrl-C (or
# SIGTERM, or the terminal's SIGHUP) into SIGUSR1, which mpirun forwards to the ranks: they
# checkpoint after the step in progress and exit 75, reported here as 130 after Ctrl-C, as a
# single process does. A second signal ends mpirun (and with it the ranks) at once.
setsid mpirun "${mpi_args[@]}" "$binary" train --config "$config" ${args[@]+"${args[@]}"} &
mpirun_pid=$!
signals=0
interrupted=0
on_signal() {
  signals=$((signals + 1))
  if [ "$signals" -eq 1 ]; then
    echo "train.sh: asking the ranks to stop with a checkpoint after the step in progress (again: stop now)" >&2
    kill -USR1 "$mpirun_pid" 2>/dev/null || true
  else
    kill -TERM "$mpirun_pid" 2>/dev/null || true
  fi
}
trap 'interrupted=1; on_signal' INT
trap on_signal TERM HUP
while :; do
  status=0
  wait "$mpirun_pid" || status=$?
  kill -0 "$mpirun_pid" 2>/dev/null || break  # (else a trapped signal cut the wait short)
done
# A signal while the ranks were still starting (loading their libraries, before they handle
# SIGUSR1) ended them by its default action: mpirun exits 128 + 10. They had trained nothing, so
# this is a stop like any other (75, or 130 after Ctrl-C) and --resume auto continues the run; it
# was reported as a failure (138), which a batch script does not requeue.
if [ "$signals" -gt 0 ] && [ "$status" -eq 138 ]; then
  echo "train.sh: the ranks were still starting and stopped before their first step (nothing trained since the last checkpoint)" >&2
  status=75
fi
if [ "$interrupted" -eq 1 ] && [ "$status" -eq 75 ]; then exit 130; fi
exit "$status"
