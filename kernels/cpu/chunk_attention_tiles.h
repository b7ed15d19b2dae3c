// The CPU's tiled implementation of the fused chunked-attention passes (the reference arithmetic
// is in kernels/ops/chunk_attention.h). The forward's work items are tiles of up to 64 query slots
// of one chunk; the gradients' are whole chunks (every gradient of a window in one pass) or, when
// dense attention has too few chunks to go round the threads, tiles of query slots and of key
// slots. Each gathers its queries, keys and values into cache-resident tiles, multiplies them
// with libxsmm's kernels (kernels/cpu/small_gemm.h), and keeps the scores in a 64 x 64 tile:
// softmax with a running maximum over the key tiles of the window, probabilities
// recomputed from the stored statistics in the backward. Causal tiles that are entirely masked
// are skipped when slots are in the original order (local and dense attention).
#pragma once

#include "kernels/executor.h"

namespace rf::cpu {

// The tiles' matrix products: fp32 (libxsmm's JIT kernels, or register-blocked loops where it
// has none), or bf16 operands with fp32 accumulation on AMX (kernels/cpu/amx_tiles.h) for
// runtime.precision = bf16. bf16 covers the forward and the look-back gradient pass (LSH and local
// attention) of heads at least 16 wide; dense attention's gradients and narrower heads stay fp32.
enum class TileProducts { kFp32, kBf16 };

// Whether TileProducts::kBf16 can run here (AMX-BF16, granted by the kernel, AVX-512 build).
bool bf16_tile_products_available();

// Whether dense attention's gradients (no look-back) run as one work item per chunk, or, with
// too few chunks (of all segments) to keep `threads` busy, as separate items for the query tiles
// and the key tiles, which recompute the scores twice. Both add the same terms in the same order
// (dQ over key tiles, dK and dV over query tiles, each from zero): the same bits, so the choice
// may follow the thread count.
bool dense_gradients_by_chunk(int64_t chunks, int64_t threads);

// Runs one pass over all segments of p with OpenMP threads.
void chunk_attention_tiled(ChunkAttentionPass pass, const ChunkAttentionParams& p,
                           TileProducts products = TileProducts::kFp32);

}  // namespace rf::cpu
