#!/usr/bin/env bash
# Packs a CUDA build of the trainer, with the shared libraries it needs that a GPU machine may not
# have, into one folder and one archive (DIR.tar.xz, about 25 MB) to carry to a GPU machine without
# package access; unpack it there and run its `check.sh`. The folder holds bin/ (reformer,
# step_bench, allreduce_bench, attention_bench, gpu_test, selftest_test),
# lib/ (OpenBLAS, oneDNN, HDF5, Open MPI, yaml-cpp, GoogleTest and their dependencies, and the
# C and C++ runtimes with their loader, so an older glibc on the target does not matter), the
# configs and the bench scripts. The CUDA libraries (cudart, cuBLAS, NCCL) are far larger than
# the rest (cuBLAS alone is hundreds of MB); the target's are used: a CUDA toolkit, or the
# nvidia-* wheels of a Python with torch, which check.sh finds. --with-cuda-libs copies them too.
#
#   launch/gpu-bundle.sh [--out DIR] [--arch "80;90"] [--with-cuda-libs]
#   # on the GPU machine:
#   tar xf gpu-bundle.tar.xz
#   gpu-bundle/check.sh     # selftest --device cuda, the GPU tests, bench/run.sh gpu
#   # with little GPU time: results written to DIR as they come, nothing started after 8 minutes
#   RF_RESULTS_DIR=DIR RF_CHECK_BUDGET_S=480 gpu-bundle/check.sh
#   DIR/run.sh reformer train --config DIR/configs/default.yaml --set runtime.device=cuda
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/gpu-bundle"
arch="80;90"
with_cuda=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --arch) arch="$2"; shift 2 ;;
    --with-cuda-libs) with_cuda=1; shift ;;
    *) echo "gpu-bundle: unknown argument '$1' (use --out DIR, --arch LIST, --with-cuda-libs)" >&2
       exit 2 ;;
  esac
done

build="${RF_GPU_BUILD_DIR:-$root/build-gpu}"
echo "gpu-bundle: building in $build (CUDA architectures $arch, CPU code for x86-64-v3)"
# Always from scratch: an object left by an interrupted build has no recorded header
# dependencies, and a stale one would be carried to the GPU machine unnoticed.
rm -rf "$build"
"$root/launch/setup.sh"
RF_BUILD_DIR="$build" "$root/launch/build.sh" -DRF_CUDA=ON -DRF_MARCH=x86-64-v3 \
  "-DCMAKE_CUDA_ARCHITECTURES=$arch"


rm -rf "$out.tmp"
mkdir -p "$out.tmp/bin" "$out.tmp/lib"
binaries=("$build/reformer" "$build/bench/step_bench" "$build/bench/allreduce_bench"
          "$build/bench/attention_bench" "$build/tests/gpu_test" "$build/tests/selftest_test")
for b in "${binaries[@]}"; do
  [ -x "$b" ] || { echo "gpu-bundle: $b was not built" >&2; exit 1; }
  cp "$b" "$out.tmp/bin/"
done
# Every shared library the binaries load, except the CUDA ones (unless asked for) and the
# kernel driver (libcuda, which comes with the GPU's driver).
cuda_lib='lib(cudart|cublas|cublasLt|nccl|cuda)\.so'
ldd "${binaries[@]}" | awk '/=> \// {print $3} /^\t\/lib.*ld-linux/ {print $1}' | sort -u |
  while read -r lib; do
    name="$(basename "$lib")"
    if [[ "$name" =~ ^libcuda\.so ]]; then continue; fi
    if [[ "$name" =~ $cuda_lib ]] && [ "$with_cuda" -eq 0 ]; then continue; fi
    cp -L "$lib" "$out.tmp/lib/$name"
  done
# Open MPI loads its components (and PMIx, hwloc plugins) at run time; single-rank runs need none
# of them beyond what ldd lists, multi-rank runs use the target's mpirun.
cp -r "$root/configs" "$out.tmp/configs"
mkdir -p "$out.tmp/bench"
cp "$root/bench/run.sh" "$root/bench/reference.yaml" "$root/bench/reference_pytorch.py" \
  "$root/bench/dense_sdpa.py" "$root/bench/torch_step_timer.py" "$root/bench/summarize.py" \
  "$out.tmp/bench/"
git -C "$root" log -1 --format='%H %s' > "$out.tmp/COMMIT" 2>/dev/null || true

cat > "$out.tmp/run.sh" <<'EOF'
#!/usr/bin/env bash
# Runs one of the bundle's programs with the bundle's libraries and loader:
#   run.sh reformer selftest --device cuda
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
prog="$1"; shift
cuda_dirs=()
for d in ${CUDA_HOME:-/usr/local/cuda}/lib64 /usr/local/cuda/lib64 /usr/lib/x86_64-linux-gnu; do
  [ -d "$d" ] && cuda_dirs+=("$d")
done
# The nvidia-* wheels of any Python with torch (cuBLAS, cudart, NCCL).
for py in "${REFERENCE_PYTHON:-}" python3; do
  [ -n "$py" ] && command -v "$py" > /dev/null || continue
  site="$("$py" -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null || true)"
  for s in $site; do
    for d in "$s"/nvidia/*/lib; do [ -d "$d" ] && cuda_dirs+=("$d"); done
  done
done
path="$here/lib"
for d in "${cuda_dirs[@]}"; do path="$path:$d"; done
loader="$(ls "$here"/lib/ld-linux-x86-64.so.* 2>/dev/null | head -1)"
exec "$loader" --library-path "$path${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$here/bin/$prog" "$@"
EOF
cat > "$out.tmp/check.sh" <<'EOF'
#!/usr/bin/env bash
# On a GPU machine, most important first: every kernel op against the CPU reference (fp32), the
# GPU tests, selftest at bf16 and tf32, the fused attention passes alone, each launch's time in a
# 16K-token step, a Transformer-XL step with and without its memory, then throughput.
#   RF_RESULTS_DIR=DIR  where each stage's output goes (default: results/ beside this script);
#                       written as each stage runs, so a run cut short leaves what it measured
#   RF_CHECK_BUDGET_S=N stop starting stages after N seconds: each runs under a timeout of what
#                       is left, and one estimated to need more than that is skipped (named in
#                       skipped.txt)
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
results="${RF_RESULTS_DIR:-$here/results}"
budget="${RF_CHECK_BUDGET_S:-0}"
mkdir -p "$results"
cd "$here" || exit 1
cp COMMIT "$results/" 2>/dev/null || true
status=0

# stage NAME ESTIMATED_S COMMAND...: runs COMMAND, its output in NAME.txt; returns its status
# (124: the budget ran out while it ran; 125: skipped for the budget).
stage() {
  local name="$1" estimate="$2"; shift 2
  local limit=()
  if [ "$budget" -gt 0 ]; then
    local left=$((budget - SECONDS))
    if [ "$left" -lt "$estimate" ]; then
      echo "== skipped $name: ${left} s of the budget left, it needs about ${estimate} s" |
        tee -a "$results/skipped.txt"
      return 125
    fi
    limit=(timeout -k 10 "$left")
  fi
  echo "== $name ($SECONDS s so far)"
  "${limit[@]}" "$@" 2>&1 | tee "$results/$name.txt"
  local rc="${PIPESTATUS[0]}"
  [ "$rc" -eq 0 ] || status=1
  return "$rc"
}

sanitizer="$(command -v compute-sanitizer || ls "${CUDA_HOME:-/usr/local/cuda}"/bin/compute-sanitizer 2>/dev/null || true)"
selftest() {  # selftest PRECISION
  stage "selftest-$1" 20 ./run.sh reformer selftest --device cuda --precision "$1"
  local rc=$?
  if [ "$rc" -eq 0 ] || [ "$rc" -ge 124 ]; then return; fi
  # A fault inside a kernel surfaces at a later call; with every launch waited for it is
  # reported by the launch that made it, and compute-sanitizer (where the machine has one) names
  # the access.
  CUDA_LAUNCH_BLOCKING=1 stage "selftest-$1-blocking" 20 \
    ./run.sh reformer selftest --device cuda --precision "$1"
  if [ -n "$sanitizer" ]; then
    stage "selftest-$1-memcheck" 60 "$sanitizer" --tool memcheck \
      ./run.sh reformer selftest --device cuda --precision "$1"
  fi
}

selftest fp32
stage gpu-test 60 ./run.sh gpu_test
selftest bf16
selftest tf32
# The fused attention passes alone (the reference model's LSH layer, LSH-like slot orders).
for tokens in 4096 65536; do
  stage "attention-bench-$tokens" 20 ./run.sh attention_bench --device cuda --seq-len "$tokens"
done
for precision in fp32 bf16; do
  stage "launch-times-16k-$precision" 40 ./run.sh step_bench --config bench/reference.yaml \
    --set train.seq_len=16384 --set "model.axial_shape=[128,128]" --set runtime.device=cuda \
    --set "runtime.precision=$precision" --steps 3 --profile-ops
done
# Transformer-XL's base (segments of 512, memory 512): a step with the memory and without it.
for memory in 512 0; do
  stage "transformer-xl-memory-$memory" 30 ./run.sh step_bench \
    --config configs/transformer_xl_enwik8.yaml --set runtime.device=cuda \
    --set "model.memory_len=$memory" --steps 5 --warmup 2
done
RF_BENCH="$here/run.sh step_bench" RF_BENCH_RESULTS="$results" stage bench-gpu 300 bench/run.sh gpu
if command -v python3 > /dev/null && [ -s "$results/gpu.jsonl" ]; then
  RF_BENCH_RESULTS="$results" python3 bench/summarize.py gpu | tee "$results/summary.md"
fi
skipped=0
[ -f "$results/skipped.txt" ] && skipped="$(wc -l < "$results/skipped.txt")"
echo "== done in $SECONDS s (status $status; $skipped stages skipped for the budget)" |
  tee -a "$results/done.txt"
exit $status
EOF
chmod +x "$out.tmp/run.sh" "$out.tmp/check.sh"
rm -rf "$out" "$out.tar.xz"
mv "$out.tmp" "$out"
tar -C "$(dirname "$out")" -cf - "$(basename "$out")" | xz -T0 -6 > "$out.tar.xz"
size="$(du -sm "$out.tar.xz" | cut -f1)"
echo "gpu-bundle: $out.tar.xz ($size MiB, $(du -sm "$out" | cut -f1) MiB unpacked): unpack it on the"
echo "  GPU machine and run $(basename "$out")/check.sh"
if [ "$size" -ge 64 ]; then
  echo "gpu-bundle: warning: the archive is $size MiB, over 64 MiB" >&2
fi
