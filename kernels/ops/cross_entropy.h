// Softmax cross-entropy of one row of logits, turned in place into its gradient. One index = one
// row of a head chunk [rows, vocab]; the loss head never holds more than one chunk of logits.
#pragma once

#include "kernels/fast_math.h"
#include "kernels/ops/row_reduce.h"

namespace rf {

struct CrossEntropyRow {
  float* logits;           // [rows, vocab]; overwritten by grad_scale * (softmax - onehot)
  const int32_t* targets;  // [rows]
  float* loss;             // [rows] out: -log p(target)
  int32_t* prediction;     // [rows] out: argmax of the logits
  int64_t vocab;
  float grad_scale;  // d(total loss)/d(row loss), e.g. 1 / tokens in the global batch
  bool want_grad;
  RF_HD void operator()(int64_t row) const {
    const float* z = logits + row * vocab;
    float zmax = z[0];  // the first largest logit (a scan keeping the first of equal ones)
    int64_t arg = 0;
    for (int64_t v = 1; v < vocab; ++v)
      if (z[v] > zmax) zmax = z[v], arg = v;
    finish(row, arg);
  }
  // The rest of the row once its first largest logit is known (the CPU finds it with vectors:
  // kernels/cpu/first_argmax.h).
  RF_HD void finish(int64_t row, int64_t arg) const {
    float* z = logits + row * vocab;
    const int32_t target = targets[row];
    const float zmax = z[arg];  // (the scan's maximum, bit for bit)
    // (Both exponents are at most 0: exp_up_to_88 gives exp_approx's bits, in one vector path.)
    const float sum = row_sum(vocab, [z, zmax](int64_t v) { return exp_up_to_88(z[v] - zmax); });
    const float log_sum = logf(sum) + zmax;
    loss[row] = log_sum - z[target];
    prediction[row] = static_cast<int32_t>(arg);
    if (!want_grad) return;
    for (int64_t v = 0; v < vocab; ++v) {
      const float p = exp_up_to_88(z[v] - log_sum);
      z[v] = grad_scale * (p - (v == target ? 1.0f : 0.0f));
    }
  }
};

// x[r, :] += bias. Index = row.
struct AddBias {
  float* x;
  const float* bias;
  int64_t cols;
  RF_HD void operator()(int64_t r) const {
    float* row = x + r * cols;
    for (int64_t c = 0; c < cols; ++c) row[c] += bias[c];
  }
};

}  // namespace rf
