#!/usr/bin/env bash
# Runs the benchmark suites and writes JSON lines to bench/results/<suite>.jsonl; then
# `python3 bench/summarize.py` prints the tables the README shows. A suite replaces its file only
# when it completes: one that fails or is interrupted leaves the previous results as they were.
#   bench/run.sh [throughput|dropout|length|depth|million|ranks|allreduce|all]
#   bench/run.sh gpu      (not part of all: needs a CUDA device; the references with --device cuda)
# Each measurement is a separate process, so peak memory (max RSS) is per configuration.
# Benchmarks need the machine to themselves: timings on a shared or noisy machine are not
# comparable. The reference comparison needs a Python with reformer-pytorch 1.4.4 and torch
# (bench/README.md); set REFERENCE_PYTHON to it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# (Checked before anything is built or written: a typo used to run nothing and exit 0.)
suite="${1:-all}"
case "$suite" in
  throughput|dropout|length|depth|million|ranks|allreduce|all|gpu) ;;
  -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "run.sh: unknown suite '$suite'; one of throughput, dropout, length, depth, million, ranks, allreduce, all, gpu" >&2
     exit 2 ;;
esac
[ $# -le 1 ] || { echo "run.sh: one suite at a time (got: $*)" >&2; exit 2; }
build="${RF_BUILD_DIR:-$root/build}"
# RF_BENCH_RESULTS: another folder for the results (e.g. one per machine), which
# `RF_BENCH_RESULTS=... python3 bench/summarize.py` then reads.
out="${RF_BENCH_RESULTS:-$root/bench/results}"
mkdir -p "$out"
# Each suite writes to $out/.<suite>.jsonl.partial and moves it over <suite>.jsonl once it has
# completed. (It used to delete <suite>.jsonl first, so a failed or interrupted run left the
# committed results empty.) A failed suite's partial file is kept: the rows it did measure.
running=""  # the suite being measured, for the message on exit
begin() { running="$1"; : > "$out/.$1.jsonl.partial"; }
record() { tee -a "$out/.$1.jsonl.partial"; }  # record SUITE: a program's JSON lines, also shown
finish() { mv -f "$out/.$running.jsonl.partial" "$out/$running.jsonl"; running=""; }
on_exit() {
  local status=$?
  if [ "$status" -ne 0 ] && [ -n "$running" ]; then
    echo "run.sh: suite '$running' did not complete (status $status): the previous" \
      "$out/$running.jsonl is untouched; the rows it measured are kept in" \
      "$out/.$running.jsonl.partial" >&2
  fi
}
trap on_exit EXIT   # (bash runs it on SIGTERM too)
trap 'exit 130' INT  # on Ctrl-C, once the benchmark has ended: the trap above then sees 130, not 1
# RF_BENCH: the step_bench command (a GPU bundle runs it through its loader, launch/gpu-bundle.sh).
read -r -a bench <<< "${RF_BENCH:-$build/bench/step_bench}"
ref_cfg="$root/bench/reference.yaml"
py="${REFERENCE_PYTHON:-python3}"
[ -n "${RF_BENCH:-}" ] || [ -x "${bench[0]}" ] || "$root/launch/build.sh"
# The references' torch computes with the same OpenBLAS: give it the kernels the trainer runs. On
# a CPU that OpenBLAS 0.3.21 does not know it falls back to its Prescott (SSE3) kernels; the
# trainer restarts itself out of that (kernels/cpu/openblas_core.h), torch would stay on them
# (reformer-pytorch at 4K fp32 3.1x slower on an Emerald Rapids Xeon, 2026-12-06).
if [ -z "${OPENBLAS_CORETYPE:-}" ] && [ -x "$build/reformer" ]; then
  core="$("$build/reformer" --version | sed -n 's/.*, kernel \([A-Za-z0-9]*\) (OPENBLAS_CORETYPE.*/\1/p')"
  if [ -n "$core" ]; then export OPENBLAS_CORETYPE="$core"; fi
fi

step() {  # step <suite> <steps> <overrides...>; on the CPU it also times the attention launchers
  local suite="$1" steps="$2"; shift 2
  local sets=() profile=(--profile)
  for s in "$@"; do sets+=(--set "$s"); [[ "$s" == runtime.device=cuda ]] && profile=(); done
  "${bench[@]}" --config "$ref_cfg" --steps "$steps" "${profile[@]}" "${sets[@]}" | record "$suite"
}
axial() { echo "model.axial_shape=[$(( $1 / 64 )),64]"; }

# bf16 on the CPU needs AVX512-BF16 or AMX (the trainer refuses it otherwise, naming the CPU's
# instruction set); on other CPUs the throughput suite compares fp32 only.
precisions=(fp32)
if grep -qwE 'avx512_bf16|amx_bf16' /proc/cpuinfo; then
  precisions+=(bf16)
else
  echo "note: this CPU has neither AVX512-BF16 nor AMX-BF16: the throughput suite runs fp32 only" >&2
fi

if [[ "$suite" == throughput || "$suite" == all ]]; then
  begin throughput
  for L in 4096 65536; do
    steps=4; [ "$L" -gt 16384 ] && steps=2
    for _ in 1 2 3; do  # alternate ours and the reference so drift hits both
      for precision in "${precisions[@]}"; do
        step throughput "$steps" "train.seq_len=$L" "$(axial $L)" "runtime.precision=$precision"
      done
      if "$py" -c "import reformer_pytorch" 2>/dev/null; then
        for precision in "${precisions[@]}"; do  # bf16: under autocast
          "$py" "$root/bench/reference_pytorch.py" --seq-len "$L" --steps "$steps" \
            --precision "$precision" | record throughput
        done
      fi
      [ "$L" -gt 16384 ] && break
    done
  done
  finish
fi
if [[ "$suite" == dropout || "$suite" == all ]]; then
  # The reference model at 4K with dropout 0.2: ours on the attention probabilities
  # (model.attention_dropout) and on the residual branches, the feed-forward's hidden activations
  # and the embeddings (model.dropout); reformer-pytorch on the attention probabilities and the
  # feed-forward's hidden activations (ReformerLM has no other), so ours draws more masks.
  begin dropout
  for _ in 1 2 3; do
    for precision in "${precisions[@]}"; do
      step dropout 4 "runtime.precision=$precision" model.dropout=0.2 model.attention_dropout=0.2
    done
    if "$py" -c "import reformer_pytorch" 2>/dev/null; then
      for precision in "${precisions[@]}"; do
        "$py" "$root/bench/reference_pytorch.py" --seq-len 4096 --steps 4 --dropout 0.2 \
          --precision "$precision" | record dropout
      done
    fi
  done
  finish
fi
if [[ "$suite" == length || "$suite" == all ]]; then
  begin length
  for L in 2048 4096 8192 16384 32768; do step length 2 "train.seq_len=$L" "$(axial $L)"; done
  for L in 2048 4096 8192; do step length 2 "train.seq_len=$L" "$(axial $L)" "model.attention=[dense]"; done
  finish
fi
if [[ "$suite" == depth || "$suite" == all ]]; then
  begin depth
  for layers in 2 6 12 24; do step depth 1 "train.seq_len=16384" "$(axial 16384)" "model.n_layers=$layers"; done
  for layers in 2 6 12; do
    step depth 1 "train.seq_len=16384" "$(axial 16384)" "model.n_layers=$layers" "model.reversible=false"
    step depth 1 "train.seq_len=16384" "$(axial 16384)" "model.n_layers=$layers" "model.reversible=false" \
      "model.recompute=layers"
  done
  finish
fi
if [[ "$suite" == million || "$suite" == all ]]; then
  begin million
  # One step on a single sequence of 2^20 tokens with a smaller model (d_model 128, 2 layers).
  step million 1 "train.seq_len=1048576" "model.axial_shape=[1024,1024]" "model.d_model=128" \
    "model.d_ff=512" "model.n_layers=2" "model.n_heads=2" "model.d_head=64" "model.ff_chunk=4096" \
    "model.head_chunk=4096"
  finish
fi
if [[ "$suite" == gpu ]]; then
  # Ours at fp32, tf32 and bf16; reformer-pytorch and a dense Transformer with PyTorch's
  # scaled_dot_product_attention (flash) at the same precisions, when the Python has them; then
  # the paper-size model (configs/enwik8.yaml sizes, d_model 1024, 12 layers) at bf16.
  begin gpu
  for L in 4096 16384 65536; do
    for precision in fp32 tf32 bf16; do
      step gpu 5 "train.seq_len=$L" "$(axial $L)" runtime.device=cuda "runtime.precision=$precision"
      if "$py" -c "import reformer_pytorch" 2>/dev/null; then
        "$py" "$root/bench/reference_pytorch.py" --device cuda --seq-len "$L" --steps 5 \
          --precision "$precision" | record gpu
      fi
      if "$py" -c "import torch.nn.functional as F; F.scaled_dot_product_attention" 2>/dev/null; then
        "$py" "$root/bench/dense_sdpa.py" --device cuda --seq-len "$L" --steps 5 \
          --precision "$precision" | record gpu
      fi
    done
  done
  for L in 4096 16384 65536; do  # the same model without feed-forward and head chunks, as a GPU
    # run gets it by default (model.ff_chunk, head_chunk: auto): fewer, larger GEMMs
    for precision in fp32 bf16; do
      step gpu 5 "train.seq_len=$L" "$(axial $L)" runtime.device=cuda "runtime.precision=$precision" \
        model.ff_chunk=0 model.head_chunk=0
    done
  done
  for L in 4096 16384 65536; do  # stored layers that keep their activations (model.recompute:
    # none: a quarter fewer FLOPs than reversible layers, about 0.75 GiB per layer at 64K), beside
    # reformer-pytorch's irreversible blocks
    for precision in fp32 bf16; do
      step gpu 5 "train.seq_len=$L" "$(axial $L)" runtime.device=cuda "runtime.precision=$precision" \
        model.reversible=false
      if "$py" -c "import reformer_pytorch" 2>/dev/null; then
        "$py" "$root/bench/reference_pytorch.py" --device cuda --seq-len "$L" --steps 5 \
          --precision "$precision" --stored-activations | record gpu
      fi
    done
  done
  for L in 4096 16384; do  # the whole step from CUDA graphs (runtime.step_graphs), fp32 and bf16
    for precision in fp32 bf16; do
      step gpu 5 "train.seq_len=$L" "$(axial $L)" runtime.device=cuda "runtime.precision=$precision" \
        runtime.step_graphs=true
    done
  done
  for L in 16384 65536; do  # the paper's enwik8 model size
    step gpu 3 "train.seq_len=$L" "model.axial_shape=[$(( L / 512 )),512]" model.d_model=1024 \
      model.d_ff=4096 model.n_layers=12 model.n_heads=8 model.d_head=128 model.ff_chunk=4096 \
      model.head_chunk=4096 runtime.device=cuda runtime.precision=bf16
  done
  step gpu 1 "train.seq_len=1048576" "model.axial_shape=[1024,1024]" "model.d_model=128" \
    "model.d_ff=512" "model.n_layers=2" "model.n_heads=2" "model.d_head=64" "model.ff_chunk=4096" \
    "model.head_chunk=4096" runtime.device=cuda
  finish
fi
if [[ "$suite" == ranks || "$suite" == all ]]; then
  begin ranks
  cores="$(nproc)"
  # With step graphs too: the graph then holds the averages (they start at their place in it).
  for n in 1 2 4; do
    for graphs in false true; do
      for overlap in on off; do
        threads=$(( cores / n )); [ "$threads" -ge 1 ] || threads=1
        mpirun --allow-run-as-root --oversubscribe --bind-to none -np "$n" -x "OMP_NUM_THREADS=$threads" \
          "${bench[@]}" --config "$ref_cfg" --steps 6 --overlap "$overlap" --set train.seq_len=4096 \
          --set runtime.step_graphs="$graphs" | record ranks
        [ "$n" -eq 1 ] && break 2
      done
    done
  done
  finish
fi
if [[ "$suite" == allreduce || "$suite" == all ]]; then
  begin allreduce
  for n in 2 4; do
    mpirun --allow-run-as-root --oversubscribe --bind-to none -np "$n" \
      "$build/bench/allreduce_bench" --json | record allreduce
  done
  finish
fi
