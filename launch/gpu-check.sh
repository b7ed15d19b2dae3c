#!/usr/bin/env bash
# Runs the GPU checks and measurements of a bundle (launch/gpu-bundle.sh), most important first,
# within a time budget, so that a short loan of a GPU returns what matters most:
#   1. `reformer selftest --device cuda` at fp32 and bf16 (every op against the CPU reference);
#      a precision that fails again with CUDA_LAUNCH_BLOCKING=1 and under compute-sanitizer;
#   2. the GPU tests (gpu_test);
#   3. the throughput rows that the README's GPU targets name (ours, reformer-pytorch, dense SDPA),
#      then each launch's time in a 16K-token bf16 step;
#   4. the rest: selftest at tf32, the fused attention alone, Transformer-XL's memory, the other
#      rows of `bench/run.sh gpu`.
#
#   launch/gpu-check.sh BUNDLE_DIR RESULTS_DIR [BUDGET_S]     (BUDGET_S 0 or none: no budget)
#   BUNDLE_DIR/check.sh                                       (the same, from the bundle's copy)
#   RF_CHECK_ONLY=REGEX   run only the stages whose names match
#   RF_CHECK_SKIP=REGEX   skip the stages whose names match (e.g. those a previous loan measured)
#   RF_CHECK_PACK=FILE    after each stage, pack RESULTS_DIR into FILE (.tar.gz), so that a
#                         machine that returns few files still returns every stage's output
#   REFERENCE_PYTHON      a Python with torch (and reformer-pytorch for its rows); python3
#
# Each stage's output is RESULTS_DIR/NAME.txt; the throughput rows are JSON lines in
# RESULTS_DIR/gpu.jsonl, which `RF_BENCH_RESULTS=RESULTS_DIR python3 bench/summarize.py gpu`
# tabulates. A stage that would not finish within the budget is skipped and named in
# skipped.txt; each runs under a timeout of what is left.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"              # a checkout (launch/gpu-check.sh)
[ -f "$here/bench/reference.yaml" ] && root="$here"  # a bundle (its check.sh runs this copy)
[ $# -ge 2 ] || { echo "usage: launch/gpu-check.sh BUNDLE_DIR RESULTS_DIR [BUDGET_S]" >&2; exit 2; }
bundle="$(cd "$1" && pwd)" || { echo "gpu-check: no bundle folder '$1'" >&2; exit 2; }
results="$2"
budget="${3:-0}"
[ "$budget" -gt 0 ] || budget=86400  # 0: no budget
only="${RF_CHECK_ONLY:-.}"
skip="${RF_CHECK_SKIP:-^$}"
py="${REFERENCE_PYTHON:-python3}"
mkdir -p "$results"
results="$(cd "$results" && pwd)"
cp "$bundle/COMMIT" "$results/" 2>/dev/null || true
run=("$bundle/run.sh")
status=0

pack() {
  [ -n "${RF_CHECK_PACK:-}" ] || return 0
  tar -C "$results" -czf "$RF_CHECK_PACK.tmp" . && mv "$RF_CHECK_PACK.tmp" "$RF_CHECK_PACK"
}

# stage NAME ESTIMATED_S COMMAND...: stdout and stderr in NAME.txt. Returns the command's status
# (124: the budget ran out while it ran; 125: skipped).
stage() {
  local name="$1" estimate="$2"; shift 2
  if [[ ! "$name" =~ $only || "$name" =~ $skip ]]; then return 125; fi
  local left=$((budget - SECONDS))
  if [ "$left" -lt "$estimate" ]; then
    echo "skipped $name: $left s of the budget left, it needs about $estimate s" >> "$results/skipped.txt"
    return 125
  fi
  local started=$SECONDS
  timeout -k 5 "$left" "$@" > "$results/$name.txt" 2>&1
  local rc=$?
  [ "$rc" -eq 0 ] || status=1
  echo "== $name: exit $rc in $((SECONDS - started)) s ($SECONDS s so far)"
  tail -n 4 "$results/$name.txt" | cut -c1-300
  pack
  return "$rc"
}

# row NAME ESTIMATED_S COMMAND...: a throughput row; its JSON line goes to gpu.jsonl.
row() {
  local name="$1" estimate="$2"; shift 2
  stage "$name" "$estimate" bash -c '"${@:2}" 2>&1 >> "$1"' row "$results/gpu.jsonl" "$@"
}
ours() {  # ours NAME ESTIMATED_S TOKENS PRECISION [overrides...]
  local name="$1" estimate="$2" tokens="$3" precision="$4"; shift 4
  local sets=()
  for s in "$@"; do sets+=(--set "$s"); done
  row "$name" "$estimate" "${run[@]}" step_bench --config "$root/bench/reference.yaml" --steps 5 \
    --set "train.seq_len=$tokens" --set "model.axial_shape=[$((tokens / 64)),64]" \
    --set runtime.device=cuda --set "runtime.precision=$precision" "${sets[@]}"
}
reference() {  # reference NAME ESTIMATED_S SCRIPT TOKENS PRECISION [options]
  local name="$1" estimate="$2" script="$3" tokens="$4" precision="$5"; shift 5
  row "$name" "$estimate" "$py" "$root/bench/$script" --device cuda --seq-len "$tokens" --steps 5 \
    --precision "$precision" "$@"
}
enwik8() {  # enwik8 NAME ESTIMATED_S TOKENS [overrides]: the paper's model size at bf16
  local name="$1" estimate="$2" tokens="$3"; shift 3
  ours "$name" "$estimate" "$tokens" bf16 "model.axial_shape=[$((tokens / 512)),512]" \
    model.d_model=1024 model.d_ff=4096 model.n_layers=12 model.n_heads=8 model.d_head=128 \
    model.ff_chunk=4096 model.head_chunk=4096 "$@"
}
selftest() {  # selftest PRECISION
  stage "selftest-$1" 20 "${run[@]}" reformer selftest --device cuda --precision "$1"
  local rc=$?
  if [ "$rc" -eq 0 ] || [ "$rc" -ge 124 ]; then return; fi
  # A fault inside a kernel surfaces at a later call; with every launch waited for it is
  # reported by the launch that made it, and compute-sanitizer names the access.
  CUDA_LAUNCH_BLOCKING=1 stage "selftest-$1-blocking" 20 \
    "${run[@]}" reformer selftest --device cuda --precision "$1"
  local sanitizer
  sanitizer="$(command -v compute-sanitizer || ls "${CUDA_HOME:-/usr/local/cuda}"/bin/compute-sanitizer 2>/dev/null)"
  [ -z "$sanitizer" ] || stage "selftest-$1-memcheck" 60 "$sanitizer" --tool memcheck \
    "${run[@]}" reformer selftest --device cuda --precision "$1"
}

# (reformer --version: the commit the binary was built from, its CUDA runtime, driver and NCCL)
stage machine 5 bash -c 'nvidia-smi; nproc; "$1" reformer --version; "$0" -c "import torch; print(\"torch\", torch.__version__, torch.cuda.get_device_name())"; "$0" -c "import reformer_pytorch; print(\"reformer_pytorch\", reformer_pytorch.__file__)"' "$py" "${run[0]}"
# 1-2: correctness
selftest fp32
selftest bf16
stage gpu-test 75 "${run[@]}" gpu_test
# 3: the targets' rows: fp32 at 4K and 64K beside reformer-pytorch; bf16 at 16K and 64K beside
# dense attention with FlashAttention; the paper-size model's MFU; step graphs; fewer launches
ours ours-4k-fp32 10 4096 fp32
ours ours-64k-fp32 15 65536 fp32
reference reformer-pytorch-64k-fp32 25 reference_pytorch.py 65536 fp32
ours ours-16k-bf16 10 16384 bf16
ours ours-64k-bf16 15 65536 bf16
reference dense-16k-bf16 20 dense_sdpa.py 16384 bf16
reference dense-64k-bf16 20 dense_sdpa.py 65536 bf16
ours ours-16k-bf16-graphs 12 16384 bf16 runtime.step_graphs=true
ours ours-64k-bf16-unchunked 15 65536 bf16 model.ff_chunk=0 model.head_chunk=0
enwik8 enwik8-16k-bf16 20 16384
# The tensor-core attention tiles against the fp32 ones (runtime.tensor_core_attention), and the
# passes alone
ours ours-64k-bf16-unchunked-fp32-tiles 15 65536 bf16 model.ff_chunk=0 model.head_chunk=0 \
  runtime.tensor_core_attention=false
enwik8 enwik8-16k-bf16-fp32-tiles 20 16384 runtime.tensor_core_attention=false
# Where the paper-size model's step goes (its MFU target)
stage launch-times-enwik8-16k-bf16 40 "${run[@]}" step_bench --config "$root/bench/reference.yaml" \
  --set train.seq_len=16384 --set "model.axial_shape=[32,512]" --set runtime.device=cuda \
  --set runtime.precision=bf16 --set model.d_model=1024 --set model.d_ff=4096 \
  --set model.n_layers=12 --set model.n_heads=8 --set model.d_head=128 --set model.ff_chunk=4096 \
  --set model.head_chunk=4096 --steps 2 --profile-ops
for tiles in "" --fp32-tiles; do
  stage "attention-bench-65536-bf16$tiles" 20 "${run[@]}" attention_bench --device cuda \
    --seq-len 65536 --precision bf16 $tiles
done
stage launch-times-16k-bf16 30 "${run[@]}" step_bench --config "$root/bench/reference.yaml" \
  --set train.seq_len=16384 --set "model.axial_shape=[128,128]" --set runtime.device=cuda \
  --set runtime.precision=bf16 --steps 3 --profile-ops
# The model as a GPU run gets it by default (model.ff_chunk and head_chunk auto: one product per
# layer), and where its time goes at 64K; the fused attention's kernels under Nsight Compute
for tokens in 4096 16384 65536; do
  for precision in fp32 bf16; do
    [ "$tokens-$precision" != 65536-bf16 ] || continue  # (a row above)
    ours "ours-$((tokens / 1024))k-$precision-unchunked" 12 "$tokens" "$precision" model.ff_chunk=0 \
      model.head_chunk=0
  done
done
ours ours-16k-bf16-unchunked-graphs 12 16384 bf16 model.ff_chunk=0 model.head_chunk=0 \
  runtime.step_graphs=true
for precision in bf16 fp32; do
  stage "launch-times-64k-$precision-unchunked" 30 "${run[@]}" step_bench \
    --config "$root/bench/reference.yaml" --set train.seq_len=65536 \
    --set "model.axial_shape=[1024,64]" --set runtime.device=cuda \
    --set "runtime.precision=$precision" --set model.ff_chunk=0 --set model.head_chunk=0 \
    --steps 2 --profile-ops
done
ncu="$(command -v ncu || ls "${CUDA_HOME:-/usr/local/cuda}"/bin/ncu 2>/dev/null)"
if [ -n "$ncu" ]; then
  # (the fp32 kernels at fp32; the tensor-core ones, mma_*, at bf16, where only they run)
  for kernel in forward_tiles query_grad_tiles key_grad_tiles mma_forward_tiles \
    mma_query_grad_tiles mma_key_grad_tiles; do
    precision=fp32
    [ "${kernel#mma_}" = "$kernel" ] || precision=bf16
    stage "ncu-$kernel-64k" 25 "$ncu" --clock-control none --target-processes all \
      -k "regex:$kernel" -c 1 --section SpeedOfLight --section Occupancy --section LaunchStats \
      --section WarpStateStats --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
      --section SchedulerStats "${run[@]}" attention_bench --device cuda --seq-len 65536 --reps 1 \
      --precision "$precision"
  done
fi
enwik8 enwik8-16k-bf16-unchunked 20 16384 model.ff_chunk=0 model.head_chunk=0
reference reformer-pytorch-4k-fp32 20 reference_pytorch.py 4096 fp32
ours ours-4k-bf16 10 4096 bf16
ours ours-16k-fp32 10 16384 fp32
ours ours-4k-fp32-graphs 10 4096 fp32 runtime.step_graphs=true
enwik8 enwik8-64k-bf16 30 65536
reference reformer-pytorch-16k-bf16 20 reference_pytorch.py 16384 bf16
reference reformer-pytorch-64k-bf16 25 reference_pytorch.py 65536 bf16
# 4: the rest
selftest tf32
for tokens in 4096 65536; do
  stage "attention-bench-$tokens" 20 "${run[@]}" attention_bench --device cuda --seq-len "$tokens"
done
# (the paper-size model's heads: 8 of width 128)
stage attention-bench-16384-d128 20 "${run[@]}" attention_bench --device cuda --seq-len 16384 \
  --heads 8 --d-head 128
stage launch-times-16k-fp32 30 "${run[@]}" step_bench --config "$root/bench/reference.yaml" \
  --set train.seq_len=16384 --set "model.axial_shape=[128,128]" --set runtime.device=cuda \
  --set runtime.precision=fp32 --steps 3 --profile-ops
for memory in 512 0; do  # Transformer-XL's base (segments of 512): with its memory and without
  stage "transformer-xl-memory-$memory" 30 "${run[@]}" step_bench \
    --config "$root/configs/transformer_xl_enwik8.yaml" --set runtime.device=cuda \
    --set "model.memory_len=$memory" --steps 5 --warmup 2
done
for tokens in 4096 16384 65536; do
  ours "ours-$((tokens / 1024))k-tf32" 12 "$tokens" tf32
  for precision in fp32 bf16; do
    ours "ours-$((tokens / 1024))k-$precision-stored" 15 "$tokens" "$precision" model.reversible=false
  done
done
for tokens in 4096 16384 65536; do
  reference "dense-$((tokens / 1024))k-fp32" 20 dense_sdpa.py "$tokens" fp32
done
reference reformer-pytorch-16k-fp32 20 reference_pytorch.py 16384 fp32

if "$py" -c "import json" 2> /dev/null && [ -s "$results/gpu.jsonl" ]; then
  RF_BENCH_RESULTS="$results" "$py" "$root/bench/summarize.py" gpu > "$results/summary.md" 2>&1
  cat "$results/summary.md"
fi
skipped=0
[ -f "$results/skipped.txt" ] && skipped="$(wc -l < "$results/skipped.txt")"
echo "== done in $SECONDS s (status $status; $skipped stages skipped for the budget)" | tee -a "$results/done.txt"
pack
exit $status
