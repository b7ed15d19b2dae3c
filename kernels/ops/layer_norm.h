// Layer normalisation over the last axis: y = (x - mean) * rstd * gamma + beta, with
// rstd = 1 / sqrt(var + eps). The forward and the input-gradient are per-row kernels (one index =
// one row of [rows, cols]); the parameter gradients are column sums done in fixed row blocks so
// the result does not depend on the thread count.
#pragma once

#include "kernels/hd.h"

namespace rf {

RF_HD void layer_norm_row_stats(const float* x, int64_t cols, float eps, float* mean_out,
                                float* rstd_out) {
  float sum = 0.0f;
  for (int64_t c = 0; c < cols; ++c) sum += x[c];
  const float mean = sum / static_cast<float>(cols);
  float var = 0.0f;
  for (int64_t c = 0; c < cols; ++c) {
    const float d = x[c] - mean;
    var += d * d;
  }
  var /= static_cast<float>(cols);
  *mean_out = mean;
  *rstd_out = 1.0f / sqrtf(var + eps);
}

struct LayerNormForward {
  const float* x;      // [rows, cols]
  const float* gamma;  // [cols]
  const float* beta;   // [cols]
  float* y;            // [rows, cols]; may alias x
  int64_t cols;
  float eps;
  RF_HD void operator()(int64_t row) const {
    const float* xr = x + row * cols;
    float* yr = y + row * cols;
    float mean, rstd;
    layer_norm_row_stats(xr, cols, eps, &mean, &rstd);
    for (int64_t c = 0; c < cols; ++c) yr[c] = (xr[c] - mean) * rstd * gamma[c] + beta[c];
  }
};

// dx (+)= dL/dx for one row; also stores the row's mean and rstd for the parameter gradients.
struct LayerNormBackward {
  const float* x;      // [rows, cols] forward input
  const float* gamma;  // [cols]
  const float* dy;     // [rows, cols]
  float* dx;           // [rows, cols]
  float* mean;         // [rows] out
  float* rstd;         // [rows] out
  int64_t cols;
  float eps;
  bool accumulate;  // dx += instead of dx =
  RF_HD void operator()(int64_t row) const {
    const float* xr = x + row * cols;
    const float* dyr = dy + row * cols;
    float* dxr = dx + row * cols;
    float mu, rs;
    layer_norm_row_stats(xr, cols, eps, &mu, &rs);
    mean[row] = mu;
    rstd[row] = rs;
    float mean_g = 0.0f, mean_gx = 0.0f;
    for (int64_t c = 0; c < cols; ++c) {
      const float g = dyr[c] * gamma[c];
      mean_g += g;
      mean_gx += g * (xr[c] - mu) * rs;
    }
    mean_g /= static_cast<float>(cols);
    mean_gx /= static_cast<float>(cols);
    for (int64_t c = 0; c < cols; ++c) {
      const float xhat = (xr[c] - mu) * rs;
      const float g = dyr[c] * gamma[c];
      const float value = rs * (g - mean_g - xhat * mean_gx);
      dxr[c] = accumulate ? dxr[c] + value : value;
    }
  }
};

// Per row block: partial sums of dy * xhat (gamma) and dy (beta) over the block's rows, walking
// rows contiguously. Index = block. Reduce the partials with ColumnSumPartials.
struct LayerNormParamGradPartial {
  const float* x;
  const float* dy;
  const float* mean;
  const float* rstd;
  float* partial_gamma;  // [blocks, cols]
  float* partial_beta;   // [blocks, cols]
  int64_t rows, cols, block_rows;
  RF_HD void operator()(int64_t block) const {
    const int64_t begin = block * block_rows;
    const int64_t end = begin + block_rows < rows ? begin + block_rows : rows;
    float* pg = partial_gamma + block * cols;
    float* pb = partial_beta + block * cols;
    for (int64_t c = 0; c < cols; ++c) pg[c] = pb[c] = 0.0f;
    for (int64_t r = begin; r < end; ++r) {
      const float* xr = x + r * cols;
      const float* dr = dy + r * cols;
      const float mu = mean[r], rs = rstd[r];
      for (int64_t c = 0; c < cols; ++c) {
        pg[c] += dr[c] * (xr[c] - mu) * rs;
        pb[c] += dr[c];
      }
    }
  }
};

}  // namespace rf
