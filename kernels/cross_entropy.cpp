#include "kernels/cross_entropy.h"

#include "kernels/elementwise.h"

namespace rf {

void cross_entropy(Executor& ex, const CrossEntropyArgs& a) {
  if (a.bias) add_row_bias(ex, a.logits, a.bias, a.rows, a.vocab);
  CrossEntropyRow op{};
  op.logits = a.logits;
  op.targets = a.targets;
  op.loss = a.loss;
  op.prediction = a.prediction;
  op.vocab = a.vocab;
  op.grad_scale = a.grad_scale;
  op.want_grad = a.want_grad;
  ex.run(a.rows, op);
}

}  // namespace rf
