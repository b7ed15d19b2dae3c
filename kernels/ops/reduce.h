// Deterministic reductions: fixed blocks whose partial sums are combined in a fixed order, so the
// result is the same for any thread count (and on the GPU).
#pragma once

#include "base/hd.h"
#include "kernels/ops/adamw.h"
#include "kernels/ops/row_reduce.h"
#include "kernels/ops/row_split.h"

namespace rf {

// partial[block, :] = sum of x[r, :] over the block's rows, added in row order.
// Index = (block, piece of the columns): split.indices(blocks) indices.
struct ColumnPartialSum {
  const float* x;  // [rows, split.cols]
  float* partial;  // [blocks, split.cols]
  int64_t rows, block_rows;
  RowSplit split;
  RF_HD void operator()(int64_t i) const {
    const int64_t block = i / split.pieces(), piece = i % split.pieces();
    const int64_t c0 = split.begin(piece), c1 = split.end(piece), cols = split.cols;
    const int64_t begin = block * block_rows;
    const int64_t end = begin + block_rows < rows ? begin + block_rows : rows;
    float* out = partial + block * cols;
    for (int64_t c = c0; c < c1; ++c) out[c] = 0.0f;
    for (int64_t r = begin; r < end; ++r) {
      const float* row = x + r * cols;
      for (int64_t c = c0; c < c1; ++c) out[c] += row[c];
    }
  }
};

// out[c] (+)= sum over blocks of partial[block, c], the blocks added in the 32-lane order of
// row_sum (kernels/ops/row_reduce.h), which a GPU block of 32 x 32 threads reproduces with a
// tree in shared memory (kernels/cuda/reduce_kernels.cuh). Index = c.
struct ColumnSumPartials {
  const float* partial;  // [blocks, cols]
  float* out;            // [cols]
  int64_t blocks, cols;
  bool accumulate;
  RF_HD void operator()(int64_t c) const {
    const float* column = partial + c;
    const int64_t stride = cols;
    const float s = row_sum(blocks, [column, stride](int64_t b) { return column[b * stride]; });
    out[c] = accumulate ? out[c] + s : s;
  }
};

// partial[block] = sum of x[i]^2 over the block, in double, in the 32-lane order of row_sum (a
// warp per block on the GPU). Index = block.
struct SumSquaresPartial {
  const float* x;
  double* partial;
  int64_t n, block;
  RF_HD void operator()(int64_t b) const {
    const int64_t begin = b * block;
    const int64_t end = begin + block < n ? begin + block : n;
    const float* xb = x + begin;
    partial[b] = row_sum<double>(end - begin, [xb](int64_t i) {
      const double v = xb[i];
      return v * v;
    });
  }
};

// *out = the L2 norm from the partial sums of squares (added in the 32-lane order, in double) and
// the clip factor for `clip` (<= 0: none). One index (a warp on the GPU): it runs on the device so
// that the update reads its result there.
struct GradientNormFinalize {
  const double* partial;
  int64_t blocks;
  double clip;
  GradientNormResult* out;
  RF_HD void operator()(int64_t) const {
    const double* p = partial;
    finish(row_sum<double>(blocks, [p](int64_t b) { return p[b]; }));
  }
  // The norm, clip factor and flag from the total of the squares.
  RF_HD void finish(double total) const {
    const double norm = sqrt(total);
    // A NaN fails every comparison and an infinity exceeds the largest double.
    const bool finite = norm <= 1.7976931348623157e308;
    out->norm = norm;
    out->clip_scale = finite && clip > 0 && norm > clip ? static_cast<float>(clip / norm) : 1.0f;
    out->finite = finite ? 1 : 0;
  }
};

}  // namespace rf
