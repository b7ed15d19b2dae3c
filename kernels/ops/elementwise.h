// Element-wise kernels. Flat ones take one index per element; those over a [rows, cols]
// activation with a per-column bias or a dropout mask take one index per row (the hot ones: per
// piece of a row, see row_split.h), so on the CPU the inner loop over columns is contiguous and
// vectorised and no index is divided per element.
#pragma once

#include "base/hd.h"
#include "kernels/ops/dropout_mask.h"
#include "kernels/ops/row_split.h"

namespace rf {

// y[i] += alpha * x[i]
struct AddScaled {
  float* y;
  const float* x;
  float alpha;
  RF_HD void operator()(int64_t i) const { y[i] += alpha * x[i]; }
};

// x[i] = value
struct Fill {
  float* x;
  float value;
  RF_HD void operator()(int64_t i) const { x[i] = value; }
};

// residual[r, :] += sign * dropout(t[r, :] + bias); bias may be null. Adds a sublayer's output
// to its residual stream (sign +1) or takes it away again when the reversible backward rebuilds
// the layer's input (sign -1). Index = (row, piece of the columns): split.indices(rows) indices.
struct BiasDropoutResidualAdd {
  float* residual;
  const float* t;
  const float* bias;
  RowSplit split;
  float sign;
  DropoutMask mask;
  RF_HD void operator()(int64_t i) const {
    const int64_t r = i / split.pieces(), piece = i % split.pieces();
    const int64_t c0 = split.begin(piece), c1 = split.end(piece);
    float* out = residual + r * split.cols;
    const float* in = t + r * split.cols;
    if (mask.active()) {
      mask.for_each_scale(r, c0, c1, [&](int64_t c, float s) {
        out[c] += sign * (in[c] + (bias ? bias[c] : 0.0f)) * s;
      });
    } else if (bias) {
      for (int64_t c = c0; c < c1; ++c) out[c] += sign * (in[c] + bias[c]);
    } else {
      for (int64_t c = c0; c < c1; ++c) out[c] += sign * in[c];
    }
  }
};

// x[r, :] *= dropout multipliers of row r: the backward of a dropout (and its forward in place).
// Index = row.
struct ApplyDropout {
  float* x;
  int64_t cols;
  DropoutMask mask;
  RF_HD void operator()(int64_t r) const {
    float* row = x + r * cols;
    mask.for_each_scale(r, 0, cols, [&](int64_t c, float s) { row[c] *= s; });
  }
};

// out[r, :] = [a[r, :], b[r, :]]. Index = row.
struct ConcatColumns {
  float* out;
  const float* a;
  const float* b;
  int64_t cols_a, cols_b;
  RF_HD void operator()(int64_t r) const {
    float* o = out + r * (cols_a + cols_b);
    for (int64_t c = 0; c < cols_a; ++c) o[c] = a[r * cols_a + c];
    for (int64_t c = 0; c < cols_b; ++c) o[cols_a + c] = b[r * cols_b + c];
  }
};

// a[r, :] += d[r, :cols_a]; b[r, :] += d[r, cols_a:]. Index = row.
struct SplitColumnsAdd {
  float* a;
  float* b;
  const float* d;
  int64_t cols_a, cols_b;
  RF_HD void operator()(int64_t r) const {
    const float* in = d + r * (cols_a + cols_b);
    for (int64_t c = 0; c < cols_a; ++c) a[r * cols_a + c] += in[c];
    for (int64_t c = 0; c < cols_b; ++c) b[r * cols_b + c] += in[cols_a + c];
  }
};

}  // namespace rf
