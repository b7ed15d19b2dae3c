// Small configurations and a gradient checker shared by the layer and model tests.
#pragma once

#include <random>
#include <string>

#include "tests/test_util.h"
#include "tests/tiny_model_yaml.h"
#include "trainer/config.h"
#include "trainer/model.h"
#include "trainer/params.h"

namespace rf::test {

// A tiny model: 2 layers [lsh, local], axial positions, chunked feed-forward and head, dropout
// on, so every code path is exercised. `overrides` are --set style ("model.dropout=0").
inline Config tiny_config(const std::vector<std::string>& overrides = {}) {
  return load_config_text(kTinyModelYaml, "tiny_config", overrides);
}

// For every parameter tensor (and the whole parameter vector), compares the analytic
// directional derivative along a random direction with central differences of `loss`.
inline void expect_param_gradients(ParamStore& store, const std::function<double()>& loss,
                                   double eps, double rel_tol, const std::string& what) {
  std::vector<float> grads(store.size());
  cpu().download(grads.data(), store.grads(), grads.size() * sizeof(float));
  std::vector<float> base(store.size());
  cpu().download(base.data(), store.params(), base.size() * sizeof(float));
  auto check = [&](size_t offset, size_t count, const std::string& name, uint32_t seed) {
    std::vector<float> direction(store.size(), 0.0f);
    const std::vector<float> r = random_vector(count, seed);
    std::copy(r.begin(), r.end(), direction.begin() + static_cast<std::ptrdiff_t>(offset));
    const double analytic = dot(grads, direction);
    auto perturb = [&](float s) {
      std::vector<float> p = base;
      for (size_t i = offset; i < offset + count; ++i) p[i] += s * direction[i];
      cpu().upload(store.params(), p.data(), p.size() * sizeof(float));
    };
    expect_directional_derivative(perturb, loss, analytic, eps, rel_tol, what + " " + name);
  };
  uint32_t seed = 100;
  for (const ParamTensor& t : store.tensors()) check(t.offset, t.count, t.name, seed++);
  check(0, store.size(), "(all parameters)", seed);
}

// A micro-batch of `batch` sequences of random tokens (inputs and targets), seeded.
inline TokenBatch random_batch(const Config& cfg, int64_t batch, uint32_t seed) {
  std::mt19937 gen(seed);
  TokenBatch b;
  b.batch = batch;
  b.seq_len = cfg.train.seq_len;
  for (int64_t i = 0; i < batch * b.seq_len; ++i) {
    b.inputs.push_back(static_cast<int32_t>(gen() % cfg.model.vocab_size));
    b.targets.push_back(static_cast<int32_t>(gen() % cfg.model.vocab_size));
  }
  return b;
}

// Every parameter drawn uniformly from [-0.3, 0.3) (seeded): larger than the initialisation, so
// that gradients are far from zero in the checks.
inline void randomize_params(ReformerModel& m, uint32_t seed) {
  const std::vector<float> p = random_vector(m.params().size(), seed, 0.3f);
  m.executor().upload(m.params().params(), p.data(), p.size() * sizeof(float));
}

// A step of `batch` sequences of `seq_len` tokens (seed 5), training or evaluation.
inline StepContext step_context(int64_t batch, int64_t seq_len, uint32_t step,
                                bool training = true) {
  StepContext s;
  s.seed = 5;
  s.step = step;
  s.batch = batch;
  s.seq_len = seq_len;
  s.training = training;
  return s;
}

// The overrides of one residual stream (Transformer-XL's block), which stores its inputs.
inline const std::vector<std::string> kSingleStream = {"model.residual=single",
                                                       "model.reversible=false"};

// --set style overrides as one line, for test traces.
inline std::string describe_overrides(const std::vector<std::string>& overrides) {
  std::string s;
  for (const std::string& o : overrides) s += o + " ";
  return s;
}

}  // namespace rf::test
