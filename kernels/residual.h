// Launchers of the residual adds and dropouts around each sublayer: adding a sublayer's output
// (with its bias and dropout) to a residual stream, or taking it away again when the reversible
// backward rebuilds the layer's input; and a gradient through a dropout.
#pragma once

#include <string_view>

#include "kernels/device_buffer.h"

namespace rf {

struct ResidualAddArgs {
  float* residual = nullptr;    // [rows, cols]
  const float* t = nullptr;     // [rows, cols]: the sublayer's output
  const float* bias = nullptr;  // [cols] or null
  int64_t rows = 0, cols = 0;
  float sign = 1.0f;  // +1 adds, -1 takes away (the reversible rebuild)
  DropoutMask dropout;
};
// residual += sign * dropout(t + bias)
void residual_add(Executor& ex, const ResidualAddArgs& args);

// x [rows, cols] *= the dropout multipliers, in place.
void apply_dropout(Executor& ex, float* x, int64_t rows, int64_t cols, const DropoutMask& mask);

// The gradient dy [rows, cols] through a dropout: dy itself when the mask is off (no copy),
// otherwise the workspace buffer `scratch` holding dy times the mask (dy stays intact).
const float* dropout_backward(Executor& ex, Workspace& ws, const float* dy, int64_t rows,
                              int64_t cols, const DropoutMask& mask, std::string_view scratch);

}  // namespace rf
