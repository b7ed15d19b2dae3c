// Feed-forward activations (GELU in trax's tanh form, or ReLU), fused with the first bias and the
// hidden dropout, over the [rows, d_ff] hidden chunk split by a RowSplit.
#pragma once

#include "kernels/fast_math.h"
#include "kernels/kinds.h"
#include "kernels/ops/dropout_mask.h"
#include "kernels/ops/row_split.h"

namespace rf {

RF_HD float gelu(float x) {
  const float c = 0.7978845608028654f;  // sqrt(2 / pi)
  return 0.5f * x * (1.0f + tanh_approx(c * (x + 0.044715f * x * x * x)));
}

RF_HD float gelu_derivative(float x) {
  const float c = 0.7978845608028654f;
  const float u = c * (x + 0.044715f * x * x * x);
  const float th = tanh_approx(u);
  const float du = c * (1.0f + 3.0f * 0.044715f * x * x);
  return 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du;
}

// h[r, :] += bias (h becomes the pre-activation);  a[r, :] = dropout(act(h[r, :])).
// Index = (row, piece of the columns): split.indices(rows) indices.
struct BiasActivationForward {
  float* h;
  float* a;
  const float* bias;
  RowSplit split;
  Activation act;
  DropoutMask mask;
  RF_HD void operator()(int64_t i) const {
    const int64_t r = i / split.pieces(), piece = i % split.pieces();
    const int64_t c0 = split.begin(piece), c1 = split.end(piece);
    float* hr = h + r * split.cols;
    float* ar = a + r * split.cols;
    // One loop per activation, so each is a straight vectorisable loop.
    if (act == Activation::kRelu) {
      for (int64_t c = c0; c < c1; ++c) {
        const float pre = hr[c] + bias[c];
        hr[c] = pre;
        ar[c] = pre > 0.0f ? pre : 0.0f;
      }
    } else {
      for (int64_t c = c0; c < c1; ++c) {
        const float pre = hr[c] + bias[c];
        hr[c] = pre;
        ar[c] = gelu(pre);
      }
    }
    if (mask.active())
      for (int64_t c = c0; c < c1; ++c) ar[c] *= mask.scale(r, c);
  }
};

// grad[r, :] (in: dL/da, out: dL/dh) = dL/da * dropout * act'(h).
// Index = (row, piece of the columns): split.indices(rows) indices.
struct ActivationBackward {
  float* grad;
  const float* h;
  RowSplit split;
  Activation act;
  DropoutMask mask;
  RF_HD void operator()(int64_t i) const {
    const int64_t r = i / split.pieces(), piece = i % split.pieces();
    const int64_t c0 = split.begin(piece), c1 = split.end(piece);
    float* g = grad + r * split.cols;
    const float* hr = h + r * split.cols;
    if (act == Activation::kRelu) {
      for (int64_t c = c0; c < c1; ++c) g[c] *= hr[c] > 0.0f ? 1.0f : 0.0f;
    } else {
      for (int64_t c = c0; c < c1; ++c) g[c] *= gelu_derivative(hr[c]);
    }
    if (mask.active())
      for (int64_t c = c0; c < c1; ++c) g[c] *= mask.scale(r, c);
  }
};

}  // namespace rf
