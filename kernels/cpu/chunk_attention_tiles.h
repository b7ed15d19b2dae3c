// The CPU's tiled implementation of the fused chunked-attention passes (the reference arithmetic
// is in kernels/ops/chunk_attention.h). Work items are tiles of up to 64 query slots (or, for the
// key gradients, 64 key slots) of one chunk; each gathers its queries, keys and values into
// cache-resident tiles, multiplies them with kernels/cpu/tile_gemm.h, and keeps the scores in a
// 64 x 64 tile: softmax with a running maximum over the key tiles of the window, probabilities
// recomputed from the stored statistics in the backward. Causal tiles that are entirely masked
// are skipped when slots are in the original order (local and dense attention).
#pragma once

#include "kernels/executor.h"

namespace rf::cpu {

// The tiles' matrix products: fp32 (register-blocked AVX-512 or AVX2), or bf16 operands with
// fp32 accumulation on AMX (kernels/cpu/amx_tiles.h) for runtime.precision = bf16. bf16 covers
// the forward and the look-back gradient pass (LSH and local attention) of heads at least 16
// wide; dense attention's gradients and narrower heads stay fp32.
enum class TileProducts { kFp32, kBf16 };

// Whether TileProducts::kBf16 can run here (AMX-BF16, granted by the kernel, AVX-512 build).
bool bf16_tile_products_available();

// Runs one pass over all segments of p with OpenMP threads.
void chunk_attention_tiled(ChunkAttentionPass pass, const ChunkAttentionParams& p,
                           TileProducts products = TileProducts::kFp32);

}  // namespace rf::cpu
