// Element-wise kernels over flat float arrays (one index = one element).
#pragma once

#include "kernels/hd.h"
#include "kernels/ops/dropout_mask.h"

namespace rf {

// y[i] += alpha * x[i]
struct AddScaled {
  float* y;
  const float* x;
  float alpha;
  RF_HD void operator()(int64_t i) const { y[i] += alpha * x[i]; }
};

// x[i] *= alpha
struct Scale {
  float* x;
  float alpha;
  RF_HD void operator()(int64_t i) const { x[i] *= alpha; }
};

// x[i] = value
struct Fill {
  float* x;
  float value;
  RF_HD void operator()(int64_t i) const { x[i] = value; }
};

// residual[r, c] += sign * dropout(t[r, c] + bias[c]); one index per element of [rows, cols].
// bias may be null. Adds a sublayer's output to its residual stream (sign +1) or takes it away
// again when the reversible backward rebuilds the layer's input (sign -1).
struct BiasDropoutResidualAdd {
  float* residual;
  const float* t;
  const float* bias;
  int64_t cols;
  float sign;
  DropoutMask mask;
  RF_HD void operator()(int64_t i) const {
    const int64_t r = i / cols, c = i % cols;
    const float value = t[i] + (bias ? bias[c] : 0.0f);
    residual[i] += sign * value * mask.scale(r, c);
  }
};

// g[i] *= dropout multiplier of element i of [rows, cols]; the backward of a dropout, and also
// the forward when applied in place.
struct ApplyDropout {
  float* x;
  int64_t cols;
  DropoutMask mask;
  RF_HD void operator()(int64_t i) const { x[i] *= mask.scale(i / cols, i % cols); }
};

// out[r, :] = [a[r, :], b[r, :]]; one index per element of out [rows, cols_a + cols_b].
struct ConcatColumns {
  float* out;
  const float* a;
  const float* b;
  int64_t cols_a, cols_b;
  RF_HD void operator()(int64_t i) const {
    const int64_t width = cols_a + cols_b;
    const int64_t r = i / width, c = i % width;
    out[i] = c < cols_a ? a[r * cols_a + c] : b[r * cols_b + (c - cols_a)];
  }
};

// a[r, :] += d[r, :cols_a]; b[r, :] += d[r, cols_a:]; one index per element of d.
struct SplitColumnsAdd {
  float* a;
  float* b;
  const float* d;
  int64_t cols_a, cols_b;
  RF_HD void operator()(int64_t i) const {
    const int64_t width = cols_a + cols_b;
    const int64_t r = i / width, c = i % width;
    if (c < cols_a) a[r * cols_a + c] += d[i];
    else b[r * cols_b + (c - cols_a)] += d[i];
  }
};

}  // namespace rf
