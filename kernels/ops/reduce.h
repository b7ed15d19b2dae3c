// Deterministic reductions: fixed blocks whose partial sums are combined in a fixed order, so the
// result is the same for any thread count (and on the GPU).
#pragma once

#include "kernels/hd.h"

namespace rf {

// partial[block, c] = sum of x[r, c] over the block's rows. Index = block * cols + c.
struct ColumnPartialSum {
  const float* x;  // [rows, cols]
  float* partial;  // [blocks, cols]
  int64_t rows, cols, block_rows;
  RF_HD void operator()(int64_t i) const {
    const int64_t block = i / cols, c = i % cols;
    const int64_t begin = block * block_rows;
    const int64_t end = begin + block_rows < rows ? begin + block_rows : rows;
    float s = 0.0f;
    for (int64_t r = begin; r < end; ++r) s += x[r * cols + c];
    partial[i] = s;
  }
};

// out[c] (+)= sum over blocks of partial[block, c]. Index = c.
struct ColumnSumPartials {
  const float* partial;  // [blocks, cols]
  float* out;            // [cols]
  int64_t blocks, cols;
  bool accumulate;
  RF_HD void operator()(int64_t c) const {
    float s = 0.0f;
    for (int64_t b = 0; b < blocks; ++b) s += partial[b * cols + c];
    out[c] = accumulate ? out[c] + s : s;
  }
};

// partial[block] = sum of x[i]^2 over the block (accumulated in double). Index = block.
struct SumSquaresPartial {
  const float* x;
  double* partial;
  int64_t n, block;
  RF_HD void operator()(int64_t b) const {
    const int64_t begin = b * block;
    const int64_t end = begin + block < n ? begin + block : n;
    double s = 0.0;
    for (int64_t i = begin; i < end; ++i) s += static_cast<double>(x[i]) * x[i];
    partial[b] = s;
  }
};

}  // namespace rf
