// The CUDA executor's tiled attention passes (the kernels: chunk_attention_kernels.cuh).
//
// STATUS: compiled (nvcc, sm_80 and sm_90, warnings as errors) but NOT YET RUN ON A GPU. The
// kernels run on the CPU in the tests' emulation of the CUDA thread model
// (tests/emulated_cuda_test.cpp) and pass every attention check of `reformer selftest` there. A
// GPU run checks them against the CPU reference before training (runtime.verify_kernels) and falls
// back to the reference functors if they differ; `reformer selftest --device cuda` reports them op
// by op.
#pragma once

#include "kernels/executor.h"

namespace rf::cuda {

// Runs one pass over all segments of p on the calling thread's default stream where the tiled
// kernels apply to `ex` and p (launch_chunk_attention in chunk_attention_kernels.cuh); returns
// false, launching nothing, where they do not.
bool chunk_attention_tiled(const Executor& ex, ChunkAttentionPass pass,
                           const ChunkAttentionParams& p);

}  // namespace rf::cuda
