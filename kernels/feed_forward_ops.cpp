#include "kernels/feed_forward_ops.h"

namespace rf {

void bias_activation_forward(Executor& ex, const BiasActivationArgs& a) {
  BiasActivationForward op{};
  op.h = a.h;
  op.a = a.a;
  op.bias = a.bias;
  op.split = row_split(ex, a.cols);
  op.act = a.activation;
  op.mask = a.dropout;
  op.a_bf16 = a.a_bf16;
  op.keep_derivative = a.keep_derivative;
  ex.run(op.split.indices(a.rows), op);
}

void activation_backward(Executor& ex, const ActivationBackwardArgs& a) {
  ActivationBackward op{};
  op.grad = a.grad;
  op.derivative = a.derivative;
  op.split = row_split(ex, a.cols);
  op.mask = a.dropout;
  op.grad_bf16 = a.grad_bf16;
  ex.run(op.split.indices(a.rows), op);
}

}  // namespace rf
