#!/usr/bin/env bash
# Installs the system packages the build and the tests need on a fresh Debian machine, as root.
# Idempotent and quick when everything is present (it only asks dpkg).
# `launch/setup.sh fuzz` adds clang and its libFuzzer runtime for fuzz/run.sh, `launch/setup.sh
# tidy` clang-tidy for launch/tidy.sh (the normal build needs only GCC).
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  ninja-build              # the build tool: schedules every target's objects at once (make waits
                           # for each library before compiling what links it)
  mold                     # the linker: links the ~100 test programs three times as fast as GNU ld
  libopenblas-openmp-dev   # CPU GEMM (OpenMP build: one threading model with our kernels)
  libdnnl-dev              # oneDNN: bf16 GEMMs on the CPU (runtime.precision: bf16)
  ocl-icd-opencl-dev       # only Recommended by libdnnl-dev, but its CMake config requires OpenCL
  libyaml-cpp-dev          # experiment files
  libhdf5-dev              # token shards and checkpoints
  libopenmpi-dev openmpi-bin  # multi-rank training
  libcli11-dev             # command line
  nlohmann-json3-dev       # JSON: safetensors headers and Hugging Face config.json
  libsentencepiece-dev     # subword tokenizer (reformer prepare --tokenizer sentencepiece)
  libgtest-dev             # tests
  python3-venv python3-torch python3-numpy  # interoperability tests (launch/python_env.sh)
  iproute2 nftables        # simulated hosts and their faults (launch/netns/: ip, tc, nft)
)
if [ "$(dpkg --print-architecture)" = amd64 ]; then
  packages+=(libxsmm-dev)  # libxsmm: JIT kernels for the CPU attention tiles' fp32 products (x86)
fi
if [ "${1:-}" = "fuzz" ]; then
  # libFuzzer; clang's OpenMP runtime; llvm-symbolizer-22 (fuzz/run.sh reads the reports' names)
  packages+=(clang-22 libclang-rt-22-dev libomp-22-dev llvm-22)
fi
if [ "${1:-}" = "tidy" ]; then
  packages+=(clang-tidy-22 libomp-22-dev)  # launch/tidy.sh; omp.h for the OpenMP sources
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "setup: installing ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "setup: these packages are missing and installing them needs root:" >&2
  echo "  sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
