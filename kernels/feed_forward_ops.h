// Launchers of the feed-forward's element-wise work: the first bias, the activation and the hidden
// dropout in one pass, and its gradient. Rows are split for the executor (whole rows per CPU
// thread, one column per GPU thread).
#pragma once

#include "kernels/executor.h"

namespace rf {

struct BiasActivationArgs {
  float* h = nullptr;           // [rows, cols] in: x W1; out, with keep_derivative: act'(x W1 + b1)
  bool keep_derivative = true;  // false for a pass that will not go backward (h is left alone)
  float* a = nullptr;           // [rows, cols] out: dropout(act(pre-activation)) ...
  uint16_t* a_bf16 = nullptr;   // ... or, when set, that rounded to bf16 here (a unused)
  const float* bias = nullptr;  // [cols]
  int64_t rows = 0, cols = 0;
  Activation activation = Activation::kGelu;
  DropoutMask dropout;  // element (row, col) of the hidden activation
};
void bias_activation_forward(Executor& ex, const BiasActivationArgs& args);

struct ActivationBackwardArgs {
  float* grad = nullptr;          // [rows, cols] in: dL/da, out: dL/d pre-activation
  uint16_t* grad_bf16 = nullptr;  // when set, [rows, cols] out: dL/d pre-activation in bf16
  const float* derivative =
      nullptr;  // [rows, cols]: act'(pre-activation), bias_activation_forward's h
  int64_t rows = 0, cols = 0;
  DropoutMask dropout;  // the forward's
};
void activation_backward(Executor& ex, const ActivationBackwardArgs& args);

}  // namespace rf
