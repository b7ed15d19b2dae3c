// CPU loops for the embedding's gradient functors (kernels/ops/embedding.h). Each functor index is
// one table element, a serial sum over rows that lie a whole row apart in dx (a token's rows; the
// rows of an axial position's column or row of the grid): one load per row and one dependent add,
// and, for the axial table of the second grid axis, rows 256 KB apart at 64K tokens. In the
// reference model's 64K-token bf16 step these two launches took 26-56 ms (step_bench
// --profile-ops, 2026-12-05), with the loops here 5-6 ms. They add whole rows into a block of
// per-column sums instead, reading each row of dx once (a token's scattered rows asked for 4
// ahead): every column still adds the same rows in the same order from 0, and then adds its sum
// into the table as the functor does, so the bits are the same (tests/kernels_test.cpp compares
// them, and `reformer selftest` compares the tuned executor with the plain loops).
#pragma once

#include <algorithm>
#include <cstdint>

#include "kernels/cpu/prefetch.h"
#include "kernels/ops/embedding.h"

namespace rf::cpu {

constexpr int64_t kGradColumns = 256;  // columns summed at a time (a block of sums on the stack)

// into[c] += from[c] for c < width.
inline void add_columns(const float* __restrict from, int64_t width, float* __restrict into) {
  for (int64_t c = 0; c < width; ++c) into[c] += from[c];
}

constexpr int32_t kTokenRowsAhead = 4;

// EmbedTokenBackward for token v (its d_model elements).
inline void embed_token_backward_row(const EmbedTokenBackward& op, int64_t v) {
  const int64_t D = op.d_model;
  float sum[kGradColumns];
  for (int64_t c0 = 0; c0 < D; c0 += kGradColumns) {
    const int64_t width = std::min(kGradColumns, D - c0);
    std::fill(sum, sum + width, 0.0f);
    const int32_t end = op.offsets[v + 1];
    for (int32_t j = op.offsets[v]; j < end; ++j) {
      // (A token's rows are scattered over dx: the row kTokenRowsAhead on is asked for.)
      if (j + kTokenRowsAhead < end)
        prefetch_floats(op.dx + static_cast<int64_t>(op.order[j + kTokenRowsAhead]) * D + c0,
                        width);
      add_columns(op.dx + static_cast<int64_t>(op.order[j]) * D + c0, width, sum);
    }
    add_columns(sum, width, op.dtable + v * D + c0);
  }
}

// AxialPositionBackward's elements of row a of daxial_a: over the batch, the grid row's n2
// positions.
inline void axial_first_row_grads(const AxialPositionBackward& op, int64_t a) {
  float sum[kGradColumns];
  for (int64_t c0 = 0; c0 < op.d1; c0 += kGradColumns) {
    const int64_t width = std::min(kGradColumns, op.d1 - c0);
    std::fill(sum, sum + width, 0.0f);
    for (int64_t b = 0; b < op.batch; ++b)
      for (int64_t j = 0; j < op.n2; ++j)
        add_columns(op.dx + (b * op.seq_len + a * op.n2 + j) * op.d_model + c0, width, sum);
    add_columns(sum, width, op.daxial_a + a * op.d1 + c0);
  }
}

constexpr int64_t kAxialColumnsAtOnce = 8;  // rows of daxial_b summed together

// AxialPositionBackward's elements of rows j0 .. j1 - 1 (at most kAxialColumnsAtOnce) of
// daxial_b: over the batch, each grid column's n1 positions. The rows of a block are neighbours in
// dx, so each grid row's part is read in one run.
inline void axial_second_rows_grads(const AxialPositionBackward& op, int64_t j0, int64_t j1) {
  float sum[kAxialColumnsAtOnce][kGradColumns];
  for (int64_t c0 = 0; c0 < op.d2; c0 += kGradColumns) {
    const int64_t width = std::min(kGradColumns, op.d2 - c0);
    for (int64_t j = j0; j < j1; ++j) std::fill(sum[j - j0], sum[j - j0] + width, 0.0f);
    for (int64_t b = 0; b < op.batch; ++b)
      for (int64_t a = 0; a < op.n1; ++a)
        for (int64_t j = j0; j < j1; ++j)
          add_columns(op.dx + (b * op.seq_len + a * op.n2 + j) * op.d_model + op.d1 + c0, width,
                      sum[j - j0]);
    for (int64_t j = j0; j < j1; ++j) add_columns(sum[j - j0], width, op.daxial_b + j * op.d2 + c0);
  }
}

}  // namespace rf::cpu
