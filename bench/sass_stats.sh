#!/usr/bin/env bash
# What the attention kernels compile to, on a machine without a GPU: compiles
# kernels/cuda/chunk_attention_tiles.cu for one architecture with ptxas's report and prints, per
# kernel, registers, stack, spills, shared memory and the instruction mix of the loop around its
# tensor-core products (bench/sass_stats.py says what is counted).
#   bench/sass_stats.sh [ARCH] [MATCH]     e.g. bench/sass_stats.sh 90 "64, plain, no dropout"
# Needs nvcc, and cuobjdump with nvdisasm: from the CUDA toolkit, from PATH, or else installed
# once from PyPI into build/sass-tools (packages nvidia-cuda-cuobjdump, nvidia-cuda-nvdisasm).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
arch="${1:-90}"
match="${2:-}"
[[ "$arch" =~ ^[0-9]+$ ]] || { echo "error: architecture '$arch' is not a number such as 90" >&2; exit 2; }
cuda="${CUDA_HOME:-/usr/local/cuda}"
nvcc="$cuda/bin/nvcc"
[ -x "$nvcc" ] || nvcc="$(command -v nvcc || true)"
[ -n "$nvcc" ] || { echo "error: no nvcc (looked in $cuda/bin and PATH)" >&2; exit 1; }

tools="$root/build/sass-tools"
find_tool() {  # prints the path of $1 from the toolkit, PATH or build/sass-tools
  local t
  for t in "$cuda/bin/$1" "$(command -v "$1" || true)" "$tools/nvidia/cu13/bin/$1"; do
    [ -n "$t" ] && [ -x "$t" ] && { echo "$t"; return 0; }
  done
  return 1
}
if ! find_tool cuobjdump >/dev/null || ! find_tool nvdisasm >/dev/null; then
  echo "installing cuobjdump and nvdisasm from PyPI into $tools" >&2
  python3 -m pip install --quiet --target "$tools" nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm >&2
  chmod +x "$tools"/nvidia/cu13/bin/* 2>/dev/null || true
fi
cuobjdump="$(find_tool cuobjdump)" || { echo "error: no cuobjdump" >&2; exit 1; }
nvdisasm="$(find_tool nvdisasm)" || { echo "error: no nvdisasm" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "compiling kernels/cuda/chunk_attention_tiles.cu for sm_$arch ..." >&2
"$nvcc" -DRF_WITH_CUDA=1 -I"$root" -isystem="$cuda/include" -O3 -DNDEBUG --expt-relaxed-constexpr \
  -std=c++17 "--generate-code=arch=compute_$arch,code=sm_$arch" -Xptxas -v \
  -c "$root/kernels/cuda/chunk_attention_tiles.cu" -o "$work/tiles.o" 2> "$work/ptxas.txt" ||
  { cat "$work/ptxas.txt" >&2; exit 1; }
NVDISASM_PATH="$(dirname "$nvdisasm")" PATH="$(dirname "$nvdisasm"):$PATH" \
  "$cuobjdump" -sass "$work/tiles.o" > "$work/tiles.sass"
python3 "$root/bench/sass_stats.py" "$work/ptxas.txt" "$work/tiles.sass" --match "$match"
