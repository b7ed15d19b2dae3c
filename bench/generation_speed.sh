#!/usr/bin/env bash
# Generation speed with and without the key/value cache (`reformer generate` against
# `reformer generate --no-cache`) at a long context: the configs/transformer_xl_char.yaml model
# (4 dense layers with relative positions, d_model 128) with a window of CONTEXT bytes (default
# 2048), trained for 2 steps so that a checkpoint exists, then asked for TOKENS (default 64)
# greedy bytes after a prompt that fills the rest of the window. Both runs must print the same
# text (greedy tokens are the same while the text fits the window); one JSON line per run goes to
# bench/results/generation.jsonl with tokens/s after the first token (whose time, the prompt's
# pass, is prompt_s) and this run's OpenBLAS kernel and SGEMM rate, and the ratio is printed.
#   bench/generation_speed.sh [CONTEXT] [TOKENS]
# RF_BENCH_SET: config overrides for the model, e.g. RF_BENCH_SET="model.residual=two_streams
# model.reversible=true" (the JSON line records the residual layout and the attention).
# RF_BENCH_LSH_CACHE=1: the cached run adds --lsh-cache (for LSH layers, e.g. RF_BENCH_SET=
# "model.attention=lsh model.position=learned"), whose text may differ from the window re-run
# past lsh.bucket_size tokens: the bytes that agree are reported instead of checked.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${RF_BUILD_DIR:-$root/build}"
context="${1:-2048}"
tokens="${2:-64}"
[ "$tokens" -lt "$context" ] || { echo "generation_speed: TOKENS must be below CONTEXT" >&2; exit 1; }
[ -x "$build/reformer" ] || "$root/launch/build.sh"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
out="$root/bench/results"
mkdir -p "$out"
model_set=()
for o in ${RF_BENCH_SET:-}; do model_set+=(--set "$o"); done

echo "generation_speed: training 2 steps of a $context-byte window (a checkpoint to sample from)"
"$build/reformer" train --config "$root/configs/transformer_xl_char.yaml" \
  --set data.format=synthetic --set data.synthetic=duplication --set model.memory_len=0 \
  --set train.seq_len="$context" --set train.batch_size=1 --set train.steps=2 \
  --set train.eval_every=0 --set train.checkpoint_every=2 --set train.out_dir="$work/run" \
  "${model_set[@]}" --no-report > "$work/train.log" 2>&1 || { cat "$work/train.log" >&2; exit 1; }

# The machine, as step_bench measures it in this run: OpenBLAS's kernel and SGEMM rate.
# shellcheck source=bench/machine_fields.sh
source "$root/bench/machine_fields.sh"
machine=$(machine_fields "$build" "$root" "$work") || exit 1
residual=$(sed -n 's/^  residual: *//p' "$work/run/config.yaml")
attention=$(sed -n 's/^  attention: *//p' "$work/run/config.yaml")
machine="$machine, \"residual\": \"$residual\", \"attention\": \"$attention\""

# A prompt of printable bytes that leaves room for the sample in the window.
prompt="$(python3 -c "print(('It is a truth universally acknowledged, that a single man ' * 999)[:$((context - tokens - 1))])")"
run() {  # run <label> [--no-cache]; prints the sample to $work/<label>.txt
  local label="$1"; shift
  "$build/reformer" generate --checkpoint "$work/run" --prompt "$prompt" --tokens "$tokens" \
    --temperature 0 "$@" > "$work/$label.txt" 2> "$work/$label.err" || { cat "$work/$label.err" >&2; exit 1; }
  local rate prompt_s
  rate=$(sed -n "s/.*then \([0-9.]*\) tokens\/s.*/\1/p" "$work/$label.err")
  prompt_s=$(sed -n "s/.*first token \([0-9.]*\) s.*/\1/p" "$work/$label.err")
  echo "{\"bench\": \"generation\", \"cache\": \"$label$([ "${1:-}" = --lsh-cache ] && echo " --lsh-cache")\", \"context\": $context, \"tokens\": $tokens, \"tokens_per_s\": $rate, \"prompt_s\": $prompt_s, $machine, \"cpu\": \"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')\"}" |
    tee -a "$out/generation.jsonl"
  echo "$rate" > "$work/$label.rate"
}
ratio() { python3 -c "print(round($(cat "$work/cached.rate") / $(cat "$work/uncached.rate"), 1))"; }
if [ "${RF_BENCH_LSH_CACHE:-0}" = 1 ]; then
  run cached --lsh-cache
  run uncached --no-cache
  agree=$(python3 -c "import sys
a, b = (open(f, 'rb').read()[$((context - tokens - 1)):] for f in sys.argv[1:])
print(sum(x == y for x, y in zip(a, b)))" "$work/cached.txt" "$work/uncached.txt")
  echo "generation_speed: --lsh-cache agrees on $agree of the $tokens greedy bytes (and a newline); cached / uncached tokens/s = $(ratio)x"
  exit 0
fi
run cached
run uncached --no-cache
cmp -s "$work/cached.txt" "$work/uncached.txt" ||
  { echo "generation_speed: the cached and uncached samples differ" >&2; exit 1; }
echo "generation_speed: the same $tokens greedy bytes; cached / uncached tokens/s = $(ratio)x"
