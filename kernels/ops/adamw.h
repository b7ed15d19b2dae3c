// AdamW with decoupled weight decay (Loshchilov & Hutter) over the whole flat parameter buffer in
// one launch. One index = one parameter. The global gradient-norm clip comes from the device
// (GradientNormResult, written by the norm pass just before), so no value makes a round trip
// through the host between the norm and the update. The learning rate and bias corrections are
// the host's, read from executor memory (AdamWStepScalars), so the launch's arguments are the same
// every step and a captured step can be replayed.
#pragma once

#include <cstdint>

#include "base/hd.h"

namespace rf {

// What the gradient-norm pass leaves on the device for the update and, once the step is done,
// for the host's log line.
struct GradientNormResult {
  double norm;       // global L2 norm; NaN or infinite when some gradient is not finite
  float clip_scale;  // min(1, clip / norm), as float; 1 when clipping is off
  int32_t finite;    // 1: the update runs; 0: it leaves parameters and moments unchanged
};

// The values of one step that the host computes (its schedule; the bias corrections count only
// the updates that were applied), written to executor memory before the step's work.
struct AdamWStepScalars {
  float lr;
  float bias_correction1;  // 1 - beta1^t
  float bias_correction2;  // 1 - beta2^t
};

struct AdamWUpdate {
  float* param;
  float* m;
  float* v;
  const float* grad;
  const uint8_t* decay;  // per parameter: 1 where weight decay applies
  const GradientNormResult* norm;
  const AdamWStepScalars* scalars;
  float beta1, beta2, eps;
  float weight_decay;
  RF_HD void operator()(int64_t i) const {
    if (!norm->finite) return;
    const float lr = scalars->lr;
    const float decay_rate = decay[i] ? weight_decay : 0.0f;
    const float g = grad[i] * norm->clip_scale;
    const float mi = beta1 * m[i] + (1.0f - beta1) * g;
    const float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const float mhat = mi / scalars->bias_correction1;
    const float vhat = vi / scalars->bias_correction2;
    param[i] -= lr * (mhat / (sqrtf(vhat) + eps) + decay_rate * param[i]);
  }
};

}  // namespace rf
