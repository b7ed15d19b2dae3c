// AdamW over the flat parameter buffer, with the first and second moments in two buffers of the
// same layout, weight decay only on tensors marked for it, and the gradient clip folded in.
#pragma once

#include "trainer/config.h"
#include "trainer/params.h"

namespace rf {

class AdamW {
 public:
  AdamW(Executor& ex, ParamStore& params, const TrainConfig& cfg);

  // One update with learning rate lr; gradients are multiplied by grad_scale (the clip factor).
  void step(double lr, double grad_scale);

  int64_t steps_taken() const { return steps_; }
  void set_steps_taken(int64_t s) { steps_ = s; }
  DeviceBuffer<float>& first_moment() { return m_; }
  DeviceBuffer<float>& second_moment() { return v_; }

 private:
  Executor& ex_;
  ParamStore& params_;
  TrainConfig cfg_;
  DeviceBuffer<float> m_, v_;
  int64_t steps_ = 0;
};

// Global L2 norm of all gradients, and the factor min(1, clip / norm) (1 when clip is 0).
struct GradNorm {
  double norm = 0.0;
  double clip_scale = 1.0;
};
GradNorm gradient_norm(Executor& ex, Workspace& ws, ParamStore& params, double clip);

}  // namespace rf
