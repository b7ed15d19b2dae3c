// Feed-forward activations (GELU in trax's tanh form, or ReLU), fused with the first bias and the
// hidden dropout. One index = one element of the [rows, d_ff] hidden chunk.
#pragma once

#include "kernels/hd.h"
#include "kernels/ops/dropout_mask.h"

namespace rf {

enum class Activation : int { kGelu = 0, kRelu = 1 };

RF_HD float activation_value(Activation act, float x) {
  if (act == Activation::kRelu) return x > 0.0f ? x : 0.0f;
  const float c = 0.7978845608028654f;  // sqrt(2 / pi)
  return 0.5f * x * (1.0f + tanhf(c * (x + 0.044715f * x * x * x)));
}

RF_HD float activation_derivative(Activation act, float x) {
  if (act == Activation::kRelu) return x > 0.0f ? 1.0f : 0.0f;
  const float c = 0.7978845608028654f;
  const float u = c * (x + 0.044715f * x * x * x);
  const float th = tanhf(u);
  const float du = c * (1.0f + 3.0f * 0.044715f * x * x);
  return 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du;
}

// h[i] += bias[c]  (h becomes the pre-activation);  a[i] = dropout(act(h[i])).
struct BiasActivationForward {
  float* h;
  float* a;
  const float* bias;
  int64_t cols;
  Activation act;
  DropoutMask mask;
  RF_HD void operator()(int64_t i) const {
    const int64_t r = i / cols, c = i % cols;
    const float pre = h[i] + bias[c];
    h[i] = pre;
    a[i] = activation_value(act, pre) * mask.scale(r, c);
  }
};

// grad[i] (in: dL/da, out: dL/dh) = dL/da * dropout * act'(h).
struct ActivationBackward {
  float* grad;
  const float* h;
  int64_t cols;
  Activation act;
  DropoutMask mask;
  RF_HD void operator()(int64_t i) const {
    grad[i] *= mask.scale(i / cols, i % cols) * activation_derivative(act, h[i]);
  }
};

}  // namespace rf
