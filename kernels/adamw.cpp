#include "kernels/adamw.h"

#include "base/error.h"

namespace rf {

void adamw_update(Executor& ex, const AdamWArgs& a) {
  RF_CHECK(a.norm && a.decay && a.scalars,
           "adamw_update needs the gradient norm, the decay mask and the step's scalars");
  AdamWUpdate op{};
  op.param = a.param;
  op.m = a.m;
  op.v = a.v;
  op.grad = a.grad;
  op.decay = a.decay;
  op.norm = a.norm;
  op.scalars = a.scalars;
  op.beta1 = a.beta1;
  op.beta2 = a.beta2;
  op.eps = a.eps;
  op.weight_decay = a.weight_decay;
  ex.run(a.count, op);
}

}  // namespace rf
