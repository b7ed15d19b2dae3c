// The GPU's tiled implementation of the fused chunked-attention passes (the reference arithmetic
// is in kernels/ops/chunk_attention.h): one thread block per tile of a chunk's queries (or, for
// the key gradients, of its keys), the window's keys and values staged in shared memory a tile at a
// time, and each query (key) row held in registers by D / 16 threads that combine their partial dot
// products with warp shuffles. Head widths 32, 64 and 128; other widths use the reference functors.
// These run at fp32; at bf16 the forward may run on tensor cores instead
// (mma_attention_kernels.cuh). The launches are attention_tile_launch.cuh's. Included by that
// header only.
#pragma once

#include <climits>
#include <cstring>

#include "base/error.h"
#include "kernels/cuda/emulation_checks.cuh"
#include "kernels/cuda/thread_index.cuh"
#include "kernels/executor.h"

namespace rf::cuda {
namespace attention_tiles {

constexpr int kQueryTile = 64;  // queries per block in the forward and the query gradients
constexpr int kKeyTile = 32;    // keys staged in shared memory at a time; keys per key block
// Head columns per thread: a row takes D / kSlice threads. 16 rather than 32 halves the
// registers a thread holds (118-128 instead of 161-251), so more warps hide each other's latency:
// on an H200 (2026-12-04) the 64K-token forward went from 2.61 to 2.24 ms, width 128's from 3.95
// to 2.47 ms, the gradients from 6.39 to 6.84 ms (their key pass had to give up unrolling), the
// reference model's step 4-20% faster.
constexpr int kSlice = 16;
constexpr int kQuad = 4;  // adjacent columns a thread holds: one 128-bit shared-memory load

// A row's kSplit threads are adjacent lanes; thread `part` holds groups of kQuad adjacent
// columns, interleaved with the row's other threads (group g at columns (g * kSplit + part) *
// kQuad ..), so that a row's threads read different shared-memory banks and each reads a group
// in one 128-bit load. (One 32-bit load per multiply-add, as the kernels had, left them waiting
// on shared memory: Nsight Compute on an H200, 2026-12-04.)
template <int kSplit>
__device__ __forceinline__ int column(int x, int part) {
  return (x / kQuad * kSplit + part) * kQuad + x % kQuad;
}

// The kQuad floats of shared memory at `at` (16-byte aligned): one 128-bit load on the GPU.
struct Quad {
  float v[kQuad];
};
__device__ __forceinline__ Quad load_quad(const float* at) {
#ifdef __CUDA_ARCH__
  const float4 f = *reinterpret_cast<const float4*>(at);
  return {{f.x, f.y, f.z, f.w}};
#else
  require_gpu_alignment<sizeof(Quad)>(at);
  Quad q;
  std::memcpy(q.v, at, sizeof q.v);
  return q;
#endif
}

// sum + a[x] * (row's column x) over this thread's kSlice columns of a shared-memory row, in the
// order x = 0, 1, ...
template <int kSplit>
__device__ __forceinline__ float dot_slice(const float* a, const float* row, int part, float sum) {
#pragma unroll
  for (int g = 0; g < kSlice / kQuad; ++g) {
    const Quad r = load_quad(row + column<kSplit>(g * kQuad, part));
#pragma unroll
    for (int c = 0; c < kQuad; ++c) sum += a[g * kQuad + c] * r.v[c];
  }
  return sum;
}

// acc[x] += w * (row's column x) over this thread's kSlice columns of a shared-memory row.
template <int kSplit>
__device__ __forceinline__ void add_scaled_slice(float* acc, float w, const float* row, int part) {
#pragma unroll
  for (int g = 0; g < kSlice / kQuad; ++g) {
    const Quad r = load_quad(row + column<kSplit>(g * kQuad, part));
#pragma unroll
    for (int c = 0; c < kQuad; ++c) acc[g * kQuad + c] += w * r.v[c];
  }
}

// The full dot product of a row whose kSplit threads each hold a slice of the columns.
template <int kSplit>
__device__ __forceinline__ float row_total(float partial) {
#pragma unroll
  for (int offset = 1; offset < kSplit; offset *= 2)
    partial += __shfl_xor_sync(0xffffffffu, partial, offset);
  return partial;
}

// A block's tile of slots within one chunk of one segment.
struct BlockTile {
  int64_t segment, chunk, first;
  int count;
};

__device__ inline BlockTile block_tile(const ChunkLayout& L, int tile_size) {
  const int64_t tiles = (L.chunk + tile_size - 1) / tile_size;
  const int64_t per_segment = L.n_chunks() * tiles;
  const int64_t item = blockIdx.x;
  BlockTile b;
  b.segment = item / per_segment;
  b.chunk = item % per_segment / tiles;
  const int64_t offset = item % tiles * tile_size;
  b.first = b.chunk * L.chunk + offset;
  b.count = static_cast<int>(L.chunk - offset < tile_size ? L.chunk - offset : tile_size);
  return b;
}

// Block b's tile of query slots less the memory's (keys only; a memory comes with the original
// order, where slot = position): count <= 0 when the whole tile is memory.
__device__ inline BlockTile query_block_tile(const ChunkAttentionParams& p, int tile_size) {
  BlockTile b = block_tile(p.layout, tile_size);
  const int64_t skip = p.memory_len - b.first;
  if (skip > 0) {
    b.first += skip;
    b.count -= static_cast<int>(skip < b.count ? skip : b.count);
  }
  return b;
}

// A tile of kKeyTile keys (scaled) and values in shared memory, with their positions and key
// factors.
template <int D>
struct StagedKeys {
  static constexpr int kRows = kKeyTile;
  alignas(16) float keys[kKeyTile][D];
  alignas(16) float values[kKeyTile][D];
  int32_t positions[kKeyTile];
  float factors[kKeyTile];

  // Stages the key and value rows of slots first .. first + count - 1, zeros past count (and
  // position INT32_MAX). Each row's position and key factor are found once, then its elements
  // copied.
  __device__ void stage(const ChunkAttentionParams& p, int64_t s, int64_t first, int count) {
    for (int row = thread_x(); row < kKeyTile; row += threads_x()) {
      const int64_t t = row < count ? p.position(s, first + row) : -1;
      positions[row] = row < count ? static_cast<int32_t>(t) : INT32_MAX;
      factors[row] = row < count ? p.key_factor(s, t) : 0.0f;
    }
    __syncthreads();
    for (int e = thread_x(); e < kKeyTile * D; e += threads_x()) {
      const int row = e / D, x = e % D;
      float k = 0.0f, v = 0.0f;
      if (row < count) {
        const int64_t t = positions[row];
        k = p.key_row(s, t)[x] * factors[row];
        v = p.value_row(s, t)[x];
      }
      keys[row][x] = k;
      values[row][x] = v;
    }
  }
};

// What the tiles add to a score. Without score terms (no relative positions or distance limit:
// LSH, local and dense attention) that is the causal and self masks alone, two compares, and the
// kernels are compiled for that case (kTerms false) rather than testing for the terms at every
// score: ChunkAttentionParams::score_offset_at's sum with 64-bit index arithmetic, which gives the
// same values there.
template <bool kTerms>
struct ScoreOffsets {
  const ChunkAttentionParams& p;
  int64_t rel_base;  // (once per block: an int64 multiplication chain)

  __device__ ScoreOffsets(const ChunkAttentionParams& params, int64_t segment)
      : p(params),
        rel_base(kTerms && (p.rel_scores || p.rel_grads) ? p.relative_base(segment) : 0) {}
  __device__ __forceinline__ float at(int32_t tq, int32_t tk) const {
    if constexpr (kTerms)
      return p.score_offset_at(rel_base, tq, tk);
    else
      return -mask_penalty(tq, tk, p.self_mask);
  }
  // The query-gradient pass's record of a relative score's dS (nothing without terms).
  __device__ __forceinline__ void add_grad(int32_t tq, int32_t tk, float ds) const {
    if constexpr (kTerms) p.add_relative_grad_at(rel_base, tq, tk, ds);
  }
};

// A dropout multiplier computed once per row (by its first thread) and shared with the row's
// other threads. Every lane of the warp must call it when dropout is active.
template <int kSplit>
__device__ __forceinline__ float row_keep(const DropoutMask& drop, bool compute, int part,
                                          const DropoutRow& row, int64_t col) {
  float keep = 1.0f;
  if (compute && part == 0) keep = drop.scale_in(row, col);
  if (kSplit > 1) keep = __shfl_sync(0xffffffffu, keep, lane_in_warp() - part);
  return keep;
}

// For each tile of Staged::kRows keys of the window of block b's chunk (the look-back chunk's,
// then its own), stages the tile and calls tile(count, window index of its first key). Tiles
// entirely later than the block's queries are skipped in the original order (local and dense
// attention).
template <class Staged, class Tile>
__device__ void for_each_window_tile(const ChunkAttentionParams& p, const BlockTile& b,
                                     Staged& staged, const Tile& tile) {
  constexpr int kRows = Staged::kRows;
  const ChunkLayout& L = p.layout;
  for (int64_t part = 0; part <= L.lookback; ++part) {
    const int64_t kc = part < L.lookback ? (b.chunk + L.n_chunks() - 1) % L.n_chunks() : b.chunk;
    for (int64_t k0 = 0; k0 < L.chunk; k0 += kRows) {
      const int64_t first = kc * L.chunk + k0;
      const int nk = static_cast<int>(L.chunk - k0 < kRows ? L.chunk - k0 : kRows);
      if (p.perm == nullptr && first > b.first + b.count - 1) continue;  // all in the future
      __syncthreads();  // the previous tile is consumed
      staged.stage(p, b.segment, first, nk);
      __syncthreads();
      tile(nk, part * L.chunk + k0);
    }
  }
}

// For each tile of kRows query slots of the windows that hold block b's keys (its own chunk's,
// then, with look-back, the next chunk's), after a barrier (the previous tile is consumed):
// tile(first slot, count, window index of the chunk's first key in that window). The memory's
// slots (no queries) and, in the original order, tiles entirely earlier than the keys are
// skipped (the same for the whole block).
template <int kRows, class Tile>
__device__ void for_each_query_tile(const ChunkAttentionParams& p, const BlockTile& b,
                                    const Tile& tile) {
  const ChunkLayout& L = p.layout;
  for (int64_t view = L.lookback; view >= 0; --view) {  // own window, then the next chunk's
    const int64_t qc = view == L.lookback ? b.chunk : (b.chunk + 1) % L.n_chunks();
    const int64_t window_base = view == L.lookback ? L.lookback * L.chunk : 0;
    for (int64_t q0 = 0; q0 < L.chunk; q0 += kRows) {
      int64_t first = qc * L.chunk + q0;
      int nq = static_cast<int>(L.chunk - q0 < kRows ? L.chunk - q0 : kRows);
      if (first < p.memory_len) {
        const int64_t skip = p.memory_len - first < nq ? p.memory_len - first : nq;
        first += skip;
        nq -= static_cast<int>(skip);
        if (nq == 0) continue;
      }
      if (p.perm == nullptr && b.first > first + nq - 1) continue;  // keys all in the future
      __syncthreads();
      tile(first, nq, window_base);
    }
  }
}

// This thread's columns of query row `row` of block b (zeros past the tile), and its position.
template <int kSplit>
__device__ void load_query(const ChunkAttentionParams& p, const BlockTile& b, int row, int part,
                           float* q, int32_t* position) {
  if (row < b.count) {
    const int64_t t = p.position(b.segment, b.first + row);
    *position = static_cast<int32_t>(t);
    const float* qr = p.query_row(b.segment, t);
#pragma unroll
    for (int x = 0; x < kSlice; ++x) q[x] = qr[column<kSplit>(x, part)];
  } else {
    *position = INT32_MAX;
#pragma unroll
    for (int x = 0; x < kSlice; ++x) q[x] = 0.0f;
  }
}

template <int D, bool kTerms>
__global__ void __launch_bounds__(kQueryTile*(D / kSlice))
    forward_tiles(const ChunkAttentionParams p) {
  constexpr int kSplit = D / kSlice;
  __shared__ StagedKeys<D> staged;
  RF_SHARED_UNDEFINED_AT_BLOCK_START(staged);
  const ChunkLayout& L = p.layout;
  const BlockTile b = query_block_tile(p, kQueryTile);
  if (b.count <= 0) return;  // (the whole block: no barrier is left waiting)
  const int row = static_cast<int>(threadIdx.x / kSplit),
            part = static_cast<int>(threadIdx.x % kSplit);
  const bool active = row < b.count;
  const int64_t j = b.first + row;
  float q[kSlice], acc[kSlice];
  int32_t qp;
  load_query<kSplit>(p, b, row, part, q, &qp);
#pragma unroll
  for (int x = 0; x < kSlice; ++x) acc[x] = 0.0f;
  float m = kNoMaxYet, l = 0.0f;
  const DropoutMask drop = p.segment_dropout(b.segment);
  const DropoutRow drop_row = drop.row_of(j);  // (once per row, not per score: a division)
  const ScoreOffsets<kTerms> offsets(p, b.segment);
  for_each_window_tile(p, b, staged, [&](int nk, int64_t window_first) {
    float scores[kKeyTile];
    float tile_max = kNoMaxYet;
#pragma unroll
    for (int kk = 0; kk < kKeyTile; ++kk) {
      const float dot = row_total<kSplit>(dot_slice<kSplit>(q, staged.keys[kk], part, 0.0f));
      scores[kk] = kk < nk ? dot + offsets.at(qp, staged.positions[kk]) : kNoMaxYet;
      tile_max = fmaxf(tile_max, scores[kk]);
    }
    const float m_new = fmaxf(m, tile_max);
    const float correction = exp_approx(m - m_new);
    m = m_new;
    l *= correction;
#pragma unroll
    for (int x = 0; x < kSlice; ++x) acc[x] *= correction;
#pragma unroll
    for (int kk = 0; kk < kKeyTile; ++kk) {
      const float w = exp_approx(scores[kk] - m);  // 0 past nk
      l += w;
      const float kept = drop.active() ? w * row_keep<kSplit>(drop, active && kk < nk, part,
                                                              drop_row, window_first + kk)
                                       : w;
      add_scaled_slice<kSplit>(acc, kept, staged.values[kk], part);
    }
  });
  if (!active) return;
  const int64_t i = b.segment * L.n_slots + j;
  float* o = p.o + i * p.d;
  const float inv = 1.0f / l;
#pragma unroll
  for (int x = 0; x < kSlice; ++x) o[column<kSplit>(x, part)] = acc[x] * inv;
  if (part == 0) {
    p.row_max[i] = m;
    p.row_log_sum[i] = logf(l);
  }
}

template <int D, bool kTerms>
__global__ void __launch_bounds__(kQueryTile*(D / kSlice))
    query_grad_tiles(const ChunkAttentionParams p) {
  constexpr int kSplit = D / kSlice;
  __shared__ StagedKeys<D> staged;
  RF_SHARED_UNDEFINED_AT_BLOCK_START(staged);
  const ChunkLayout& L = p.layout;
  const BlockTile b = query_block_tile(p, kQueryTile);
  if (b.count <= 0) return;  // (the whole block: no barrier is left waiting)
  const int row = static_cast<int>(threadIdx.x / kSplit),
            part = static_cast<int>(threadIdx.x % kSplit);
  const bool active = row < b.count;
  const int64_t j = b.first + row, i = b.segment * L.n_slots + j;
  float q[kSlice], dout[kSlice], dq[kSlice];
  int32_t qp;
  load_query<kSplit>(p, b, row, part, q, &qp);
  float m = 0.0f, log_sum = 0.0f, delta = 0.0f, dlse = 0.0f;
  if (active) {
    const float* dr = p.o + i * p.d;
#pragma unroll
    for (int x = 0; x < kSlice; ++x) dout[x] = dr[column<kSplit>(x, part)];
    m = p.row_max[i];
    log_sum = p.row_log_sum[i];
    delta = p.delta[i];
    dlse = p.dlse[i];
  } else {
#pragma unroll
    for (int x = 0; x < kSlice; ++x) dout[x] = 0.0f;
  }
#pragma unroll
  for (int x = 0; x < kSlice; ++x) dq[x] = 0.0f;
  const DropoutMask drop = p.segment_dropout(b.segment);
  const DropoutRow drop_row = drop.row_of(j);
  const ScoreOffsets<kTerms> offsets(p, b.segment);
  for_each_window_tile(p, b, staged, [&](int nk, int64_t window_first) {
  // (Unrolled, neighbouring keys' loads and shuffles overlap: 6.69 to 6.39 ms for the 64K
  // gradients on an H200.)
#pragma unroll 4
    for (int kk = 0; kk < nk; ++kk) {
      const float dot_s = row_total<kSplit>(dot_slice<kSplit>(q, staged.keys[kk], part, 0.0f));
      const float dot_p = row_total<kSplit>(dot_slice<kSplit>(dout, staged.values[kk], part, 0.0f));
      const float score = dot_s + offsets.at(qp, staged.positions[kk]);
      const float prob = exp_approx((score - m) - log_sum);
      const float keep =
          drop.active() ? row_keep<kSplit>(drop, active, part, drop_row, window_first + kk) : 1.0f;
      const float ds = prob * (dot_p * keep - delta + dlse);
      // (one thread of the row records dS: the row's elements are its own, added in key order)
      if (active && part == 0) offsets.add_grad(qp, staged.positions[kk], ds);
      add_scaled_slice<kSplit>(dq, ds, staged.keys[kk], part);
    }
  });
  if (!active) return;
  float* out = p.dq + i * p.d;
#pragma unroll
  for (int x = 0; x < kSlice; ++x) out[column<kSplit>(x, part)] = dq[x];
}

// One block per tile of kKeyTile keys of a chunk; each key row gathers its gradient over the
// queries of both windows that hold it, staged kKeyTile queries at a time. No atomics.
template <int D, bool kTerms>
__global__ void __launch_bounds__(kKeyTile*(D / kSlice))
    key_grad_tiles(const ChunkAttentionParams p) {
  constexpr int kSplit = D / kSlice;
  alignas(16) __shared__ float queries[kKeyTile][D];
  alignas(16) __shared__ float douts[kKeyTile][D];
  __shared__ int32_t query_pos[kKeyTile];
  __shared__ float stats[4][kKeyTile];  // m, log_sum, delta, dlse
  __shared__ DropoutRow drop_rows[kKeyTile];
  RF_SHARED_UNDEFINED_AT_BLOCK_START(queries);
  RF_SHARED_UNDEFINED_AT_BLOCK_START(douts);
  RF_SHARED_UNDEFINED_AT_BLOCK_START(query_pos);
  RF_SHARED_UNDEFINED_AT_BLOCK_START(stats);
  RF_SHARED_UNDEFINED_AT_BLOCK_START(drop_rows);
  const ChunkLayout& L = p.layout;
  const BlockTile b = block_tile(L, kKeyTile);
  const int row = static_cast<int>(threadIdx.x / kSplit),
            part = static_cast<int>(threadIdx.x % kSplit);
  const bool active = row < b.count;
  const int64_t e = b.first + row, within = b.first - b.chunk * L.chunk + row;
  float k[kSlice], v[kSlice], dk[kSlice], dv[kSlice];
  int32_t kp = INT32_MAX;
  if (active) {
    const int64_t t = p.position(b.segment, e);
    kp = static_cast<int32_t>(t);
    const float f = p.key_factor(b.segment, t);
    const float* kr = p.key_row(b.segment, t);
    const float* vr = p.value_row(b.segment, t);
#pragma unroll
    for (int x = 0; x < kSlice; ++x) {
      k[x] = kr[column<kSplit>(x, part)] * f;
      v[x] = vr[column<kSplit>(x, part)];
    }
  } else {
#pragma unroll
    for (int x = 0; x < kSlice; ++x) k[x] = v[x] = 0.0f;
  }
#pragma unroll
  for (int x = 0; x < kSlice; ++x) dk[x] = dv[x] = 0.0f;
  const DropoutMask drop = p.segment_dropout(b.segment);
  const ScoreOffsets<kTerms> offsets(p, b.segment);
  for_each_query_tile<kKeyTile>(p, b, [&](int64_t first, int nq, int64_t window_base) {
    const int64_t key_window = window_base + within;
    for (int r = thread_x(); r < kKeyTile; r += threads_x()) {  // each row's position, once
      const int64_t slot = b.segment * L.n_slots + first + r;
      query_pos[r] = r < nq ? static_cast<int32_t>(p.position(b.segment, first + r)) : INT32_MAX;
      stats[0][r] = r < nq ? p.row_max[slot] : 0.0f;
      stats[1][r] = r < nq ? p.row_log_sum[slot] : 0.0f;
      stats[2][r] = r < nq ? p.delta[slot] : 0.0f;
      stats[3][r] = r < nq ? p.dlse[slot] : 0.0f;
      if (drop.active()) drop_rows[r] = drop.row_of(first + r);  // (a division per row)
    }
    __syncthreads();
    for (int f = thread_x(); f < kKeyTile * D; f += threads_x()) {
      const int r = f / D, x = f % D;
      const bool valid = r < nq;
      queries[r][x] = valid ? p.query_row(b.segment, query_pos[r])[x] : 0.0f;
      douts[r][x] = valid ? p.o[(b.segment * L.n_slots + first + r) * p.d + x] : 0.0f;
    }
    __syncthreads();
    // (Not unrolled: two queries at a time spill registers at width 64 and 128.)
#pragma unroll 1
    for (int r = 0; r < nq; ++r) {
      const float dot_s = row_total<kSplit>(dot_slice<kSplit>(k, queries[r], part, 0.0f));
      const float dot_p = row_total<kSplit>(dot_slice<kSplit>(v, douts[r], part, 0.0f));
      const float score = dot_s + offsets.at(query_pos[r], kp);
      const float prob = exp_approx((score - stats[0][r]) - stats[1][r]);
      const float keep =
          drop.active() ? row_keep<kSplit>(drop, active, part, drop_rows[r], key_window) : 1.0f;
      const float ds = prob * (dot_p * keep - stats[2][r] + stats[3][r]);
      const float dropped = prob * keep;
      add_scaled_slice<kSplit>(dk, ds, queries[r], part);
      add_scaled_slice<kSplit>(dv, dropped, douts[r], part);
    }
  });
  if (!active) return;
  const int64_t i = b.segment * L.n_slots + e;
#pragma unroll
  for (int x = 0; x < kSlice; ++x) {
    p.dk[i * p.d + column<kSplit>(x, part)] = dk[x];
    p.dv[i * p.d + column<kSplit>(x, part)] = dv[x];
  }
}

}  // namespace attention_tiles
}  // namespace rf::cuda
