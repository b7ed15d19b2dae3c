#include "kernels/adamw.h"

#include "base/error.h"

namespace rf {

void adamw_update(Executor& ex, const AdamWArgs& a) {
  RF_CHECK(a.norm && a.decay, "adamw_update needs the gradient norm and the decay mask");
  AdamWUpdate op{};
  op.param = a.param;
  op.m = a.m;
  op.v = a.v;
  op.grad = a.grad;
  op.decay = a.decay;
  op.norm = a.norm;
  op.lr = a.lr;
  op.beta1 = a.beta1;
  op.beta2 = a.beta2;
  op.eps = a.eps;
  op.weight_decay = a.weight_decay;
  op.bias_correction1 = a.bias_correction1;
  op.bias_correction2 = a.bias_correction2;
  ex.run(a.count, op);
}

}  // namespace rf
