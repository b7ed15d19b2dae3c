// What a layer needs to know about the current micro-batch: its shape, and the coordinates that
// key its random numbers (seed, optimizer step, global index of its first sequence), so the
// reversible backward and every rank draw exactly the same rotations and dropout masks.
#pragma once

#include <cstdint>

#include "kernels/device_buffer.h"
#include "kernels/ops/dropout_mask.h"

namespace rf {

// Rotation key used for evaluation batches (never an optimizer step of a real run).
constexpr uint32_t kEvalStep = 0xFFFFFFFFu;

struct StepContext {
  uint64_t seed = 1;
  uint32_t step = 0;
  uint32_t example_base = 0;  // global index of sequence 0 of this micro-batch within the step
  int64_t batch = 1;
  int64_t seq_len = 1;
  bool training = true;  // dropout only when training
  // Where the executor holds `step` (ReformerModel::stage writes it there). When set, random
  // streams read the step from it, so the launches of a step do not change from step to step.
  const uint32_t* step_on_device = nullptr;
  // Keys more than this many positions before their query are masked (-1: none); Transformer-XL's
  // same_length with memory, so that every query sees the same number of keys.
  int64_t max_distance = -1;

  int64_t rows() const { return batch * seq_len; }

  // Dropout over a [batch * seq_len, cols] activation of `layer` (inactive when not training).
  DropoutMask dropout(RngPurpose purpose, uint32_t layer, double rate, int64_t cols) const {
    DropoutMask m;
    m.keep = training ? static_cast<float>(1.0 - rate) : 1.0f;
    m.stream = make_rng_stream(seed, purpose, layer, step, 0, 0);
    m.stream.step_source = step_on_device;
    m.example_base = example_base;
    m.seq_len = seq_len;
    m.cols = cols;
    return m;
  }
  RngStream stream(RngPurpose purpose, uint32_t layer, int64_t example, int64_t head) const {
    RngStream s =
        make_rng_stream(seed, purpose, layer, step, example_base + static_cast<uint32_t>(example),
                        static_cast<uint32_t>(head));
    s.step_source = step_on_device;
    return s;
  }
};

// Executor and scratch space, passed together to every layer.
struct Kit {
  Executor& ex;
  Workspace& ws;
};

}  // namespace rf
