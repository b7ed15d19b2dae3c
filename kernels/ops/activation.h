// Feed-forward activations (GELU in trax's tanh form, or ReLU), fused with the first bias and the
// hidden dropout, over the [rows, d_ff] hidden chunk split by a RowSplit.
#pragma once

#include "kernels/fast_math.h"
#include "kernels/kinds.h"
#include "kernels/ops/bf16_round.h"
#include "kernels/ops/dropout_mask.h"
#include "kernels/ops/row_split.h"

namespace rf {

// tanh of GELU's inner argument sqrt(2 / pi) (x + 0.044715 x^3), shared by the value and the
// derivative so that computing both costs one tanh.
RF_HD float gelu_tanh(float x) {
  const float c = 0.7978845608028654f;  // sqrt(2 / pi)
  return tanh_approx(c * (x + 0.044715f * x * x * x));
}

RF_HD float gelu_from_tanh(float x, float th) {
  return 0.5f * x * (1.0f + th);
}

RF_HD float gelu_derivative_from_tanh(float x, float th) {
  const float c = 0.7978845608028654f;
  const float du = c * (1.0f + 3.0f * 0.044715f * x * x);
  return 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du;
}

RF_HD float gelu(float x) {
  return gelu_from_tanh(x, gelu_tanh(x));
}

RF_HD float gelu_derivative(float x) {
  return gelu_derivative_from_tanh(x, gelu_tanh(x));
}

// Columns the activation kernels handle at a time when they write bf16: the fp32 values wait in
// a block this size (on the stack) for the dropout and the rounding.
constexpr int64_t kActivationBlock = 256;

// pre = h[r, :] + bias;  a[r, :] = dropout(act(pre)), as fp32 in `a`, or rounded to bf16 in
// `a_bf16` (then `a` is not used) for a product that reads bf16; with keep_derivative, h[r, :] =
// act'(pre), all ActivationBackward needs (a pass that will not go backward leaves h as it was).
// Computing the derivative here, from the tanh the activation computes anyway, spares the
// backward its own tanh: the reference model's 4K-token fp32 step spent 43.5 ms in both kernels
// before, 34.7 ms after (step_bench --profile-ops).
// Index = (row, piece of the columns): split.indices(rows) indices.
struct BiasActivationForward {
  float* h;
  float* a;
  const float* bias;
  RowSplit split;
  Activation act;
  DropoutMask mask;
  uint16_t* a_bf16 = nullptr;
  bool keep_derivative = true;
  RF_HD void operator()(int64_t i) const {
    const int64_t r = i / split.pieces(), piece = i % split.pieces();
    const int64_t c0 = split.begin(piece), c1 = split.end(piece);
    if (!a_bf16) {
      activate(r, c0, c1, a + r * split.cols + c0);
      return;
    }
    uint16_t* out = a_bf16 + r * split.cols;
    for (int64_t b0 = c0; b0 < c1; b0 += kActivationBlock) {
      const int64_t b1 = b0 + kActivationBlock < c1 ? b0 + kActivationBlock : c1;
      float block[kActivationBlock];
      activate(r, b0, b1, block);
      for (int64_t c = b0; c < b1; ++c) out[c] = bf16_bits(block[c - b0]);
    }
  }
  // Column c of row r alone, with operator()'s arithmetic: the GPU's kernel for one column per
  // thread (tuned_backend.cuh), which finds (r, c) from its grid instead of dividing the index
  // and needs no block of values on the stack.
  RF_HD void element(int64_t r, int64_t c) const {
    float* hr = h + r * split.cols;
    const float pre = hr[c] + bias[c];
    float value;
    if (act == Activation::kRelu) {
      if (keep_derivative) hr[c] = pre > 0.0f ? 1.0f : 0.0f;
      value = pre > 0.0f ? pre : 0.0f;
    } else if (keep_derivative) {
      const float th = gelu_tanh(pre);
      hr[c] = gelu_derivative_from_tanh(pre, th);
      value = gelu_from_tanh(pre, th);
    } else {
      value = gelu(pre);
    }
    if (mask.active()) value *= mask.scale(r, c);
    if (a_bf16)
      a_bf16[r * split.cols + c] = bf16_bits(value);
    else
      a[r * split.cols + c] = value;
  }
  // Columns c0 .. c1 - 1 of row r: out[c - c0] = dropout(act(pre-activation)), and h as above.
  RF_HD void activate(int64_t r, int64_t c0, int64_t c1, float* out) const {
    float* hr = h + r * split.cols;
    // One loop per activation and output, so each is a straight vectorisable loop.
    if (act == Activation::kRelu && keep_derivative) {
      for (int64_t c = c0; c < c1; ++c) {
        const float pre = hr[c] + bias[c];
        hr[c] = pre > 0.0f ? 1.0f : 0.0f;
        out[c - c0] = pre > 0.0f ? pre : 0.0f;
      }
    } else if (act == Activation::kRelu) {
      for (int64_t c = c0; c < c1; ++c) {
        const float pre = hr[c] + bias[c];
        out[c - c0] = pre > 0.0f ? pre : 0.0f;
      }
    } else if (keep_derivative) {
      for (int64_t c = c0; c < c1; ++c) {
        const float pre = hr[c] + bias[c], th = gelu_tanh(pre);
        hr[c] = gelu_derivative_from_tanh(pre, th);
        out[c - c0] = gelu_from_tanh(pre, th);
      }
    } else {
      for (int64_t c = c0; c < c1; ++c) out[c - c0] = gelu(hr[c] + bias[c]);
    }
    if (mask.active())
      mask.for_each_scale(r, c0, c1, [&](int64_t c, float s) { out[c - c0] *= s; });
  }
};

// grad[r, :] (in: dL/da, out: dL/d pre-activation) = dL/da * dropout * act'(pre), with act'(pre)
// in h as BiasActivationForward left it (keep_derivative); with grad_bf16 set, the result is
// also written there rounded to bf16, for the products that read it.
// Index = (row, piece of the columns): split.indices(rows) indices.
struct ActivationBackward {
  float* grad;
  const float* derivative;
  RowSplit split;
  DropoutMask mask;
  uint16_t* grad_bf16 = nullptr;
  RF_HD void operator()(int64_t i) const {
    const int64_t r = i / split.pieces(), piece = i % split.pieces();
    const int64_t c0 = split.begin(piece), c1 = split.end(piece);
    float* g = grad + r * split.cols;
    const float* dr = derivative + r * split.cols;
    for (int64_t c = c0; c < c1; ++c) g[c] *= dr[c];
    if (mask.active()) mask.for_each_scale(r, c0, c1, [&](int64_t c, float s) { g[c] *= s; });
    if (grad_bf16) {
      uint16_t* out = grad_bf16 + r * split.cols;
      for (int64_t c = c0; c < c1; ++c) out[c] = bf16_bits(g[c]);
    }
  }
  // Column c of row r alone, with operator()'s arithmetic (BiasActivationForward::element says
  // why).
  RF_HD void element(int64_t r, int64_t c) const {
    const int64_t i = r * split.cols + c;
    float g = grad[i] * derivative[i];
    if (mask.active()) g *= mask.scale(r, c);
    grad[i] = g;
    if (grad_bf16) grad_bf16[i] = bf16_bits(g);
  }
};

}  // namespace rf
