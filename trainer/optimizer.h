// AdamW over the flat parameter buffer, with the first and second moments in two buffers of the
// same layout, weight decay only on tensors marked for it, and the global gradient-norm clip.
// A step is three launches (squares, norm, update) with no host round trip between them; the host
// reads the norm once, after the update has been handed to the device.
#pragma once

#include <cstdint>

#include "kernels/device_buffer.h"
#include "kernels/ops/adamw.h"
#include "trainer/config.h"
#include "trainer/params.h"

namespace rf {

// The global L2 norm of the step's gradients, and whether the update was applied.
struct GradNorm {
  double norm = 0.0;
  bool finite = true;  // false: some gradient was not finite and the update was skipped
};

class AdamW {
 public:
  AdamW(Executor& ex, ParamStore& params, const TrainConfig& cfg);

  // Clips the gradients to a global norm of cfg.grad_clip (0: no clipping) and updates every
  // parameter with learning rate lr. When some gradient is not finite the device leaves the
  // parameters and moments unchanged and the step does not count for the bias corrections.
  // The same as prepare(lr), compute(), finish().
  GradNorm step(double lr);

  // step() in three parts, so the device work can be captured once and replayed (a CUDA graph):
  // prepare() writes the step's learning rate and bias corrections to the executor (an upload);
  // compute() is device work only, with the same launch arguments every step; finish() waits for
  // the device and returns the norm (and counts the update if it was applied).
  void prepare(double lr);
  void compute();
  GradNorm finish();

  int64_t steps_taken() const { return steps_; }
  void set_steps_taken(int64_t s) { steps_ = s; }
  DeviceBuffer<float>& first_moment() { return m_; }
  DeviceBuffer<float>& second_moment() { return v_; }

 private:
  Executor& ex_;
  ParamStore& params_;
  TrainConfig cfg_;
  DeviceBuffer<float> m_, v_;
  DeviceBuffer<uint8_t> decay_;  // 1 where weight decay applies
  DeviceBuffer<GradientNormResult> norm_;
  DeviceBuffer<AdamWStepScalars> scalars_;
  Workspace ws_;  // the norm's partial sums
  int64_t steps_ = 0;
};

}  // namespace rf
