// Layer normalisation over the last axis: y = (x - mean) * rstd * gamma + beta, with
// rstd = 1 / sqrt(var + eps). The forward and the input gradient split rows with a RowSplit (on the
// GPU after a per-row statistics kernel); the parameter gradients are column sums done in fixed
// row blocks so the result does not depend on the thread count.
#pragma once

#include "base/hd.h"
#include "kernels/ops/bf16_round.h"
#include "kernels/ops/row_reduce.h"
#include "kernels/ops/row_split.h"

namespace rf {

// Sums in the row order of kernels/ops/row_reduce.h.
RF_HD void layer_norm_row_stats(const float* x, int64_t cols, float eps, float* mean_out,
                                float* rstd_out) {
  const float mean = row_sum(cols, [x](int64_t c) { return x[c]; }) / static_cast<float>(cols);
  const float var = row_sum(cols,
                            [x, mean](int64_t c) {
                              const float d = x[c] - mean;
                              return d * d;
                            }) /
                    static_cast<float>(cols);
  *mean_out = mean;
  *rstd_out = 1.0f / sqrtf(var + eps);
}

// The row sums the input gradient needs: mean over c of g = dy * gamma and of g * xhat.
RF_HD void layer_norm_backward_row_stats(const float* xr, const float* dyr, const float* gamma,
                                         int64_t cols, float mu, float rs, float* mean_g_out,
                                         float* mean_gx_out) {
  float sum_g, sum_gx;
  row_sum2(
      cols,
      [=](int64_t c, float* g_lane, float* gx_lane) {
        const float g = dyr[c] * gamma[c];
        *g_lane += g;
        *gx_lane += g * (xr[c] - mu) * rs;
      },
      &sum_g, &sum_gx);
  *mean_g_out = sum_g / static_cast<float>(cols);
  *mean_gx_out = sum_gx / static_cast<float>(cols);
}

// The per-row statistics, as a kernel of their own: the GPU computes them first and then
// normalises one element per thread (see row_split.h). Index = row.
//   forward:  mean, rstd of x.
//   backward (dy non-null): also mean_g, mean_gx of layer_norm_backward_row_stats.
struct LayerNormRowStats {
  const float* x;      // [rows, cols]
  const float* gamma;  // [cols]; backward only
  const float* dy;     // [rows, cols] or null for the forward
  float* mean;         // [rows]
  float* rstd;         // [rows]
  float* mean_g;       // [rows]; backward only
  float* mean_gx;      // [rows]; backward only
  int64_t cols;
  float eps;
  RF_HD void operator()(int64_t row) const {
    const float* xr = x + row * cols;
    layer_norm_row_stats(xr, cols, eps, &mean[row], &rstd[row]);
    if (dy)
      layer_norm_backward_row_stats(xr, dy + row * cols, gamma, cols, mean[row], rstd[row],
                                    &mean_g[row], &mean_gx[row]);
  }
};

// y = (x - mean) * rstd * gamma + beta, in fp32 or (y_bf16 set) rounded to bf16 for the products
// that read it. Index = (row, piece of the columns). With stats null each index computes its
// row's statistics itself (the CPU: one piece per row); otherwise they come from
// LayerNormRowStats (the GPU: one column per index).
struct LayerNormForward {
  const float* x;      // [rows, cols]
  const float* gamma;  // [cols]
  const float* beta;   // [cols]
  float* y;            // [rows, cols]; may alias x
  const float* mean;   // [rows] or null
  const float* rstd;   // [rows] or null
  RowSplit split;
  float eps;
  uint16_t* y_bf16 = nullptr;  // [rows, cols]: when set, y's values go here rounded (y unused)
  RF_HD void operator()(int64_t i) const {
    const int64_t row = i / split.pieces(), piece = i % split.pieces(), cols = split.cols;
    const float* xr = x + row * cols;
    float mu, rs;
    if (mean) {
      mu = mean[row];
      rs = rstd[row];
    } else {
      layer_norm_row_stats(xr, cols, eps, &mu, &rs);
    }
    if (y_bf16) {
      uint16_t* yr = y_bf16 + row * cols;
      for (int64_t c = split.begin(piece); c < split.end(piece); ++c)
        yr[c] = bf16_bits((xr[c] - mu) * rs * gamma[c] + beta[c]);
      return;
    }
    float* yr = y + row * cols;
    for (int64_t c = split.begin(piece); c < split.end(piece); ++c)
      yr[c] = (xr[c] - mu) * rs * gamma[c] + beta[c];
  }
};

// dx (+)= dL/dx. Index = (row, piece of the columns). With stats_given false each index computes
// its row's statistics and stores mean and rstd (for the parameter gradients); otherwise all
// four come from LayerNormRowStats. With dx_bf16 set, dx's new values are also written there
// rounded to bf16, for the products that read the gradient next (the residual stream keeps fp32).
struct LayerNormBackward {
  const float* x;      // [rows, cols] forward input
  const float* gamma;  // [cols]
  const float* dy;     // [rows, cols]
  float* dx;           // [rows, cols]
  float* mean;         // [rows]
  float* rstd;         // [rows]
  float* mean_g;       // [rows]; read when stats_given
  float* mean_gx;      // [rows]; read when stats_given
  RowSplit split;
  float eps;
  bool stats_given;
  bool accumulate;              // dx += instead of dx =
  uint16_t* dx_bf16 = nullptr;  // [rows, cols] or null
  RF_HD void operator()(int64_t i) const {
    const int64_t row = i / split.pieces(), piece = i % split.pieces(), cols = split.cols;
    const float* xr = x + row * cols;
    const float* dyr = dy + row * cols;
    float* dxr = dx + row * cols;
    float mu, rs, mg, mgx;
    if (stats_given) {
      mu = mean[row];
      rs = rstd[row];
      mg = mean_g[row];
      mgx = mean_gx[row];
    } else {
      layer_norm_row_stats(xr, cols, eps, &mu, &rs);
      layer_norm_backward_row_stats(xr, dyr, gamma, cols, mu, rs, &mg, &mgx);
      if (piece == 0) {
        mean[row] = mu;
        rstd[row] = rs;
      }
    }
    for (int64_t c = split.begin(piece); c < split.end(piece); ++c) {
      const float xhat = (xr[c] - mu) * rs;
      const float g = dyr[c] * gamma[c];
      const float value = rs * (g - mg - xhat * mgx);
      dxr[c] = accumulate ? dxr[c] + value : value;
    }
    if (dx_bf16) {  // (a loop of its own: the one above stays a plain vector loop)
      uint16_t* out = dx_bf16 + row * cols;
      for (int64_t c = split.begin(piece); c < split.end(piece); ++c) out[c] = bf16_bits(dxr[c]);
    }
  }
};

// Per row block: partial sums of dy * xhat (gamma) and dy (beta) over the block's rows, added in
// row order. Index = (block, piece of the columns): split.indices(blocks) indices. Reduce the
// partials with ColumnSumPartials.
struct LayerNormParamGradPartial {
  const float* x;
  const float* dy;
  const float* mean;
  const float* rstd;
  float* partial_gamma;  // [blocks, cols]
  float* partial_beta;   // [blocks, cols]
  int64_t rows, block_rows;
  RowSplit split;
  RF_HD void operator()(int64_t i) const {
    const int64_t block = i / split.pieces(), piece = i % split.pieces();
    const int64_t c0 = split.begin(piece), c1 = split.end(piece), cols = split.cols;
    const int64_t begin = block * block_rows;
    const int64_t end = begin + block_rows < rows ? begin + block_rows : rows;
    float* pg = partial_gamma + block * cols;
    float* pb = partial_beta + block * cols;
    for (int64_t c = c0; c < c1; ++c) pg[c] = pb[c] = 0.0f;
    for (int64_t r = begin; r < end; ++r) {
      const float* xr = x + r * cols;
      const float* dr = dy + r * cols;
      const float mu = mean[r], rs = rstd[r];
      for (int64_t c = c0; c < c1; ++c) {
        pg[c] += dr[c] * (xr[c] - mu) * rs;
        pb[c] += dr[c];
      }
    }
  }
};

}  // namespace rf
