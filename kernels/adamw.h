// Launcher of the AdamW update of one parameter tensor (decoupled weight decay, Loshchilov &
// Hutter), with the global gradient-norm clip and the bias corrections folded into its scalars.
#pragma once

#include <cstdint>

#include "kernels/executor.h"

namespace rf {

struct AdamWArgs {
  float* param = nullptr;
  float* m = nullptr;  // first moment
  float* v = nullptr;  // second moment
  const float* grad = nullptr;
  int64_t count = 0;
  float lr = 0.0f;
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
  float weight_decay = 0.0f;      // 0 for tensors that are not decayed
  float grad_scale = 1.0f;        // the clip factor
  float bias_correction1 = 1.0f;  // 1 - beta1^t
  float bias_correction2 = 1.0f;  // 1 - beta2^t
};
void adamw_update(Executor& ex, const AdamWArgs& args);

}  // namespace rf
