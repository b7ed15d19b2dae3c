// The CUDA executor's tiled attention passes (the kernels: chunk_attention_kernels.cuh).
//
// STATUS: ran on an H200 (2026-12-04): `reformer selftest --device cuda` passes every op at fp32,
// bf16 and tf32, and the GPU tests pass. The kernels also run on the CPU in the tests' emulation
// of the CUDA thread model (tests/emulated_cuda_test.cpp), where they pass every attention check
// of `reformer selftest`. A GPU run checks them against the CPU reference before training
// (runtime.verify_kernels) and falls back to the reference functors if they differ.
#pragma once

#include "kernels/executor.h"

namespace rf::cuda {

// Runs one pass over all segments of p on the calling thread's default stream where the tiled
// kernels apply to `ex` and p (launch_chunk_attention in attention_tile_launch.cuh); returns
// false, launching nothing, where they do not.
bool chunk_attention_tiled(const Executor& ex, ChunkAttentionPass pass,
                           const ChunkAttentionParams& p);

}  // namespace rf::cuda
