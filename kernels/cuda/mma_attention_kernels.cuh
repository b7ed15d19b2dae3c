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
#include "kernels/cuda/thread_index.cuh"
#include "kernels/cuda/warp_mma.cuh"

namespace rf::cuda {
namespace attention_tiles {

constexpr int kMmaQueryTile = 64;  // query slots per block: 4 warps of 16 rows
constexpr int kMmaKeyBlock = 64;   // key slots per block of the key gradients: 4 warps of 16
constexpr int kMmaThreads = 128;
constexpr int kMmaKeyTile = 64;  // keys staged at a time by the forward: 8 column tiles of 8
// Rows staged at a time by the gradient passes (keys for the query gradients, queries for the
// key gradients): they stage three or four bf16 copies, which at width 128 must stay under the
// 48 KB of static shared memory.
template <int D>
constexpr int mma_grad_tile() {
  return D == 128 ? 32 : 64;
}
// bf16 elements of padding per shared-memory row: rows 8 bf16 (4 banks) apart in the bank cycle,
// so the 8 groups of a warp's fragment loads hit different banks.
constexpr int kMmaPad = 8;

// A [kRows, D] tile of rows in shared memory as bf16, and the same transposed ([D, kRows]):
// B fragments along the head's columns (scores, dP) come from the first, along the rows (the
// products by P or dS) from the second.
template <int D, int kRows>
using Bf16Rows = uint16_t[kRows][D + kMmaPad];
template <int D, int kRows>
using Bf16Columns = uint16_t[D][kRows + kMmaPad];

// Two adjacent floats of global memory at an 8-byte aligned address: one 64-bit load on the GPU.
struct FloatPair {
  float lo, hi;
};
__device__ __forceinline__ FloatPair load_pair(const float* at) {
#ifdef __CUDA_ARCH__
  const float2 f = *reinterpret_cast<const float2*>(at);
  return {f.x, f.y};
#else
  require_gpu_alignment<sizeof(FloatPair)>(at);
  return {at[0], at[1]};
#endif
}

// Stores bf16 bits (lo, hi) at columns x, x + 1 (x even) of a row-major tile's row: one 32-bit
// store.
__device__ __forceinline__ void store_pair(uint16_t* row, int x, uint32_t pair) {
  require_gpu_alignment<sizeof(pair)>(row + x);
  *reinterpret_cast<uint32_t*>(row + x) = pair;
}

// For each pair of columns (x, x + 1) of each row < kRows of a staged tile, in an order that
// reads global rows contiguously: store(row, x).
template <int D, int kRows, class Store>
__device__ __forceinline__ void for_each_staged_pair(const Store& store) {
  for (int e = thread_x(); e < kRows * D / 2; e += threads_x())
    store(e / (D / 2), 2 * (e % (D / 2)));
}

// The key-side rows of a staged tile of slots: positions, key factors and the global key and
// value rows (found once per row: their offsets take 64-bit divisions), null past the count.
template <int kRows>
struct KeyRows {
  int32_t positions[kRows];
  float factors[kRows];
  const float* keys[kRows];
  const float* values[kRows];

  // Key slots first .. first + count - 1 (INT32_MAX, 0 and null past count), then a barrier.
  __device__ void find(const ChunkAttentionParams& p, int64_t s, int64_t first, int count) {
    for (int row = thread_x(); row < kRows; row += threads_x()) {
      const bool valid = row < count;
      const int64_t t = valid ? p.position(s, first + row) : -1;
      positions[row] = valid ? static_cast<int32_t>(t) : INT32_MAX;
      factors[row] = valid ? p.key_factor(s, t) : 0.0f;
      keys[row] = valid ? p.key_row(s, t) : nullptr;
      values[row] = valid ? p.value_row(s, t) : nullptr;
    }
    __syncthreads();
  }
  // Columns x, x + 1 of a row's scaled key and of its value (zeros past the count).
  __device__ FloatPair key_pair(int row, int x) const {
    if (!keys[row]) return {0.0f, 0.0f};
    const FloatPair k = load_pair(keys[row] + x);
    return {k.lo * factors[row], k.hi * factors[row]};
  }
  __device__ FloatPair value_pair(int row, int x) const {
    return values[row] ? load_pair(values[row] + x) : FloatPair{0.0f, 0.0f};
  }
};

// The forward's tile: kMmaKeyTile keys (scaled by their key factor) and values, values
// transposed, with the keys' positions. As StagedKeys::stage: zeros past count.
template <int D>
struct MmaStagedKeys {
  static constexpr int kRows = kMmaKeyTile;
  alignas(16) Bf16Rows<D, kRows> keys;
  alignas(16) Bf16Columns<D, kRows> values_t;
  KeyRows<kRows> rows;

  __device__ void stage(const ChunkAttentionParams& p, int64_t s, int64_t first, int count) {
    rows.find(p, s, first, count);
    for_each_staged_pair<D, kRows>([&](int row, int x) {
      const FloatPair k = rows.key_pair(row, x), v = rows.value_pair(row, x);
      store_pair(keys[row], x, pack_bf16x2(k.lo, k.hi));
      values_t[x][row] = bf16_bits(v.lo);
      values_t[x + 1][row] = bf16_bits(v.hi);
    });
  }
};

// The query gradients' tile: keys (scaled) as rows for the scores and as columns for dQ = dS K,
// values as rows for dP = dO V^T.
template <int D>
struct MmaGradKeys {
  static constexpr int kRows = mma_grad_tile<D>();
  alignas(16) Bf16Rows<D, kRows> keys;
  alignas(16) Bf16Columns<D, kRows> keys_t;
  alignas(16) Bf16Rows<D, kRows> values;
  KeyRows<kRows> rows;

  __device__ void stage(const ChunkAttentionParams& p, int64_t s, int64_t first, int count) {
    rows.find(p, s, first, count);
    for_each_staged_pair<D, kRows>([&](int row, int x) {
      const FloatPair k = rows.key_pair(row, x), v = rows.value_pair(row, x);
      const uint32_t pair = pack_bf16x2(k.lo, k.hi);
      store_pair(keys[row], x, pair);
      keys_t[x][row] = static_cast<uint16_t>(pair & 0xFFFFu);
      keys_t[x + 1][row] = static_cast<uint16_t>(pair >> 16);
      store_pair(values[row], x, pack_bf16x2(v.lo, v.hi));
    });
  }
};

// This thread's A fragments (warp_mma.cuh) of two rows of a 16-row tile, one per k-step of 16
// columns: rows r0 (the group's) and r1 (8 below), each times its factor; a null row is zeros.
template <int kSteps>
__device__ __forceinline__ void load_row_fragments(const float* r0, float f0, const float* r1,
                                                   float f1, int q, uint32_t (&a)[kSteps][4]) {
#pragma unroll
  for (int ks = 0; ks < kSteps; ++ks) {
    const int c = ks * 16 + 2 * q;
    auto fragment = [](const float* row, int x, float f) {
      if (!row) return 0u;
      const FloatPair v = load_pair(row + x);
      return pack_bf16x2(v.lo * f, v.hi * f);
    };
    a[ks][0] = fragment(r0, c, f0);
    a[ks][1] = fragment(r1, c, f1);
    a[ks][2] = fragment(r0, c + 8, f0);
    a[ks][3] = fragment(r1, c + 8, f1);
  }
}

template <int kTiles>
__device__ __forceinline__ void zero(float (&acc)[kTiles][4]) {
#pragma unroll
  for (int n = 0; n < kTiles; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[n][e] = 0.0f;
}

// acc[n] += A B over the n-tiles of B, for k-steps of 16 along B's staged rows: B (k, column n * 8
// + g) at rows[k][n * 8 + g] is read from `columns` (a transposed tile), and A, a 16 x kRows tile
// held in accumulator layout (element e of tile t: row e / 2 * 8 + g, column t * 8 + 2q + e % 2),
// is rounded to bf16 as it becomes the A fragments: tiles 2k and 2k + 1 are k-step k.
template <int kRows, int kColTiles, int kPitch>
__device__ __forceinline__ void multiply_accumulated(const float (&a)[kRows / 8][4],
                                                     const uint16_t (*columns)[kPitch], int g,
                                                     int q, float (&acc)[kColTiles][4]) {
#pragma unroll
  for (int k = 0; k < kRows / 16; ++k) {
    const uint32_t pa[4] = {pack_bf16x2(a[2 * k][0], a[2 * k][1]),
                            pack_bf16x2(a[2 * k][2], a[2 * k][3]),
                            pack_bf16x2(a[2 * k + 1][0], a[2 * k + 1][1]),
                            pack_bf16x2(a[2 * k + 1][2], a[2 * k + 1][3])};
#pragma unroll
    for (int n = 0; n < kColTiles; ++n) {
      mma_bf16_16x8x16(acc[n], pa, load_b_fragment(columns[n * 8 + g] + k * 16 + 2 * q).r);
    }
  }
}

// acc[n] = A B^T for the n-tiles of a staged [kRows, D] tile (B's row n * 8 + g is column
// n * 8 + g of the product), A this warp's 16 rows as fragments per k-step.
template <int kSteps, int kRows, int kPitch>
__device__ __forceinline__ void multiply_by_rows(const uint32_t (&a)[kSteps][4],
                                                 const uint16_t (*rows)[kPitch], int g, int q,
                                                 float (&acc)[kRows / 8][4]) {
  zero(acc);
#pragma unroll
  for (int n = 0; n < kRows / 8; ++n)
#pragma unroll
    for (int ks = 0; ks < kSteps; ++ks)
      mma_bf16_16x8x16(acc[n], a[ks], load_b_fragment(rows[n * 8 + g] + ks * 16 + 2 * q).r);
}

// The maximum of a row's values over the four lanes of a group that hold its columns (their sum
// is row_total<4>).
__device__ __forceinline__ float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}

// This thread's two rows of a block's tile of query slots (warp_mma.cuh's groups): h = 0 is row
// `first_row` (warp * 16 + g), h = 1 the one 8 below; past the tile's count a row is inactive,
// with position INT32_MAX and no query.
struct WarpRows {
  int64_t slot[2];
  int32_t position[2];
  bool active[2];
  const float* query[2];
};
__device__ __forceinline__ WarpRows warp_query_rows(const ChunkAttentionParams& p,
                                                    const BlockTile& b, int first_row) {
  WarpRows r;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int row = first_row + 8 * h;
    r.active[h] = row < b.count;
    r.slot[h] = b.first + row;
    r.position[h] = INT32_MAX;
    r.query[h] = nullptr;
    if (r.active[h]) {
      const int64_t t = p.position(b.segment, r.slot[h]);
      r.position[h] = static_cast<int32_t>(t);
      r.query[h] = p.query_row(b.segment, t);
    }
  }
  return r;
}

// Writes this thread's elements of two accumulated rows (rows h = 0, 1 of accumulator layout)
// times scale[h] to out[h] (a null row is skipped).
template <int kColTiles>
__device__ __forceinline__ void store_rows(const float (&acc)[kColTiles][4], float* const (&out)[2],
                                           const float (&scale)[2], int q) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    if (!out[h]) continue;
#pragma unroll
    for (int n = 0; n < kColTiles; ++n) {
      out[h][n * 8 + 2 * q] = acc[n][2 * h] * scale[h];
      out[h][n * 8 + 2 * q + 1] = acc[n][2 * h + 1] * scale[h];
    }
  }
}

// A segment's dropout as a kernel compiled with or without it sees it: kernels for runs without
// dropout (kDropout false) then hold none of its code, which takes registers (ptxas: 160 instead
// of 128 for the forward at width 64) whether or not it runs. The launcher picks the kernel by
// DropoutMask::active().
template <bool kDropout>
struct KernelDropout : DropoutMask {
  __device__ explicit KernelDropout(const DropoutMask& mask) : DropoutMask(mask) {}
  // Hides DropoutMask::active() on purpose: the kernels call it through this type only.
  // NOLINTNEXTLINE(bugprone-derived-method-shadowing-base-method)
  __device__ bool active() const { return kDropout; }
};

// The dropout multipliers of a thread's two adjacent columns of one row (window indices col and
// col + 1): one Philox block for both (DropoutMask::scale_pair_in); 1 without dropout or for an
// inactive row.
template <class Drop>
__device__ __forceinline__ void pair_keep(const Drop& drop, bool row_active, const DropoutRow& row,
                                          int64_t col, float (&keep)[2]) {
  const DropoutMask::Pair pair =
      drop.active() && row_active ? drop.scale_pair_in(row, col) : DropoutMask::Pair{1.0f, 1.0f};
  keep[0] = pair.first;
  keep[1] = pair.second;
}

template <int D, bool kTerms, bool kDropout>
__global__ void __launch_bounds__(kMmaThreads) mma_forward_tiles(const ChunkAttentionParams p) {
  constexpr int kSteps = D / 16;    // k-steps of the score product over the head's columns
  constexpr int kColTiles = D / 8;  // column tiles of the output
  constexpr int kKeyTiles = kMmaKeyTile / 8;
  __shared__ MmaStagedKeys<D> staged;
  RF_SHARED_UNDEFINED_AT_BLOCK_START(staged);
  const ChunkLayout& L = p.layout;
  const BlockTile b = query_block_tile(p, kMmaQueryTile);
  if (b.count <= 0) return;  // (the whole block: no barrier is left waiting)
  const int warp = warp_in_block(), lane = lane_in_warp(), g = lane / 4, q = lane % 4;
  const WarpRows rows = warp_query_rows(p, b, warp * 16 + g);
  uint32_t qa[kSteps][4];  // the warp's 16 query rows as A fragments, one per k-step
  load_row_fragments<kSteps>(rows.query[0], 1.0f, rows.query[1], 1.0f, q, qa);
  float acc[kColTiles][4];
  zero(acc);
  float m[2] = {kNoMaxYet, kNoMaxYet}, l[2] = {0.0f, 0.0f};  // l: this lane's columns' part
  const KernelDropout<kDropout> drop(p.segment_dropout(b.segment));
  const DropoutRow drop_rows[2] = {drop.row_of(rows.slot[0]), drop.row_of(rows.slot[1])};
  const ScoreOffsets<kTerms> offsets(p, b.segment);
  for_each_window_tile(p, b, staged, [&](int nk, int64_t window_first) {
    float s[kKeyTiles][4];  // element e: row h = e / 2, key n * 8 + 2q + e % 2
    multiply_by_rows<kSteps, kMmaKeyTile>(qa, staged.keys, g, q, s);
    float tile_max[2] = {kNoMaxYet, kNoMaxYet};
#pragma unroll
    for (int n = 0; n < kKeyTiles; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int kk = n * 8 + 2 * q + e % 2, h = e / 2;
        s[n][e] =
            kk < nk ? s[n][e] + offsets.at(rows.position[h], staged.rows.positions[kk]) : kNoMaxYet;
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
      for (int h = 0; h < 2; ++h) {
        const int kk = n * 8 + 2 * q;  // this thread's columns kk, kk + 1 (elements 2h, 2h + 1)
        float keep[2];
        pair_keep(drop, rows.active[h], drop_rows[h], window_first + kk, keep);
#pragma unroll
        for (int x = 0; x < 2; ++x) {
          const int e = 2 * h + x;
          const float w = exp_approx(s[n][e] - m[h]);  // 0 past nk
          l[h] += w;
          s[n][e] = kk + x < nk ? w * keep[x] : w;
        }
      }
    multiply_accumulated<kMmaKeyTile>(s, staged.values_t, g, q, acc);  // O += P V
  });
  float* out[2] = {nullptr, nullptr};
  float inv[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const float sum = row_total<4>(l[h]);
    inv[h] = 1.0f / sum;
    if (!rows.active[h]) continue;
    const int64_t i = b.segment * L.n_slots + rows.slot[h];
    out[h] = p.o + i * p.d;
    if (q == 0) {
      p.row_max[i] = m[h];
      p.row_log_sum[i] = logf(sum);
    }
  }
  store_rows(acc, out, inv, q);
}

// dQ of a block's 64 query slots (as query_grad_tiles, on tensor cores): per key tile, the scores
// S = Q K^T and dP = dO V^T, the probabilities recomputed from the saved statistics, dS = P (dP
// keep - delta + dlse), and dQ += dS K. Each dS of a relative score is added to rel_grads by the
// thread that holds it: a row's elements are distinct pairs of positions, except where the
// look-back wraps onto the chunk itself (one chunk), and then both copies of a key sit in the same
// column of their tiles, so the same thread adds them, in window order. No atomics.
template <int D, bool kTerms, bool kDropout>
__global__ void __launch_bounds__(kMmaThreads) mma_query_grad_tiles(const ChunkAttentionParams p) {
  constexpr int kSteps = D / 16, kColTiles = D / 8, kKeys = mma_grad_tile<D>();
  __shared__ MmaGradKeys<D> staged;
  RF_SHARED_UNDEFINED_AT_BLOCK_START(staged);
  const ChunkLayout& L = p.layout;
  const BlockTile b = query_block_tile(p, kMmaQueryTile);
  if (b.count <= 0) return;  // (the whole block: no barrier is left waiting)
  const int warp = warp_in_block(), lane = lane_in_warp(), g = lane / 4, q = lane % 4;
  const WarpRows rows = warp_query_rows(p, b, warp * 16 + g);
  const float* dout[2] = {nullptr, nullptr};
  float m[2] = {0.0f, 0.0f}, log_sum[2] = {0.0f, 0.0f}, delta[2] = {0.0f, 0.0f};
  float dlse[2] = {0.0f, 0.0f};
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    if (!rows.active[h]) continue;
    const int64_t i = b.segment * L.n_slots + rows.slot[h];
    dout[h] = p.o + i * p.d;
    m[h] = p.row_max[i];
    log_sum[h] = p.row_log_sum[i];
    delta[h] = p.delta[i];
    dlse[h] = p.dlse[i];
  }
  uint32_t qa[kSteps][4], da[kSteps][4];  // queries and output gradients as A fragments
  load_row_fragments<kSteps>(rows.query[0], 1.0f, rows.query[1], 1.0f, q, qa);
  load_row_fragments<kSteps>(dout[0], 1.0f, dout[1], 1.0f, q, da);
  float dq[kColTiles][4];
  zero(dq);
  const KernelDropout<kDropout> drop(p.segment_dropout(b.segment));
  const DropoutRow drop_rows[2] = {drop.row_of(rows.slot[0]), drop.row_of(rows.slot[1])};
  const ScoreOffsets<kTerms> offsets(p, b.segment);
  for_each_window_tile(p, b, staged, [&](int nk, int64_t window_first) {
    float s[kKeys / 8][4], dp[kKeys / 8][4];  // element e: row e / 2, key n * 8 + 2q + e % 2
    multiply_by_rows<kSteps, kKeys>(qa, staged.keys, g, q, s);
    multiply_by_rows<kSteps, kKeys>(da, staged.values, g, q, dp);
#pragma unroll
    for (int n = 0; n < kKeys / 8; ++n)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float keep[2];
        pair_keep(drop, rows.active[h], drop_rows[h],
                  window_first + static_cast<int64_t>(n * 8) + static_cast<int64_t>(2 * q), keep);
#pragma unroll
        for (int x = 0; x < 2; ++x) {
          const int e = 2 * h + x, kk = n * 8 + 2 * q + x;
          float ds = 0.0f;
          if (kk < nk) {
            const float score = s[n][e] + offsets.at(rows.position[h], staged.rows.positions[kk]);
            const float prob = exp_approx((score - m[h]) - log_sum[h]);
            ds = prob * (dp[n][e] * keep[x] - delta[h] + dlse[h]);
            if (rows.active[h]) offsets.add_grad(rows.position[h], staged.rows.positions[kk], ds);
          }
          s[n][e] = ds;
        }
      }
    multiply_accumulated<kKeys>(s, staged.keys_t, g, q, dq);  // dQ += dS K
  });
  float* out[2] = {nullptr, nullptr};
  const float one[2] = {1.0f, 1.0f};
#pragma unroll
  for (int h = 0; h < 2; ++h)
    if (rows.active[h]) out[h] = p.dq + (b.segment * L.n_slots + rows.slot[h]) * p.d;
  store_rows(dq, out, one, q);
}

// The key gradients' tile: kRows query slots as rows (for S^T = K Q^T) and columns (dK = dS^T Q),
// their output gradients likewise (dP^T = V dO^T, dV = P^T dO), their positions and statistics.
template <int D>
struct MmaStagedQueries {
  static constexpr int kRows = mma_grad_tile<D>();
  alignas(16) Bf16Rows<D, kRows> queries;
  alignas(16) Bf16Columns<D, kRows> queries_t;
  alignas(16) Bf16Rows<D, kRows> douts;
  alignas(16) Bf16Columns<D, kRows> douts_t;
  int32_t positions[kRows];
  float stats[4][kRows];           // m, log_sum, delta, dlse
  DropoutRow drop_rows[kRows];     // (with dropout)
  const float* query_rows[kRows];  // (null past the count)
  const float* dout_rows[kRows];

  // Query slots first .. first + count - 1 of segment s (zeros past count).
  template <class Drop>
  __device__ void stage(const ChunkAttentionParams& p, const Drop& drop, int64_t s, int64_t first,
                        int count) {
    const ChunkLayout& L = p.layout;
    for (int r = thread_x(); r < kRows; r += threads_x()) {
      const int64_t slot = s * L.n_slots + first + r;
      const bool valid = r < count;
      const int64_t t = valid ? p.position(s, first + r) : -1;
      positions[r] = valid ? static_cast<int32_t>(t) : INT32_MAX;
      query_rows[r] = valid ? p.query_row(s, t) : nullptr;
      dout_rows[r] = valid ? p.o + slot * p.d : nullptr;
      stats[0][r] = valid ? p.row_max[slot] : 0.0f;
      stats[1][r] = valid ? p.row_log_sum[slot] : 0.0f;
      stats[2][r] = valid ? p.delta[slot] : 0.0f;
      stats[3][r] = valid ? p.dlse[slot] : 0.0f;
      if (drop.active()) drop_rows[r] = drop.row_of(first + r);
    }
    __syncthreads();
    for_each_staged_pair<D, kRows>([&](int r, int x) {
      const FloatPair qv = query_rows[r] ? load_pair(query_rows[r] + x) : FloatPair{0.0f, 0.0f};
      const FloatPair dv = dout_rows[r] ? load_pair(dout_rows[r] + x) : FloatPair{0.0f, 0.0f};
      const uint32_t q2 = pack_bf16x2(qv.lo, qv.hi), d2 = pack_bf16x2(dv.lo, dv.hi);
      store_pair(queries[r], x, q2);
      store_pair(douts[r], x, d2);
      queries_t[x][r] = static_cast<uint16_t>(q2 & 0xFFFFu);
      queries_t[x + 1][r] = static_cast<uint16_t>(q2 >> 16);
      douts_t[x][r] = static_cast<uint16_t>(d2 & 0xFFFFu);
      douts_t[x + 1][r] = static_cast<uint16_t>(d2 >> 16);
    });
  }
};

// dK and dV of a block's 64 key slots (as key_grad_tiles, on tensor cores), over the queries of
// both windows that hold them, staged a tile at a time: S^T = K Q^T and dP^T = V dO^T, the
// probabilities recomputed, dS^T, then dV += (dropped P)^T dO and dK += dS^T Q. Each key's
// gradient is complete within its block: no atomics.
template <int D, bool kTerms, bool kDropout>
__global__ void __launch_bounds__(kMmaThreads) mma_key_grad_tiles(const ChunkAttentionParams p) {
  constexpr int kSteps = D / 16, kColTiles = D / 8, kQueries = mma_grad_tile<D>();
  __shared__ MmaStagedQueries<D> staged;
  RF_SHARED_UNDEFINED_AT_BLOCK_START(staged);
  const ChunkLayout& L = p.layout;
  const BlockTile b = block_tile(L, kMmaKeyBlock);
  const int warp = warp_in_block(), lane = lane_in_warp(), g = lane / 4, q = lane % 4;
  // This thread's two key rows (h = 0: warp * 16 + g, h = 1: 8 below).
  bool active[2];
  int32_t kp[2] = {INT32_MAX, INT32_MAX};
  int64_t within[2];  // index in its chunk
  const float* key[2] = {nullptr, nullptr};
  const float* value[2] = {nullptr, nullptr};
  float factor[2] = {0.0f, 0.0f};
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int row = warp * 16 + g + 8 * h;
    active[h] = row < b.count;
    within[h] = b.first - b.chunk * L.chunk + row;
    if (!active[h]) continue;
    const int64_t t = p.position(b.segment, b.first + row);
    kp[h] = static_cast<int32_t>(t);
    factor[h] = p.key_factor(b.segment, t);
    key[h] = p.key_row(b.segment, t);
    value[h] = p.value_row(b.segment, t);
  }
  uint32_t ka[kSteps][4], va[kSteps][4];  // scaled keys and values as A fragments
  load_row_fragments<kSteps>(key[0], factor[0], key[1], factor[1], q, ka);
  load_row_fragments<kSteps>(value[0], 1.0f, value[1], 1.0f, q, va);
  float dk[kColTiles][4], dv[kColTiles][4];
  zero(dk);
  zero(dv);
  const KernelDropout<kDropout> drop(p.segment_dropout(b.segment));
  const ScoreOffsets<kTerms> offsets(p, b.segment);
  for_each_query_tile<kQueries>(p, b, [&](int64_t first, int nq, int64_t window_base) {
    staged.stage(p, drop, b.segment, first, nq);
    __syncthreads();
    float st[kQueries / 8][4], dpt[kQueries / 8][4];  // row: key e / 2, column: query
    multiply_by_rows<kSteps, kQueries>(ka, staged.queries, g, q, st);
    multiply_by_rows<kSteps, kQueries>(va, staged.douts, g, q, dpt);
#pragma unroll
    for (int n = 0; n < kQueries / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = n * 8 + 2 * q + e % 2, h = e / 2;
        float ds = 0.0f, dropped = 0.0f;
        if (r < nq) {
          const float score = st[n][e] + offsets.at(staged.positions[r], kp[h]);
          const float prob = exp_approx((score - staged.stats[0][r]) - staged.stats[1][r]);
          const float keep = drop.active() && active[h]
                                 ? drop.scale_in(staged.drop_rows[r], window_base + within[h])
                                 : 1.0f;
          ds = prob * (dpt[n][e] * keep - staged.stats[2][r] + staged.stats[3][r]);
          dropped = prob * keep;
        }
        st[n][e] = ds;
        dpt[n][e] = dropped;
      }
    multiply_accumulated<kQueries>(dpt, staged.douts_t, g, q, dv);   // dV += (dropped P)^T dO
    multiply_accumulated<kQueries>(st, staged.queries_t, g, q, dk);  // dK += dS^T Q
  });
  float* out_k[2] = {nullptr, nullptr};
  float* out_v[2] = {nullptr, nullptr};
  const float one[2] = {1.0f, 1.0f};
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    if (!active[h]) continue;
    const int64_t i = b.segment * L.n_slots + b.first + static_cast<int64_t>(warp * 16) + g +
                      static_cast<int64_t>(8 * h);
    out_k[h] = p.dk + i * p.d;
    out_v[h] = p.dv + i * p.d;
  }
  store_rows(dk, out_k, one, q);
  store_rows(dv, out_v, one, q);
}

}  // namespace attention_tiles
}  // namespace rf::cuda
