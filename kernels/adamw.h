// Launcher of the AdamW update (decoupled weight decay, Loshchilov & Hutter) of a whole flat
// parameter buffer in one launch, with the global gradient-norm clip read from the device.
#pragma once

#include <cstdint>

#include "kernels/executor.h"

namespace rf {

struct AdamWArgs {
  float* param = nullptr;
  float* m = nullptr;  // first moment
  float* v = nullptr;  // second moment
  const float* grad = nullptr;
  const uint8_t* decay = nullptr;  // per parameter: 1 where weight decay applies
  // Written by gradient_norm (kernels/reductions.h) on the same executor: the clip factor, and
  // whether the gradients are finite (if not, nothing changes).
  const GradientNormResult* norm = nullptr;
  // The learning rate and bias corrections, in executor memory, written by the host before the
  // update runs.
  const AdamWStepScalars* scalars = nullptr;
  int64_t count = 0;
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
  float weight_decay = 0.0f;
};
void adamw_update(Executor& ex, const AdamWArgs& args);

}  // namespace rf
