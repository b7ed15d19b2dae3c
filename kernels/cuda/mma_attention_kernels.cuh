// The attention forward pass on tensor cores, for bf16 tile products (an executor at bf16 whose
// start-up check passed them): FlashAttention-2's scheme over the chunked window
// (kernels/ops/chunk_attention.h has the reference arithmetic). A block holds 64 query slots of
// one chunk, a warp 16 of them; the window's keys (scaled) and values are staged 64 at a time in
// shared memory as bf16, the values transposed, and each warp computes its 16 x 64 score tile with
// mma.sync (warp_mma.cuh), masks it, updates its rows' running maximum and sum, and multiplies the
// rounded probabilities by the values from the score registers themselves. Operands are rounded
// as ChunkAttentionParams::bf16_products rounds them (queries, scaled keys, values and the dropped
// probabilities; sums and softmax in fp32), so selftest holds the pass to its bf16 tolerances.
// Head widths 32, 64 and 128. Included by attention_tile_launch.cuh.
//
// STATUS: NOT YET RUN ON A GPU (written 2026-12-04 without one). It runs on the CPU in the tests'
// emulation of the CUDA thread model, with mma.sync emulated lane by lane from the PTX ISA's
// fragment layouts, where it passes every attention check of `reformer selftest` at bf16. A GPU
// run checks it at start-up (runtime.verify_kernels) and falls back to the fp32 tiles if it
// differs.
#pragma once

#include "kernels/cuda/chunk_attention_kernels.cuh"
#include "kernels/cuda/warp_mma.cuh"

namespace rf::cuda {
namespace attention_tiles {

constexpr int kMmaQueryTile = 64;  // query slots per block: 4 warps of 16
constexpr int kMmaThreads = 128;
constexpr int kMmaKeyTile = 64;  // keys staged at a time: 8 column tiles of 8
// bf16 elements of padding per shared-memory row: rows 8 bf16 (4 banks) apart in the bank cycle,
// so the 8 groups of a warp's fragment loads hit different banks.
constexpr int kMmaPad = 8;

// A tile of kMmaKeyTile keys (scaled by their key factor) and values in shared memory as bf16,
// values transposed (column x of the head is row x), with the keys' positions.
template <int D>
struct MmaStagedKeys {
  static constexpr int kRows = kMmaKeyTile;
  alignas(16) uint16_t keys[kMmaKeyTile][D + kMmaPad];
  alignas(16) uint16_t values_t[D][kMmaKeyTile + kMmaPad];
  int32_t positions[kMmaKeyTile];
  float factors[kMmaKeyTile];

  // As StagedKeys::stage: slots first .. first + count - 1, zeros past count.
  __device__ void stage(const ChunkAttentionParams& p, int64_t s, int64_t first, int count) {
    for (int row = threadIdx.x; row < kMmaKeyTile; row += blockDim.x) {
      const int64_t t = row < count ? p.position(s, first + row) : -1;
      positions[row] = row < count ? static_cast<int32_t>(t) : INT32_MAX;
      factors[row] = row < count ? p.key_factor(s, t) : 0.0f;
    }
    __syncthreads();
    for (int e = threadIdx.x; e < kMmaKeyTile * D; e += blockDim.x) {
      const int row = e / D, x = e % D;
      float k = 0.0f, v = 0.0f;
      if (row < count) {
        const int64_t t = positions[row];
        k = p.key_row(s, t)[x] * factors[row];
        v = p.value_row(s, t)[x];
      }
      keys[row][x] = bf16_bits(k);
      values_t[x][row] = bf16_bits(v);
    }
  }
};

// The sum (or maximum) of a row's values over the four lanes of a group that hold its columns.
__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  return x + __shfl_xor_sync(0xffffffffu, x, 2);
}
__device__ __forceinline__ float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}

template <int D>
__global__ void __launch_bounds__(kMmaThreads) mma_forward_tiles(const ChunkAttentionParams p) {
  constexpr int kSteps = D / 16;    // k-steps of the score product over the head's columns
  constexpr int kColTiles = D / 8;  // column tiles of the output
  constexpr int kKeyTiles = kMmaKeyTile / 8;
  __shared__ MmaStagedKeys<D> staged;
  const ChunkLayout& L = p.layout;
  const BlockTile b = query_block_tile(p, kMmaQueryTile);
  if (b.count <= 0) return;  // (the whole block: no barrier is left waiting)
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, q = lane % 4;
  // This thread's rows of the block's tile: h = 0 is row warp * 16 + g, h = 1 the one 8 below.
  int64_t slot[2];
  int32_t qp[2];
  bool active[2];
  uint32_t qa[kSteps][4];  // the warp's 16 query rows as A fragments, one per k-step
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int row = warp * 16 + g + 8 * h;
    active[h] = row < b.count;
    slot[h] = b.first + row;
    const float* qr = nullptr;
    qp[h] = INT32_MAX;
    if (active[h]) {
      const int64_t t = p.position(b.segment, slot[h]);
      qp[h] = static_cast<int32_t>(t);
      qr = p.query_row(b.segment, t);
    }
#pragma unroll
    for (int ks = 0; ks < kSteps; ++ks) {
      const int c = ks * 16 + 2 * q;
      qa[ks][h] = qr ? pack_bf16x2(qr[c], qr[c + 1]) : 0u;
      qa[ks][h + 2] = qr ? pack_bf16x2(qr[c + 8], qr[c + 9]) : 0u;
    }
  }
  float acc[kColTiles][4];
#pragma unroll
  for (int n = 0; n < kColTiles; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[n][e] = 0.0f;
  float m[2] = {kNoMaxYet, kNoMaxYet}, l[2] = {0.0f, 0.0f};  // l: this lane's columns' part
  const DropoutMask drop = p.segment_dropout(b.segment);
  const int64_t rel_base = p.rel_scores || p.rel_grads ? p.relative_base(b.segment) : 0;
  for_each_window_tile(p, b, staged, [&](int nk, int64_t window_first) {
    float s[kKeyTiles][4];  // element e: row h = e / 2, key n * 8 + 2q + e % 2
#pragma unroll
    for (int n = 0; n < kKeyTiles; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) s[n][e] = 0.0f;
      const uint16_t* key = staged.keys[n * 8 + g];
#pragma unroll
      for (int ks = 0; ks < kSteps; ++ks) {
        const uint32_t kb[2] = {load_bf16x2(key + ks * 16 + 2 * q),
                                load_bf16x2(key + ks * 16 + 2 * q + 8)};
        mma_bf16_16x8x16(s[n], qa[ks], kb);
      }
    }
    float tile_max[2] = {kNoMaxYet, kNoMaxYet};
#pragma unroll
    for (int n = 0; n < kKeyTiles; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int kk = n * 8 + 2 * q + e % 2, h = e / 2;
        s[n][e] = kk < nk ? s[n][e] + p.score_offset_at(rel_base, qp[h], staged.positions[kk])
                          : kNoMaxYet;
        tile_max[h] = fmaxf(tile_max[h], s[n][e]);
      }
    float correction[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const float m_new = fmaxf(m[h], quad_max(tile_max[h]));
      correction[h] = exp_approx(m[h] - m_new);
      m[h] = m_new;
      l[h] *= correction[h];
    }
#pragma unroll
    for (int n = 0; n < kColTiles; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[n][e] *= correction[e / 2];
#pragma unroll
    for (int n = 0; n < kKeyTiles; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int kk = n * 8 + 2 * q + e % 2, h = e / 2;
        const float w = exp_approx(s[n][e] - m[h]);  // 0 past nk
        l[h] += w;
        s[n][e] =
            drop.active() && active[h] && kk < nk ? w * drop.scale(slot[h], window_first + kk) : w;
      }
      // O += P V: key tiles 2k and 2k + 1 of the scores are the A fragment of k-step k.
#pragma unroll
    for (int k = 0; k < kKeyTiles / 2; ++k) {
      const uint32_t pa[4] = {pack_bf16x2(s[2 * k][0], s[2 * k][1]),
                              pack_bf16x2(s[2 * k][2], s[2 * k][3]),
                              pack_bf16x2(s[2 * k + 1][0], s[2 * k + 1][1]),
                              pack_bf16x2(s[2 * k + 1][2], s[2 * k + 1][3])};
#pragma unroll
      for (int n = 0; n < kColTiles; ++n) {
        const uint16_t* column = staged.values_t[n * 8 + g] + k * 16 + 2 * q;
        const uint32_t vb[2] = {load_bf16x2(column), load_bf16x2(column + 8)};
        mma_bf16_16x8x16(acc[n], pa, vb);
      }
    }
  });
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const float sum = quad_sum(l[h]);
    if (!active[h]) continue;
    const int64_t i = b.segment * L.n_slots + slot[h];
    float* o = p.o + i * p.d;
    const float inv = 1.0f / sum;
#pragma unroll
    for (int n = 0; n < kColTiles; ++n) {
      o[n * 8 + 2 * q] = acc[n][2 * h] * inv;
      o[n * 8 + 2 * q + 1] = acc[n][2 * h + 1] * inv;
    }
    if (q == 0) {
      p.row_max[i] = m[h];
      p.row_log_sum[i] = logf(sum);
    }
  }
}

}  // namespace attention_tiles
}  // namespace rf::cuda
