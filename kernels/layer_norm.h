// Launchers of layer normalisation over the last axis, y = (x - mean) * rstd * gamma + beta. They
// choose how rows are split for the executor (whole rows per CPU thread; statistics first, then
// one column per GPU thread) and size the scratch the statistics and parameter gradients need.
#pragma once

#include "kernels/device_buffer.h"
#include "kernels/linear.h"

namespace rf {

struct LayerNormArgs {
  const float* x = nullptr;      // [rows, cols]
  const float* gamma = nullptr;  // [cols]
  const float* beta = nullptr;   // [cols]
  float* y = nullptr;            // [rows, cols]; may alias x
  uint16_t* y_bf16 = nullptr;    // when set, y is written here rounded to bf16 instead
  int64_t rows = 0, cols = 0;
  float eps = 1e-6f;
};
void layer_norm_forward(Executor& ex, Workspace& ws, const LayerNormArgs& args);

struct LayerNormBackwardArgs {
  const float* x = nullptr;      // [rows, cols]: the forward input
  const float* gamma = nullptr;  // [cols]
  const float* dy = nullptr;     // [rows, cols]
  float* dx = nullptr;           // [rows, cols]
  // When set (executors whose products take bf16 operands only), dx's new values are also
  // written here rounded to bf16, for the products that read the gradient next.
  uint16_t* dx_bf16 = nullptr;  // [rows, cols]
  float* dgamma = nullptr;      // [cols], accumulated
  float* dbeta = nullptr;       // [cols], accumulated
  int64_t rows = 0, cols = 0;
  float eps = 1e-6f;
  Write write_dx = Write::kOverwrite;
};
// dx (+)= dL/dx; dgamma and dbeta += their gradients (column sums in fixed row blocks, so the
// result does not depend on the thread count).
void layer_norm_backward(Executor& ex, Workspace& ws, const LayerNormBackwardArgs& args);

}  // namespace rf
