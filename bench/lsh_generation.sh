#!/usr/bin/env bash
# The approximate LSH cache of `reformer generate --lsh-cache` on the duplication task, where LSH
# attention must find the first copy of w to write the second: trains configs/default.yaml (or
# takes CHECKPOINT), then greedily generates the second copy of w for SEQUENCES validation
# sequences (default 64) with the cache and with the window re-run per token, and appends one
# JSON line to bench/results/lsh_generation.jsonl: the copy accuracy of each, how many generated
# tokens they agree on, tokens/s of each after the prompt's pass, and this run's OpenBLAS kernel
# and SGEMM rate.
#   bench/lsh_generation.sh [SEQUENCES] [CHECKPOINT]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${RF_BUILD_DIR:-$root/build}"
sequences="${1:-64}"
checkpoint="${2:-}"
[ -x "$build/bench/lsh_generation_bench" ] || "$root/launch/build.sh"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
out="$root/bench/results"
mkdir -p "$out"
if [ -z "$checkpoint" ]; then
  echo "lsh_generation: training configs/default.yaml (the duplication task, a few minutes)"
  "$build/reformer" train --config "$root/configs/default.yaml" --set train.out_dir="$work/run" \
    --no-report > "$work/train.log" 2>&1 || { cat "$work/train.log" >&2; exit 1; }
  grep "^eval at step" "$work/train.log" | tail -1
  checkpoint="$work/run"
fi
# shellcheck source=bench/machine_fields.sh
source "$root/bench/machine_fields.sh"
machine=$(machine_fields "$build" "$root" "$work") || exit 1
"$build/bench/lsh_generation_bench" "$checkpoint" "$sequences" > "$work/line.json"
python3 - "$work/line.json" "$machine" "$(date -u +%F)" << 'PY' | tee -a "$out/lsh_generation.jsonl"
import json, sys
d = json.load(open(sys.argv[1]))
d.pop("checkpoint")
d.update(json.loads("{" + sys.argv[2] + "}"))
d["date"] = sys.argv[3]
print(json.dumps(d))
PY
