#!/usr/bin/env bash
# Packs a CUDA build of the trainer, with the shared libraries it needs that a GPU machine may not
# have, into one folder and one archive (DIR.tar.xz, about 28 MiB) to carry to a GPU machine without
# package access; unpack it there and run its `check.sh`. The folder holds bin/ (reformer,
# step_bench, allreduce_bench, attention_bench, gpu_test, selftest_test),
# lib/ (OpenBLAS, oneDNN, HDF5, Open MPI, yaml-cpp, GoogleTest and their dependencies, and the
# C and C++ runtimes with their loader, so an older glibc on the target does not matter), the
# configs and the bench scripts. The CUDA libraries (cudart, cuBLAS, NCCL) are far larger than
# the rest (cuBLAS alone is hundreds of MB); the target's are used: a CUDA toolkit, or the
# nvidia-* wheels of a Python with torch, which check.sh finds. --with-cuda-libs copies them too.
#
#   launch/gpu-bundle.sh [--out DIR] [--arch "80;90"] [--with-cuda-libs] [--reuse-build]
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
reuse=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --arch) arch="$2"; shift 2 ;;
    --with-cuda-libs) with_cuda=1; shift ;;
    --reuse-build) reuse=1; shift ;;  # pack the last bundle build again (its commit is kept)
    *) echo "gpu-bundle: unknown argument '$1' (use --out DIR, --arch LIST, --with-cuda-libs, --reuse-build)" >&2
       exit 2 ;;
  esac
done

build="${RF_GPU_BUILD_DIR:-$root/build-gpu}"
if [ "$reuse" -eq 1 ]; then
  [ -s "$build/bundle-commit" ] || { echo "gpu-bundle: --reuse-build: $build holds no finished bundle build" >&2; exit 1; }
  echo "gpu-bundle: packing the build in $build again (built at $(cut -c1-12 "$build/bundle-commit"))"
else
  echo "gpu-bundle: building in $build (CUDA architectures $arch, CPU code for x86-64-v3)"
  # Always from scratch: an object left by an interrupted build has no recorded header
  # dependencies, and a stale one would be carried to the GPU machine unnoticed.
  rm -rf "$build"
  "$root/launch/setup.sh"
  RF_BUILD_DIR="$build" "$root/launch/build.sh" -DRF_CUDA=ON -DRF_MARCH=x86-64-v3 \
    "-DCMAKE_CUDA_ARCHITECTURES=$arch"
  git -C "$root" log -1 --format='%H %s' > "$build/bundle-commit" 2>/dev/null || echo unknown > "$build/bundle-commit"
fi


rm -rf "$out.tmp"
mkdir -p "$out.tmp/bin" "$out.tmp/lib/glibc"
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
    # The C library and its loader, and the C++ runtime built against it, go apart: they are
    # used only where the target's glibc is older than this machine's. Elsewhere the target's own
    # are, since its libraries (NCCL, cuBLAS) may need a newer glibc than this one.
    if [[ "$name" =~ ^(ld-linux|libc\.|libm\.|libpthread\.|libdl\.|librt\.|libresolv\.|libstdc\+\+\.|libgcc_s\.) ]]; then
      cp -L "$lib" "$out.tmp/lib/glibc/$name"
    else
      cp -L "$lib" "$out.tmp/lib/$name"
    fi
  done
getconf GNU_LIBC_VERSION | awk '{print $2}' > "$out.tmp/lib/glibc/VERSION"
# Open MPI loads its components (and PMIx, hwloc plugins) at run time; single-rank runs need none
# of them beyond what ldd lists, multi-rank runs use the target's mpirun.
cp -r "$root/configs" "$out.tmp/configs"
mkdir -p "$out.tmp/bench"
cp "$root/bench/run.sh" "$root/bench/reference.yaml" "$root/bench/reference_pytorch.py" \
  "$root/bench/dense_sdpa.py" "$root/bench/torch_step_timer.py" "$root/bench/summarize.py" \
  "$out.tmp/bench/"
cp "$build/bundle-commit" "$out.tmp/COMMIT"

cp "$root/launch/gpu-bundle-run.sh" "$out.tmp/run.sh"
cp "$root/launch/gpu-check.sh" "$out.tmp/gpu-check.sh"
cat > "$out.tmp/check.sh" <<'EOF'
#!/usr/bin/env bash
# On a GPU machine: selftest, the GPU tests and the throughput rows, most important first
# (gpu-check.sh says what and in which order).
#   RF_RESULTS_DIR=DIR  where each stage's output goes (default: results/ beside this script);
#                       written as each stage runs, so a run cut short leaves what it measured
#   RF_CHECK_BUDGET_S=N start no stage that would not finish within N seconds in all (skipped
#                       ones are named in skipped.txt); RF_CHECK_ONLY / RF_CHECK_SKIP select stages
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$here/gpu-check.sh" "$here" "${RF_RESULTS_DIR:-$here/results}" "${RF_CHECK_BUDGET_S:-0}"
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
