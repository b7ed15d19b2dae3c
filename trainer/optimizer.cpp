#include "trainer/optimizer.h"

#include <cmath>

#include "kernels/adamw.h"
#include "kernels/reductions.h"

namespace rf {

AdamW::AdamW(Executor& ex, ParamStore& params, const TrainConfig& cfg)
    : ex_(ex), params_(params), cfg_(cfg), m_(ex, params.size()), v_(ex, params.size()) {
  m_.zero();
  v_.zero();
}

void AdamW::step(double lr, double grad_scale) {
  ++steps_;
  const double c1 = 1.0 - std::pow(cfg_.adam_beta1, static_cast<double>(steps_));
  const double c2 = 1.0 - std::pow(cfg_.adam_beta2, static_cast<double>(steps_));
  for (const ParamTensor& t : params_.tensors()) {
    AdamWArgs u;
    u.count = static_cast<int64_t>(t.count);
    u.param = params_.params() + t.offset;
    u.m = m_.data() + t.offset;
    u.v = v_.data() + t.offset;
    u.grad = params_.grads() + t.offset;
    u.lr = static_cast<float>(lr);
    u.beta1 = static_cast<float>(cfg_.adam_beta1);
    u.beta2 = static_cast<float>(cfg_.adam_beta2);
    u.eps = static_cast<float>(cfg_.adam_eps);
    u.weight_decay = t.decay ? static_cast<float>(cfg_.weight_decay) : 0.0f;
    u.grad_scale = static_cast<float>(grad_scale);
    u.bias_correction1 = static_cast<float>(c1);
    u.bias_correction2 = static_cast<float>(c2);
    adamw_update(ex_, u);
  }
}

GradNorm gradient_norm(Executor& ex, Workspace& ws, ParamStore& params, double clip) {
  GradNorm g;
  g.norm = std::sqrt(sum_of_squares(ex, ws, params.grads(), static_cast<int64_t>(params.size())));
  if (clip > 0 && g.norm > clip) g.clip_scale = clip / g.norm;
  return g;
}

}  // namespace rf
