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
      scalars_(ex, 1),
      ws_(ex) {
  m_.zero();
  v_.zero();
  std::vector<uint8_t> decay(params.size(), 0);
  for (const ParamTensor& t : params.tensors())
    if (t.decay) std::fill_n(decay.begin() + static_cast<std::ptrdiff_t>(t.offset), t.count, 1);
  decay_.upload(decay);
}

GradNorm AdamW::step(double lr) {
  prepare(lr);
  compute();
  return finish();
}

void AdamW::prepare(double lr) {
  const double t = static_cast<double>(steps_ + 1);
  AdamWStepScalars s;
  s.lr = static_cast<float>(lr);
  s.bias_correction1 = static_cast<float>(1.0 - std::pow(cfg_.adam_beta1, t));
  s.bias_correction2 = static_cast<float>(1.0 - std::pow(cfg_.adam_beta2, t));
  ex_.upload(scalars_.data(), &s, sizeof(s));
}

void AdamW::compute() {
  const int64_t n = static_cast<int64_t>(params_.size());
  gradient_norm(ex_, ws_, params_.grads(), n, cfg_.grad_clip, norm_.data());
  AdamWArgs u;
  u.param = params_.params();
  u.m = m_.data();
  u.v = v_.data();
  u.grad = params_.grads();
  u.decay = decay_.data();
  u.norm = norm_.data();
  u.scalars = scalars_.data();
  u.count = n;
  u.beta1 = static_cast<float>(cfg_.adam_beta1);
  u.beta2 = static_cast<float>(cfg_.adam_beta2);
  u.eps = static_cast<float>(cfg_.adam_eps);
  u.weight_decay = static_cast<float>(cfg_.weight_decay);
  adamw_update(ex_, u);
}

GradNorm AdamW::finish() {
  // The one transfer of the step, after all of its work has been handed to the device.
  GradientNormResult result{};
  ex_.download(&result, norm_.data(), sizeof(result));
  if (result.finite) ++steps_;
  return {result.norm, result.finite != 0};
}

}  // namespace rf
