// Warp-per-row CUDA kernels for the LSH attention's per-position functors (kernels/ops/
// chunk_attention.h): combining the hash rounds' outputs (CombineRounds), its backward
// (CombineRoundsBackward), and gathering the rounds' gradients back into the projections' rows
// (UngatherAttentionGrads). The functors run one thread per position, which reads its row of d
// floats alone, so a warp's 32 threads touch 32 rows d floats apart; here a warp owns a position
// and lane l its columns l, l + 32, ..., so the loads and stores of a warp are contiguous. (One
// thread per row, the three took 21 ms of a 64K-token bf16 step on an H200, 2026-12-04: 16%.)
// Each column adds its rounds in the functor's order and the dot products add in row_sum's order
// (warp_total), so the results agree with the CPU's to the rounding of fused multiply-adds.
// Used for KernelVariant::kTuned; included by tuned_backend.cuh only.
//
// STATUS: NOT YET RUN ON A GPU (written after the H200 loan of 2026-12-04 ended). They run on the
// CPU in the tests' emulation of the CUDA thread model (tests/emulated_cuda_test.cpp), where they
// pass `reformer selftest`'s checks; a GPU run checks them at start-up (runtime.verify_kernels)
// and falls back to the functors if they differ.
#pragma once

#include "kernels/cuda/row_kernels.cuh"
#include "kernels/cuda/thread_index.cuh"
#include "kernels/kernel_ops.h"

namespace rf::cuda {

constexpr int kLaneColumns = kMaxHeadDim / 32;  // columns of a row a lane holds at most

// f(k, x) for this lane's columns x = lane + 32 k of a row of d, in increasing order (k indexes
// the lane's registers: an unrolled loop keeps them out of local memory).
template <class F>
__device__ __forceinline__ void for_lane_columns(int lane, int64_t d, const F& f) {
#pragma unroll
  for (int k = 0; k < kLaneColumns; ++k) {
    const int64_t x = lane + 32 * k;
    if (x >= d) break;
    f(k, x);
  }
}

static __global__ void combine_rounds_rows(CombineRounds op, int64_t rows) {
  const int64_t i = warp_row();
  const int lane = lane_in_warp();
  if (i >= rows) return;  // the whole warp
  const ChunkAttentionParams& p = op.p;
  const int64_t s = i / p.query_len(), t = p.memory_len + i % p.query_len();
  int64_t slots[kMaxHashRounds];
  float w[kMaxHashRounds];
  round_weights(p, op.undo, s, t, op.n_rounds, slots, w);
  const int64_t row = p.row_offset(s, t, op.ldo);
  for (int64_t x = lane; x < p.d; x += 32) {
    float value = w[0] * p.o[slots[0] * p.d + x];
    for (int64_t r = 1; r < op.n_rounds; ++r) value += w[r] * p.o[slots[r] * p.d + x];
    if (op.out_bf16)
      op.out_bf16[row + x] = bf16_bits(value);
    else
      op.out[row + x] = value;
  }
}

static __global__ void combine_rounds_backward_rows(CombineRoundsBackward op, int64_t rows) {
  const int64_t i = warp_row();
  const int lane = lane_in_warp();
  if (i >= rows) return;
  const ChunkAttentionParams& p = op.p;
  const int64_t s = i / p.query_len(), t = p.memory_len + i % p.query_len();
  int64_t slots[kMaxHashRounds];
  float w[kMaxHashRounds];
  round_weights(p, op.undo, s, t, op.n_rounds, slots, w);
  const float* g = op.dout + p.row_offset(s, t, op.lddo);
  float g_dot_round[kMaxHashRounds];
  float g_dot_out = 0.0f;
  for (int64_t r = 0; r < op.n_rounds; ++r) {
    const float* o = p.o + slots[r] * p.d;
    float partial = 0.0f;
    for (int64_t x = lane; x < p.d; x += 32) partial += g[x] * o[x];
    g_dot_round[r] = warp_total(partial);
    g_dot_out += w[r] * g_dot_round[r];
  }
  // (Every lane has read every round's O above: warp_total's shuffles order those reads before
  // the writes over O below.)
  for (int64_t r = 0; r < op.n_rounds; ++r) {
    float* o = p.o + slots[r] * p.d;
    for (int64_t x = lane; x < p.d; x += 32) o[x] = w[r] * g[x];
    if (lane == 0) {
      p.delta[slots[r]] = w[r] * g_dot_round[r];
      p.dlse[slots[r]] = w[r] * (g_dot_round[r] - g_dot_out);
    }
  }
}

// This lane's columns of row `row` of a gradient (fp32 rows, or bf16 rows where set) = g * scale.
__device__ __forceinline__ void store_lane_columns(int lane, int64_t d, float* rows,
                                                   uint16_t* rows_bf16, int64_t row,
                                                   const float (&g)[kLaneColumns], float scale) {
  for_lane_columns(lane, d, [&](int k, int64_t x) {
    if (rows_bf16)
      rows_bf16[row + x] = bf16_bits(scale * g[k]);
    else
      rows[row + x] = scale * g[k];
  });
}

static __global__ void ungather_attention_grads_rows(UngatherAttentionGrads op, int64_t rows) {
  const int64_t i = warp_row();
  const int lane = lane_in_warp();
  if (i >= rows) return;
  const ChunkAttentionParams& p = op.p;
  const int64_t s = i / p.layout.seq_len, t = i % p.layout.seq_len;
  const int64_t key_row = p.key_row_offset(s, t, op.ldg);
  float gq[kLaneColumns], gk[kLaneColumns], gv[kLaneColumns];  // columns lane + 32 k
  for (int64_t r = 0; r < op.n_rounds; ++r) {                  // rounds in order
    const int64_t slot = round_slot(p, op.undo, s, r, t);
    for_lane_columns(lane, p.d, [&](int k, int64_t x) {
      const float kx = p.dk[slot * p.d + x], vx = p.dv[slot * p.d + x];
      gk[k] = r == 0 ? kx : gk[k] + kx;
      gv[k] = r == 0 ? vx : gv[k] + vx;
    });
  }
  if (t < p.memory_len) {  // a memory position: no query (separate keys only)
    store_lane_columns(lane, p.d, op.dk, op.bf16.dk, key_row, gk, p.key_scale);
    store_lane_columns(lane, p.d, op.dv, op.bf16.dv, key_row, gv, 1.0f);
    return;
  }
  for (int64_t r = 0; r < op.n_rounds; ++r) {
    const float* q_round = p.dq + round_slot(p, op.undo, s, r, t) * p.d;
    for_lane_columns(lane, p.d,
                     [&](int k, int64_t x) { gq[k] = r == 0 ? q_round[x] : gq[k] + q_round[x]; });
  }
  const int64_t row = p.row_offset(s, t, op.ldg);
  if (p.key_scales) {
    // key = q * inv, inv = (|q|^2 + d eps)^(-1/2): dq += g inv - q (g . q) inv^3.
    const float* qr = p.query_row(s, t);
    float partial = 0.0f;
    for_lane_columns(lane, p.d, [&](int k, int64_t x) { partial += gk[k] * qr[x]; });
    const float g_dot_q = warp_total(partial);
    const float inv = p.key_scales[i];
    const float inv3 = inv * inv * inv;
    for_lane_columns(lane, p.d,
                     [&](int k, int64_t x) { gq[k] += gk[k] * inv - qr[x] * g_dot_q * inv3; });
  } else {
    store_lane_columns(lane, p.d, op.dk, op.bf16.dk, key_row, gk, p.key_scale);
  }
  store_lane_columns(lane, p.d, op.dq, op.bf16.dq, row, gq, 1.0f);
  store_lane_columns(lane, p.d, op.dv, op.bf16.dv, key_row, gv, 1.0f);
}

}  // namespace rf::cuda
