#!/usr/bin/env bash
# A GPU bundle's run.sh (launch/gpu-bundle.sh copies it in): runs one of the bundle's programs
# with the bundle's libraries, the GPU machine's CUDA libraries, and the bundle's C runtime and
# loader where the machine's glibc is older than the one the bundle was built with.
#   run.sh reformer selftest --device cuda
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[ $# -ge 1 ] || { echo "usage: run.sh PROGRAM [ARGS...] (a program of $here/bin)" >&2; exit 2; }
prog="$1"; shift
[ -x "$here/bin/$prog" ] || { echo "run.sh: no program '$prog' in $here/bin" >&2; exit 2; }
[ -s "$here/lib/glibc/VERSION" ] ||
  { echo "run.sh: $here/lib/glibc/VERSION is missing: not a bundle of launch/gpu-bundle.sh" >&2; exit 2; }
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
# With a glibc at least as new as the build machine's, the target's own C and C++ runtimes and
# loader (its NCCL and cuBLAS may need them); with an older one, the bundle's.
built="$(cat "$here/lib/glibc/VERSION")"
target="$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}')"
if [ -n "$target" ] && [ "$(printf '%s\n%s\n' "$built" "$target" | sort -V | head -1)" = "$built" ]; then
  export LD_LIBRARY_PATH="$path${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  exec "$here/bin/$prog" "$@"
fi
loader="$(ls "$here"/lib/glibc/ld-linux-x86-64.so.* | head -1)"
exec "$loader" --library-path "$here/lib/glibc:$path${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$here/bin/$prog" "$@"
