#!/usr/bin/env bash
# A long fuzzing campaign: every fuzz target for HOURS each (fractions allowed: 0.5), PARALLEL
# at a time (default: the cores), growing build-fuzz/corpus/<target> from one run to the next.
# Appends one JSON line per target (runs, corpus size, verdict) to bench/results/fuzz.jsonl.
#   bench/fuzz.sh HOURS [PARALLEL]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
hours="${1:?usage: bench/fuzz.sh HOURS [PARALLEL]}"
parallel="${2:-$(nproc)}"
seconds=$(awk -v h="$hours" 'BEGIN { printf "%d", h * 3600 }')
status=0
mkdir -p "$root/build-fuzz"  # (tee opens its log before fuzz/run.sh creates the folder)
"$root/fuzz/run.sh" "$seconds" "$parallel" | tee "$root/build-fuzz/campaign.log" || status=$?
mkdir -p "$root/bench/results"
sed -n 's/^fuzz: \([a-z_]*\) *\([0-9?]*\) runs *\([0-9]*\) inputs in its corpus *\(.*\)$/{"target": "\1", "seconds": '"$seconds"', "runs": "\2", "corpus": \3, "verdict": "\4", "date": "'"$(date -u +%F)"'"}/p' \
  "$root/build-fuzz/campaign.log" >> "$root/bench/results/fuzz.jsonl"
exit $status
