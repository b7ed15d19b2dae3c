// Finite-difference gradient checks of every layer on its own: LSH, local and dense attention
// (with projections), the chunked feed-forward, layer norm, the embeddings (axial and learned)
// and the loss head. Each checks the input gradient and every parameter tensor.
#include <gtest/gtest.h>

#include "tests/model_fixture.h"
#include "trainer/attention_layer.h"
#include "trainer/embedding.h"
#include "trainer/feed_forward.h"
#include "trainer/loss_head.h"

namespace rf {
namespace {

using test::cpu;

constexpr double kEps = 1e-2;
constexpr double kRelTol = 1e-2;

struct Harness {
  Config cfg;
  ParamStore store;
  Workspace ws{cpu()};
  Kit kit{cpu(), ws};
  StepContext step;
  explicit Harness(const Config& c) : cfg(c) {
    store.begin_group("test");
    step.seed = 9;
    step.step = 4;
    step.batch = cfg.train.batch_size;
    step.seq_len = cfg.train.seq_len;
    step.training = true;
  }
  void ready() {
    store.allocate(cpu());
    store.initialize(cpu(), 17);
  }
  int64_t rows() const { return step.rows(); }
};

// Checks d/d(input) along a random direction for an input held in `input` (device) whose host
// copy is `host`.
void expect_input_gradient(DeviceBuffer<float>& input, const std::vector<float>& host,
                           const std::vector<float>& grad, const std::function<double()>& loss,
                           const std::string& what) {
  const auto direction = test::random_vector(host.size(), 55);
  auto perturb = [&](float s) {
    std::vector<float> x = host;
    for (size_t i = 0; i < x.size(); ++i) x[i] += s * direction[i];
    input.upload(x);
  };
  test::expect_directional_derivative(perturb, loss, test::dot(grad, direction), kEps, kRelTol,
                                      what + " input");
}

void check_attention(const std::string& kind, std::vector<std::string> settings = {}) {
  settings.push_back("model.attention=[" + kind + "]");
  Harness h(test::tiny_config(settings));
  AttentionLayer layer(h.store, h.cfg, 0, "attention");
  h.ready();
  const int64_t n = h.rows() * h.cfg.model.d_model;
  const auto x_host = test::random_vector(n, 1);
  const auto weights = test::random_vector(n, 2);
  auto x = test::to_device(x_host);
  auto dout = test::to_device(weights);
  DeviceBuffer<float> out(cpu(), n), dx(cpu(), n);
  DeviceBuffer<int32_t> buckets(
      cpu(), std::max<int64_t>(1, layer.bucket_count(h.step.batch, h.step.seq_len)));
  const MatrixView xn = matrix(x.data(), h.rows(), h.cfg.model.d_model);
  layer.forward(h.kit, h.store, h.step, xn, out.data(), Write::kOverwrite, buckets.data(), false);
  layer.backward(h.kit, h.store, h.step, xn, dout.data(), dx.data(), buckets.data(), nullptr,
                 Write::kOverwrite);
  auto loss = [&] {
    layer.forward(h.kit, h.store, h.step, xn, out.data(), Write::kOverwrite, buckets.data(), true);
    return test::dot(out.download(), weights);
  };
  expect_input_gradient(x, x_host, dx.download(), loss, kind + " attention");
  test::expect_param_gradients(h.store, loss, kEps, kRelTol, kind + " attention");
}

TEST(LayerGradients, LshAttention) {
  check_attention("lsh");
}
TEST(LayerGradients, LocalAttention) {
  check_attention("local");
}
TEST(LayerGradients, DenseAttention) {
  check_attention("dense");
}
// Transformer-XL's relative positions: W_R, u and v get their gradients too.
TEST(LayerGradients, LocalAttentionWithRelativePositions) {
  check_attention("local", {"model.position=relative"});
}
TEST(LayerGradients, DenseAttentionWithClampedRelativePositions) {
  check_attention("dense", {"model.position=relative", "model.clamp_len=5"});
}

TEST(LayerGradients, ChunkedFeedForward) {
  Harness h(test::tiny_config());
  FeedForwardLayer layer(h.store, h.cfg, 0, "ff");
  h.ready();
  const int64_t n = h.rows() * h.cfg.model.d_model;
  const auto x_host = test::random_vector(n, 3);
  const auto weights = test::random_vector(n, 4);
  auto x = test::to_device(x_host);
  auto dout = test::to_device(weights);
  DeviceBuffer<float> out(cpu(), n), dx(cpu(), n);
  dx.zero();
  layer.backward(h.kit, h.store, h.step, x.data(), dout.data(), dx.data(), nullptr);
  auto loss = [&] {
    out.zero();
    layer.forward_add(h.kit, h.store, h.step, x.data(), out.data(), 1.0f);
    return test::dot(out.download(), weights);
  };
  expect_input_gradient(x, x_host, dx.download(), loss, "feed-forward");
  test::expect_param_gradients(h.store, loss, kEps, kRelTol, "feed-forward");
}

TEST(LayerGradients, LayerNorm) {
  Harness h(test::tiny_config());
  LayerNormLayer layer(h.store, "norm", h.cfg.model.d_model);
  h.ready();
  // Non-trivial scale and shift so their gradients matter.
  const auto gb = test::random_vector(h.store.size(), 8);
  cpu().upload(h.store.params(), gb.data(), gb.size() * sizeof(float));
  const int64_t n = h.rows() * h.cfg.model.d_model;
  const auto x_host = test::random_vector(n, 5);
  const auto weights = test::random_vector(n, 6);
  auto x = test::to_device(x_host);
  auto dy = test::to_device(weights);
  DeviceBuffer<float> y(cpu(), n), dx(cpu(), n);
  layer.backward(h.kit, h.store, x.data(), dy.data(), dx.data(), h.rows(), false);
  auto loss = [&] {
    layer.forward(h.kit, h.store, x.data(), y.data(), h.rows());
    return test::dot(y.download(), weights);
  };
  expect_input_gradient(x, x_host, dx.download(), loss, "layer norm");
  test::expect_param_gradients(h.store, loss, kEps, kRelTol, "layer norm");
}

void check_embedding(const std::string& position) {
  Harness h(test::tiny_config({"model.position=" + position}));
  EmbeddingLayer layer(h.store, h.cfg);
  h.ready();
  std::vector<int32_t> tokens(h.rows());
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>((i * 7 + i / 5) % 11);
  auto dtokens = test::to_device(tokens);
  const int64_t n = h.rows() * h.cfg.model.d_model;
  const auto weights = test::random_vector(n, 7);
  DeviceBuffer<float> x(cpu(), n);
  auto dx = test::to_device(weights);
  layer.backward(h.kit, h.store, h.step, layer.group_tokens(h.kit, tokens), dx.data());
  auto loss = [&] {
    layer.forward(h.kit, h.store, h.step, dtokens.data(), x.data());
    return test::dot(x.download(), weights);
  };
  test::expect_param_gradients(h.store, loss, kEps, kRelTol, position + " embedding");
}

TEST(LayerGradients, EmbeddingWithAxialPositions) {
  check_embedding("axial");
}
TEST(LayerGradients, EmbeddingWithLearnedPositions) {
  check_embedding("learned");
}

TEST(LayerGradients, LossHead) {
  Harness h(test::tiny_config());
  LossHead head(h.store, h.cfg);
  h.ready();
  const int64_t rows = h.rows(), n = rows * h.cfg.model.d_model;
  const auto x1_host = test::random_vector(n, 9), x2_host = test::random_vector(n, 10);
  auto x1 = test::to_device(x1_host), x2 = test::to_device(x2_host);
  std::vector<int32_t> targets(rows);
  for (int64_t i = 0; i < rows; ++i) targets[i] = static_cast<int32_t>((i * 3) % 11);
  auto dtargets = test::to_device(targets);
  DeviceBuffer<float> dx1(cpu(), n), dx2(cpu(), n);
  dx1.zero();
  dx2.zero();
  const float scale = 1.0f / static_cast<float>(rows);
  head.run(h.kit, h.store, rows, x1.data(), x2.data(), dtargets.data(), scale, dx1.data(),
           dx2.data());
  auto loss = [&] {
    head.run(h.kit, h.store, rows, x1.data(), x2.data(), dtargets.data(), 0, nullptr, nullptr);
    const HeadOutput o = head.results(h.kit, rows);
    double s = 0;
    for (float l : o.row_loss) s += l;
    return s * scale;
  };
  expect_input_gradient(x1, x1_host, dx1.download(), loss, "head stream 1");
  expect_input_gradient(x2, x2_host, dx2.download(), loss, "head stream 2");
  test::expect_param_gradients(h.store, loss, kEps, kRelTol, "head");
}

}  // namespace
}  // namespace rf
