// The launches of the CUDA executor's tiled attention passes: the fp32 kernels of
// chunk_attention_kernels.cuh and the tensor-core forward of mma_attention_kernels.cuh, written
// over a launch policy (tuned_backend.cuh explains it) so that the tests' CPU emulation of the
// CUDA thread model runs them as the GPU does. Included by chunk_attention_tiles.cu and by the
// emulation's tests only.
#pragma once

#include <climits>

#include "kernels/cuda/chunk_attention_kernels.cuh"
#include "kernels/cuda/mma_attention_kernels.cuh"

namespace rf::cuda {
namespace attention_tiles {

// Whether every row the tensor-core kernels read is 8-byte aligned (they load column pairs as
// one 64-bit load): the arrays' starts and the row stride.
inline bool pairs_aligned(const ChunkAttentionParams& p) {
  auto aligned = [](const void* a) { return reinterpret_cast<uintptr_t>(a) % 8 == 0; };
  return aligned(p.q) && aligned(p.k) && aligned(p.v) && aligned(p.o) && p.ld % 2 == 0;
}

inline int64_t blocks_of(const ChunkAttentionParams& p, int tile) {
  const int64_t tiles = (p.layout.chunk + tile - 1) / tile;
  return p.segments * p.layout.n_chunks() * tiles;
}

// The tensor-core kernels, also compiled with and without dropout (KernelDropout).
template <class Launch, int D, bool kTerms, bool kDropout>
void run_mma_kernels(ChunkAttentionPass pass, const ChunkAttentionParams& p) {
  const int64_t query_blocks = blocks_of(p, kMmaQueryTile), key_blocks = blocks_of(p, kMmaKeyBlock);
  RF_CHECK(query_blocks < INT_MAX && key_blocks < INT_MAX, "too many attention tiles");
  const dim3 query_grid(static_cast<unsigned>(query_blocks));
  if (pass == ChunkAttentionPass::kForward) {
    Launch::kernel(mma_forward_tiles<D, kTerms, kDropout>, query_grid, dim3(kMmaThreads), p);
    return;
  }
  Launch::kernel(mma_query_grad_tiles<D, kTerms, kDropout>, query_grid, dim3(kMmaThreads), p);
  Launch::kernel(mma_key_grad_tiles<D, kTerms, kDropout>, dim3(static_cast<unsigned>(key_blocks)),
                 dim3(kMmaThreads), p);
}

template <class Launch, int D, bool kTerms>
void run_kernels(ChunkAttentionPass pass, const ChunkAttentionParams& p, bool tensor_cores) {
  if (tensor_cores) {
    if (p.dropout.active())
      run_mma_kernels<Launch, D, kTerms, true>(pass, p);
    else
      run_mma_kernels<Launch, D, kTerms, false>(pass, p);
    return;
  }
  constexpr int kSplit = D / kSlice;
  const int64_t query_blocks = blocks_of(p, kQueryTile), key_blocks = blocks_of(p, kKeyTile);
  RF_CHECK(query_blocks < INT_MAX && key_blocks < INT_MAX, "too many attention tiles");
  const dim3 query_grid(static_cast<unsigned>(query_blocks));
  if (pass == ChunkAttentionPass::kForward) {
    Launch::kernel(forward_tiles<D, kTerms>, query_grid, dim3(kQueryTile * kSplit), p);
    return;
  }
  Launch::kernel(query_grad_tiles<D, kTerms>, query_grid, dim3(kQueryTile * kSplit), p);
  Launch::kernel(key_grad_tiles<D, kTerms>, dim3(static_cast<unsigned>(key_blocks)),
                 dim3(kKeyTile * kSplit), p);
}

// The kernels compiled for the pass's score terms (ScoreOffsets): the masks alone, or with
// relative positions or a distance limit.
template <class Launch, int D>
void run(ChunkAttentionPass pass, const ChunkAttentionParams& p, bool tensor_cores) {
  if (p.has_score_terms())
    run_kernels<Launch, D, true>(pass, p, tensor_cores);
  else
    run_kernels<Launch, D, false>(pass, p, tensor_cores);
}

}  // namespace attention_tiles

// Runs one pass over all segments of p with the tiled kernels where the CUDA executor uses them:
// its tuned variant, without the reference functors' emulation of bf16 products (p.bf16_products,
// for selftest), and a head width they have; on tensor cores where the executor allows it
// (Executor::attention_on_tensor_cores), in fp32 otherwise. Returns false (and launches
// nothing) otherwise; the caller then runs the reference functors.
template <class Launch>
bool launch_chunk_attention(const Executor& ex, ChunkAttentionPass pass,
                            const ChunkAttentionParams& p) {
  if (ex.kernel_variant() != KernelVariant::kTuned || p.bf16_products) return false;
  if (p.segments == 0 || p.layout.n_slots == 0) return true;
  const bool tensor_cores = ex.attention_on_tensor_cores() && attention_tiles::pairs_aligned(p);
  switch (p.d) {
    case 32:
      attention_tiles::run<Launch, 32>(pass, p, tensor_cores);
      return true;
    case 64:
      attention_tiles::run<Launch, 64>(pass, p, tensor_cores);
      return true;
    case 128:
      attention_tiles::run<Launch, 128>(pass, p, tensor_cores);
      return true;
    default:
      return false;
  }
}

}  // namespace rf::cuda
