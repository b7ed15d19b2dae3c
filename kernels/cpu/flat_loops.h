// CPU loops for per-element and per-row functors whose plain loop (CpuBackend::for_each calling
// op(i)) spends its time on bookkeeping: AdamWUpdate reads its step scalars through pointers that
// the parameter stores might alias, so every element reloads them (and the compiler cannot
// vectorise it); EmbedForward divides its index into row and column (two 64-bit divisions per
// element, more for axial positions); KeyNormScales divides its index into segment and position
// and the segment into example and head (four divisions for a 64-float row). These loops read
// the scalars once and walk rows and columns directly; the arithmetic of each element is the
// functor's, so the bits are the same (tests/kernels_test.cpp compares them, and `reformer
// selftest` compares the tuned executor with the plain loops).
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/ops/adamw.h"
#include "kernels/ops/chunk_attention.h"
#include "kernels/ops/embedding.h"

namespace rf::cpu {

// AdamWUpdate for elements [begin, end).
inline void adamw_update_range(const AdamWUpdate& op, int64_t begin, int64_t end) {
  if (!op.norm->finite) return;
  const float lr = op.scalars->lr, correction1 = op.scalars->bias_correction1;
  const float correction2 = op.scalars->bias_correction2, clip_scale = op.norm->clip_scale;
  const float beta1 = op.beta1, beta2 = op.beta2, eps = op.eps, weight_decay = op.weight_decay;
  float* __restrict param = op.param;
  float* __restrict m = op.m;
  float* __restrict v = op.v;
  const float* __restrict grad = op.grad;
  const uint8_t* __restrict decay = op.decay;
  for (int64_t i = begin; i < end; ++i) {
    const float decay_rate = decay[i] ? weight_decay : 0.0f;
    const float g = grad[i] * clip_scale;
    const float mi = beta1 * m[i] + (1.0f - beta1) * g;
    const float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const float mhat = mi / correction1;
    const float vhat = vi / correction2;
    param[i] -= lr * (mhat / (sqrtf(vhat) + eps) + decay_rate * param[i]);
  }
}

// EmbedForward for row `row` (its d_model elements).
inline void embed_forward_row(const EmbedForward& op, int64_t row) {
  const int64_t D = op.d_model, t = op.first_position + row % op.seq_len;
  const float* __restrict token = op.table + static_cast<int64_t>(op.tokens[row]) * D;
  float* __restrict out = op.out + row * D;
  const PositionTable& pos = op.positions;
  // The position's values for columns [0, D): up to two runs of a table's row.
  const float* first = nullptr;
  const float* second = nullptr;
  int64_t split = D;  // columns from `first` before `second` takes over
  if (pos.kind == PositionKind::kAxial) {
    first = pos.axial_a + (t / pos.n2) * pos.d1;
    second = pos.axial_b + (t % pos.n2) * pos.d2 - pos.d1;  // indexed by c >= d1
    split = pos.d1;
  } else if (pos.kind == PositionKind::kLearned) {
    first = pos.learned + t * D;
  }
  float sum[512];  // token + position before the dropout, in blocks of this many columns
  for (int64_t c0 = 0; c0 < D; c0 += 512) {
    const int64_t c1 = c0 + 512 < D ? c0 + 512 : D;
    for (int64_t c = c0; c < c1; ++c)
      sum[c - c0] = token[c] + (first == nullptr ? 0.0f : c < split ? first[c] : second[c]);
    if (op.mask.active())
      op.mask.for_each_scale(row, c0, c1, [&](int64_t c, float s) { out[c] = sum[c - c0] * s; });
    else
      for (int64_t c = c0; c < c1; ++c) out[c] = sum[c - c0] * 1.0f;
  }
}

// KeyNormScales, index = segment * seq_len + position, over whole examples (all heads, as the
// attention launcher runs it): the positions of each example, every head of a row at once, so
// that the rows are read whole and in order (a head's part of each row alone is a strided read,
// which ran at 8 GB/s: 2.1 ms for one head of 64K positions, d 64 of 256 columns, on the 2-core
// Xeon VM). An example's key rows follow each other at the row stride, in two runs (the
// memory's, then the segment's), so only a run's first row is found through the params.

// Whether op's segments are whole examples.
inline bool key_norm_scales_by_position(const KeyNormScales& op) {
  return op.p.first_segment % op.p.heads == 0 && op.p.segments % op.p.heads == 0;
}

// Rows [begin, end) of (example, position), index example * seq_len + position over the launch's
// examples (key_norm_scales_by_position), every head of each.
inline void key_norm_scales_positions(const KeyNormScales& op, int64_t begin, int64_t end) {
  const ChunkAttentionParams& p = op.p;
  const int64_t n = p.layout.seq_len, heads = p.heads;
  int64_t e = begin / n, t = begin % n;
  const float* row = p.key_row(e * heads, t);  // head 0's part; head h's is h * d on
  for (int64_t r = begin;;) {
    float* scales = op.key_scales + e * heads * n + t;
    for (int64_t h = 0; h < heads; ++h) scales[h * n] = key_norm_scale(row + h * p.d, p.d);
    if (++r == end) return;
    if (++t == n) {
      t = 0;
      row = p.key_row(++e * heads, 0);
    } else {
      row = t == p.memory_len ? p.key_row(e * heads, t) : row + p.ld;
    }
  }
}

}  // namespace rf::cpu
