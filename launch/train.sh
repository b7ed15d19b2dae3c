#!/usr/bin/env bash
# Trains an experiment: installs what is missing, builds if needed, then runs `reformer train`,
# as one process or as RANKS MPI ranks (mpirun, with the options this machine needs).
#   launch/train.sh CONFIG [-n RANKS] [--set section.key=value ...] [--resume auto|auto-or-new]
# Each rank gets (cores / RANKS) OpenMP threads, at least one. Exit status 75 means a signal
# (SIGTERM, SIGUSR1 or Ctrl-C) stopped training after a checkpoint: rerun with --resume auto. With
# -n > 1 the status is mpirun's (1 when it forwarded SIGTERM or Ctrl-C); the log's "stopped at
# step N" line says the same.
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
exec mpirun "${mpi_args[@]}" "$binary" train --config "$config" ${args[@]+"${args[@]}"}
