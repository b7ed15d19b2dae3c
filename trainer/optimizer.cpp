#include "trainer/optimizer.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/adamw.h"
#include "kernels/reductions.h"

namespace rf {

AdamW::AdamW(Executor& ex, ParamStore& params, const TrainConfig& cfg)
    : ex_(ex),
      params_(params),
      cfg_(cfg),
      m_(ex, params.size()),
      v_(ex, params.size()),
      decay_(ex, params.size()),
      norm_(ex, 1),
      ws_(ex) {
  m_.zero();
  v_.zero();
  std::vector<uint8_t> decay(params.size(), 0);
  for (const ParamTensor& t : params.tensors())
    if (t.decay) std::fill_n(decay.begin() + static_cast<std::ptrdiff_t>(t.offset), t.count, 1);
  decay_.upload(decay);
}

GradNorm AdamW::step(double lr) {
  const int64_t n = static_cast<int64_t>(params_.size());
  gradient_norm(ex_, ws_, params_.grads(), n, cfg_.grad_clip, norm_.data());
  const double t = static_cast<double>(steps_ + 1);
  AdamWArgs u;
  u.param = params_.params();
  u.m = m_.data();
  u.v = v_.data();
  u.grad = params_.grads();
  u.decay = decay_.data();
  u.norm = norm_.data();
  u.count = n;
  u.lr = static_cast<float>(lr);
  u.beta1 = static_cast<float>(cfg_.adam_beta1);
  u.beta2 = static_cast<float>(cfg_.adam_beta2);
  u.eps = static_cast<float>(cfg_.adam_eps);
  u.weight_decay = static_cast<float>(cfg_.weight_decay);
  u.bias_correction1 = static_cast<float>(1.0 - std::pow(cfg_.adam_beta1, t));
  u.bias_correction2 = static_cast<float>(1.0 - std::pow(cfg_.adam_beta2, t));
  adamw_update(ex_, u);
  // The one transfer of the step, after all of its work has been handed to the device.
  GradientNormResult result{};
  ex_.download(&result, norm_.data(), sizeof(result));
  if (result.finite) ++steps_;
  return {result.norm, result.finite != 0};
}

}  // namespace rf
