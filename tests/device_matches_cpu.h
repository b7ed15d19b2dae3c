// Whole-model checks of a device executor against the CPU executor, shared by the GPU tests
// (tests/gpu_test.cpp, on a CUDA device) and the emulated CUDA kernels
// (tests/emulated_cuda_test.cpp, on the CPU): a training micro-step, and Transformer-XL training
// with a memory.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "tests/model_fixture.h"
#include "trainer/model.h"
#include "trainer/segment_memory.h"

namespace rf::test {

// A model's loss and parameter gradients after `pass` ran on its executor.
struct LossAndGradients {
  double loss = 0;
  std::vector<float> grads;
};
inline LossAndGradients loss_and_gradients(const Config& cfg, Executor& ex,
                                           const std::function<double(ReformerModel&)>& pass) {
  ReformerModel model(cfg, ex);
  LossAndGradients r;
  r.loss = pass(model);
  r.grads.resize(model.params().size());
  ex.download(r.grads.data(), model.params().grads(), r.grads.size() * sizeof(float));
  return r;
}

// The device's loss and gradients within 1e-4 of the CPU's.
inline void expect_device_matches_cpu(const Config& cfg, Executor& device,
                                      const std::function<double(ReformerModel&)>& pass) {
  const LossAndGradients g = loss_and_gradients(cfg, device, pass);
  const LossAndGradients c = loss_and_gradients(cfg, cpu(), pass);
  EXPECT_NEAR(g.loss, c.loss, 1e-4 * std::fabs(c.loss));
  EXPECT_LT(relative_difference(g.grads, c.grads), 1e-4);
}

// One training micro-step of the tiny model (every kernel of the model).
inline void expect_micro_step_matches(Executor& device) {
  const Config cfg = tiny_config();
  TokenBatch batch;
  batch.batch = 2;
  batch.seq_len = cfg.train.seq_len;
  for (int64_t i = 0; i < batch.batch * batch.seq_len; ++i) {
    batch.inputs.push_back(static_cast<int32_t>((i * 7) % cfg.model.vocab_size));
    batch.targets.push_back(static_cast<int32_t>((i * 5 + 1) % cfg.model.vocab_size));
  }
  StepContext step;
  step.seed = 3;
  step.step = 2;
  step.batch = batch.batch;
  step.seq_len = batch.seq_len;
  expect_device_matches_cpu(cfg, device, [&](ReformerModel& model) {
    model.params().zero_grads();
    return model.forward_backward(batch, step, 1.0f / 64).loss_sum;
  });
}

// The third segment's loss and gradients of `cfg` with the memory the first two left, on the
// device and on the CPU.
inline void expect_memory_training_matches(Executor& device, const Config& cfg,
                                           int64_t memory_len) {
  expect_device_matches_cpu(cfg, device, [&](ReformerModel& model) {
    Executor& ex = model.executor();
    const std::vector<float> p = random_vector(model.params().size(), 17, 0.3f);
    ex.upload(model.params().params(), p.data(), p.size() * sizeof(float));
    SegmentMemory memory(memory_len);
    double loss = 0;
    for (uint32_t segment = 1; segment <= 3; ++segment) {
      StepContext step;
      step.seed = 5;
      step.step = segment;
      step.batch = 2;
      step.seq_len = cfg.train.seq_len;
      model.params().zero_grads();
      loss =
          model.forward_backward(random_batch(cfg, 2, segment), step, 0.01f, {}, &memory).loss_sum;
    }
    EXPECT_EQ(memory.len, memory_len);
    return loss;
  });
}

// Transformer-XL's recurrence on the device: the third segment's loss and gradients with the
// memory the first two left (24 positions: the CUDA tiles' query blocks start inside the memory),
// dense and local layers with relative positions and dropout, head width 32 (the tiled kernels);
// Reformer's two streams and one stream (model.residual = single); and the hybrid whose LSH
// layer hashes its memory with the segment beside a local layer.
inline void expect_memory_training_matches(Executor& device) {
  // (The memory is made here: a config's memory_len needs a text stream, and this runs no data.)
  constexpr int64_t kMemory = 24;
  // (One stream also without dropout: its backward then works in its gradient buffer in place.)
  for (const std::vector<std::string>& layout : std::vector<std::vector<std::string>>{
           {"model.residual=two_streams", "model.reversible=true"},
           {"model.residual=single", "model.reversible=false"},
           {"model.residual=single", "model.reversible=false", "model.dropout=0.0"},
           {"model.residual=two_streams", "model.reversible=true", "model.attention=[lsh, local]",
            "lsh.bucket_size=4", "lsh.sees_memory=true"}}) {
    SCOPED_TRACE(describe_overrides(layout));
    std::vector<std::string> o = {"model.attention=[dense, local]", "model.position=relative",
                                  "model.d_head=32", "train.seq_len=16", "lsh.local_chunk=8"};
    o.insert(o.end(), layout.begin(), layout.end());
    expect_memory_training_matches(device, tiny_config(o), kMemory);
  }
}

}  // namespace rf::test
