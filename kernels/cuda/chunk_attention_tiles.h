// The GPU's tiled implementation of the fused chunked-attention passes (the reference arithmetic
// is in kernels/ops/chunk_attention.h): one thread block per tile of a chunk's queries (or, for
// the key gradients, of its keys), the window's keys and values staged in shared memory a tile at a
// time, and each query (key) row held in registers by D / 32 threads that combine their partial dot
// products with warp shuffles. Head widths 32, 64 and 128; other widths use the reference functors.
//
// STATUS: compiled (nvcc, sm_80 and sm_90, warnings as errors) but NOT YET RUN ON A GPU. A GPU run
// checks it against the CPU reference before training (runtime.verify_kernels) and falls back to
// the reference functors if it differs; `reformer selftest --device cuda` reports it op by op.
#pragma once

#include <cuda_runtime.h>

#include "kernels/executor.h"

namespace rf::cuda {

// Runs one pass over all segments of p on `stream`. Returns false (and launches nothing) when
// there is no tiled kernel for p's head width.
bool chunk_attention_tiled(ChunkAttentionPass pass, const ChunkAttentionParams& p,
                           cudaStream_t stream);

}  // namespace rf::cuda
