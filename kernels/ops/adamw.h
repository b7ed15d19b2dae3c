// AdamW with decoupled weight decay (Loshchilov & Hutter). One index = one parameter. The global
// gradient-norm clip and the bias corrections are folded into the scalars the host passes in.
#pragma once

#include "base/hd.h"

namespace rf {

struct AdamWUpdate {
  float* param;
  float* m;
  float* v;
  const float* grad;
  float lr;
  float beta1, beta2, eps;
  float weight_decay;      // 0 for tensors that are not decayed
  float grad_scale;        // clip factor
  float bias_correction1;  // 1 - beta1^t
  float bias_correction2;  // 1 - beta2^t
  RF_HD void operator()(int64_t i) const {
    const float g = grad[i] * grad_scale;
    const float mi = beta1 * m[i] + (1.0f - beta1) * g;
    const float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const float mhat = mi / bias_correction1;
    const float vhat = vi / bias_correction2;
    param[i] -= lr * (mhat / (sqrtf(vhat) + eps) + weight_decay * param[i]);
  }
};

}  // namespace rf
