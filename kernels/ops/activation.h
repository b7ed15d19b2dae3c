// Feed-forward activations (GELU in trax's tanh form, or ReLU), fused with the first bias and the
// hidden dropout. One index = one element of the [rows, d_ff] hidden chunk.
#pragma once

#include "kernels/fast_math.h"
#include "kernels/ops/dropout_mask.h"

namespace rf {

enum class Activation : int { kGelu = 0, kRelu = 1 };

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

// h[r, :] += bias (h becomes the pre-activation);  a[r, :] = dropout(act(h[r, :])). Index = row.
struct BiasActivationForward {
  float* h;
  float* a;
  const float* bias;
  int64_t cols;
  Activation act;
  DropoutMask mask;
  RF_HD void operator()(int64_t r) const {
    float* hr = h + r * cols;
    float* ar = a + r * cols;
    // One loop per activation, so each is a straight vectorisable loop.
    if (act == Activation::kRelu) {
      for (int64_t c = 0; c < cols; ++c) {
        const float pre = hr[c] + bias[c];
        hr[c] = pre;
        ar[c] = pre > 0.0f ? pre : 0.0f;
      }
    } else {
      for (int64_t c = 0; c < cols; ++c) {
        const float pre = hr[c] + bias[c];
        hr[c] = pre;
        ar[c] = gelu(pre);
      }
    }
    if (mask.active())
      for (int64_t c = 0; c < cols; ++c) ar[c] *= mask.scale(r, c);
  }
};

// grad[r, :] (in: dL/da, out: dL/dh) = dL/da * dropout * act'(h). Index = row.
struct ActivationBackward {
  float* grad;
  const float* h;
  int64_t cols;
  Activation act;
  DropoutMask mask;
  RF_HD void operator()(int64_t r) const {
    float* g = grad + r * cols;
    const float* hr = h + r * cols;
    if (act == Activation::kRelu) {
      for (int64_t c = 0; c < cols; ++c) g[c] *= hr[c] > 0.0f ? 1.0f : 0.0f;
    } else {
      for (int64_t c = 0; c < cols; ++c) g[c] *= gelu_derivative(hr[c]);
    }
    if (mask.active())
      for (int64_t c = 0; c < cols; ++c) g[c] *= mask.scale(r, c);
  }
};

}  // namespace rf
