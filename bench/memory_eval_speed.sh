#!/usr/bin/env bash
# Transformer-XL's evaluation speed: `reformer eval --memory-len M --segment S` (each segment
# attends to the keys and values of the M positions before it, kept in a cache) against
# `--sliding` (each segment recomputed with the M tokens before it: the same attention length),
# on the same checkpoint and text, one run at a time. The model is configs/transformer_xl_char.yaml
# (4 dense layers with relative positions), trained for 20 steps so that a checkpoint exists.
# Segments of 2 tokens (the shortest a config allows) come closest to the paper's setting for its
# 1,874x, one new token at a time.
#   bench/memory_eval_speed.sh TEXT_FILE [MEMORY] [SEGMENT...]     (defaults: 512; 128 16 2)
# One JSON line per evaluation in bench/results/memory_eval.jsonl (with this run's OpenBLAS
# kernel and SGEMM rate and the model's residual layout), and the ratios printed. RF_BENCH_SET:
# config overrides for the model, e.g. RF_BENCH_SET="model.residual=two_streams model.reversible=true".
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${RF_BUILD_DIR:-$root/build}"
text="${1:?usage: bench/memory_eval_speed.sh TEXT_FILE [MEMORY] [SEGMENT...]}"
memory="${2:-512}"
shift $(($# < 2 ? $# : 2))
segments=("$@")
[ ${#segments[@]} -gt 0 ] || segments=(128 16 2)
[ -x "$build/reformer" ] || "$root/launch/build.sh"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
out="$root/bench/results"
mkdir -p "$out"
model_set=()
for o in ${RF_BENCH_SET:-}; do model_set+=(--set "$o"); done

echo "memory_eval_speed: training 20 steps of configs/transformer_xl_char.yaml on $text"
"$build/reformer" train --config "$root/configs/transformer_xl_char.yaml" --set data.train="$text" \
  --set train.steps=20 --set train.eval_every=0 --set train.checkpoint_every=20 \
  --set train.out_dir="$work/run" "${model_set[@]}" --no-report > "$work/train.log" 2>&1 ||
  { cat "$work/train.log" >&2; exit 1; }
# shellcheck source=bench/machine_fields.sh
source "$root/bench/machine_fields.sh"
machine=$(machine_fields "$build" "$root" "$work") || exit 1
residual=$(sed -n 's/^  residual: *//p' "$work/run/config.yaml")
machine="$machine, \"residual\": \"$residual\""

for segment in "${segments[@]}"; do
  # The same stretch of text for every segment length: 2,048 positions scored.
  windows=$((2048 / segment))
  for mode in memory sliding; do
    extra=(); [ "$mode" = sliding ] && extra=(--sliding)
    "$build/reformer" eval --checkpoint "$work/run" --memory-len "$memory" --segment "$segment" \
      --set train.batch_size=1 --set train.eval_batches="$windows" --json "${extra[@]}" 2> "$work/$mode.err" > "$work/$mode.json" ||
      { cat "$work/$mode.err" >&2; exit 1; }
    python3 - "$work/$mode.json" "$mode" "$machine" "$out/memory_eval.jsonl" <<'PY'
import json, sys
d = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
line = {"bench": "memory_eval", "mode": sys.argv[2], "memory_len": d["memory_len"],
        "segment": d["segment"], "tokens": d["tokens"], "seconds": round(d["seconds"], 3),
        "bits_per_token": round(d["bits_per_token"], 4)}
line.update(json.loads("{" + sys.argv[3] + "}"))
print(json.dumps(line))
open(sys.argv[4], "a").write(json.dumps(line) + "\n")
PY
  done
  python3 -c "import json; m = json.load(open('$work/memory.json')); s = json.load(open('$work/sliding.json')); print('memory_eval_speed: segment $segment, memory $memory: %.2f s with memory, %.2f s sliding: %.1fx' % (m['seconds'], s['seconds'], s['seconds'] / m['seconds']))"
done
