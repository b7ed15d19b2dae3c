// Whole-model tests: finite-difference gradients of the full model (dropout on, LSH buckets held
// fixed), the reversible backward against stored activations, rebuilt inputs and replayed
// dropout, chunked against unchunked feed-forward and head, gradient accumulation against a
// larger batch, and bit-for-bit determinism.
#include "trainer/model.h"

#include <gtest/gtest.h>

#include <cstring>

#include "kernels/cpu/bf16_gemm.h"
#include "kernels/elementwise.h"
#include "tests/model_fixture.h"

namespace rf {
namespace {

using test::cpu;
using test::random_batch;

StepContext context(const Config& cfg, int64_t batch, uint32_t step = 7, uint32_t base = 0) {
  StepContext s;
  s.seed = 5;
  s.step = step;
  s.example_base = base;
  s.batch = batch;
  s.seq_len = cfg.train.seq_len;
  s.training = true;
  return s;
}

std::vector<float> gradients(ReformerModel& m) {
  std::vector<float> g(m.params().size());
  cpu().download(g.data(), m.params().grads(), g.size() * sizeof(float));
  return g;
}

std::vector<float> grads_of(const Config& cfg, const TokenBatch& batch) {
  ReformerModel m(cfg, cpu());
  m.params().zero_grads();
  m.forward_backward(batch, context(cfg, batch.batch),
                     1.0f / static_cast<float>(batch.inputs.size()));
  return gradients(m);
}

TEST(ModelGradients, WholeModelMatchesFiniteDifferences) {
  const Config cfg = test::tiny_config();
  ReformerModel m(cfg, cpu());
  const TokenBatch batch = random_batch(cfg, 2, 1);
  const StepContext step = context(cfg, 2);
  const float scale = 1.0f / static_cast<float>(batch.inputs.size());
  m.params().zero_grads();
  m.forward_backward(batch, step, scale);
  m.stack().freeze_buckets = true;  // the loss is piecewise smooth only with buckets fixed
  auto loss = [&] { return m.forward(batch, step).loss_sum * scale; };
  test::expect_param_gradients(m.params(), loss, 1e-2, 2e-2, "model");
}

// The hybrid of Reformer and Transformer-XL: [lsh, local] with relative positions. The local
// layer has the relative term (W_R, u, v), the LSH layer none, and every gradient, the relative
// term's included, matches finite differences.
TEST(ModelGradients, LshAndRelativeLocalLayersMatchFiniteDifferences) {
  const Config cfg = test::tiny_config({"model.position=relative"});
  ASSERT_EQ(cfg.model.attention,
            (std::vector<AttentionKind>{AttentionKind::kLsh, AttentionKind::kLocal}));
  ReformerModel m(cfg, cpu());
  std::vector<std::string> relative_params;
  for (const ParamTensor& t : m.params().tensors())
    if (t.name.find(".w_r") != std::string::npos || t.name.find(".r_w_bias") != std::string::npos ||
        t.name.find(".r_r_bias") != std::string::npos)
      relative_params.push_back(t.name);
  ASSERT_EQ(relative_params.size(), 3u) << "one layer's W_R, u and v";
  for (const std::string& name : relative_params)
    EXPECT_EQ(name.rfind("layer1.", 0), 0u) << name << " belongs to the local layer";
  const TokenBatch batch = random_batch(cfg, 2, 1);
  const StepContext step = context(cfg, 2);
  const float scale = 1.0f / static_cast<float>(batch.inputs.size());
  m.params().zero_grads();
  m.forward_backward(batch, step, scale);
  m.stack().freeze_buckets = true;
  auto loss = [&] { return m.forward(batch, step).loss_sum * scale; };
  test::expect_param_gradients(m.params(), loss, 1e-2, 2e-2, "hybrid model");
}

TEST(ModelGradients, ReversibleBackwardEqualsStoredActivations) {
  const Config rev = test::tiny_config();
  const Config stored = test::tiny_config({"model.reversible=false"});
  const TokenBatch batch = random_batch(rev, 2, 2);
  const auto a = grads_of(rev, batch), b = grads_of(stored, batch);
  EXPECT_LT(test::relative_difference(a, b), 1e-4);
  EXPECT_GT(test::relative_difference(a, std::vector<float>(a.size(), 0.0f)), 0.5);
}

TEST(ReversibleStack, RebuildsEachLayersInputsWithReplayedBucketsAndDropout) {
  const Config cfg = test::tiny_config({"model.dropout=0.3", "model.attention_dropout=0.3"});
  ReformerModel m(cfg, cpu());
  const TokenBatch batch = random_batch(cfg, 2, 3);
  const int64_t n = static_cast<int64_t>(batch.inputs.size()) * cfg.model.d_model;
  std::vector<std::vector<float>> forward_inputs(cfg.model.n_layers);
  auto capture = [&](std::vector<std::vector<float>>& into) {
    return [&into, n](int64_t layer, const float* x1, const float* x2) {
      into[layer].assign(x1, x1 + n);
      into[layer].insert(into[layer].end(), x2, x2 + n);
    };
  };
  std::vector<std::vector<float>> rebuilt(cfg.model.n_layers);
  m.stack().on_forward_inputs = capture(forward_inputs);
  m.stack().on_rebuilt_inputs = capture(rebuilt);
  m.forward_backward(batch, context(cfg, 2), 0.01f);
  for (int64_t i = 0; i < cfg.model.n_layers; ++i)
    EXPECT_LT(test::max_abs_diff(rebuilt[i], forward_inputs[i]), 1e-4f) << "layer " << i;

  // Control: a backward that draws other dropout masks and rotations (another step) cannot
  // rebuild the inputs, so the check above is meaningful.
  Workspace ws(cpu());
  Kit kit{cpu(), ws};
  std::vector<float> x(forward_inputs[0]);
  DeviceBuffer<float> x1(cpu(), n), x2(cpu(), n), dx1(cpu(), n), dx2(cpu(), n);
  x1.upload(std::vector<float>(x.begin(), x.begin() + n));
  x2.upload(std::vector<float>(x.begin() + n, x.end()));
  dx1.zero();
  dx2.zero();
  m.stack().on_forward_inputs = nullptr;
  m.stack().forward(kit, m.params(), context(cfg, 2, 7), x1.data(), x2.data(), true);
  m.stack().backward(kit, m.params(), context(cfg, 2, 8), x1.data(), x2.data(), dx1.data(),
                     dx2.data(), {});
  EXPECT_GT(test::max_abs_diff(x1.download(), std::vector<float>(x.begin(), x.begin() + n)), 1e-2f);
}

TEST(Chunking, FeedForwardChunksEqualUnchunked) {
  const TokenBatch batch = random_batch(test::tiny_config(), 2, 4);
  const auto a = grads_of(test::tiny_config({"model.ff_chunk=5"}), batch);
  const auto b = grads_of(test::tiny_config({"model.ff_chunk=0"}), batch);
  EXPECT_LT(test::relative_difference(a, b), 1e-5);
}

TEST(Chunking, LossHeadChunksEqualUnchunked) {
  const Config chunked = test::tiny_config({"model.head_chunk=7"});
  const Config whole = test::tiny_config({"model.head_chunk=0"});
  const TokenBatch batch = random_batch(chunked, 2, 5);
  EXPECT_LT(test::relative_difference(grads_of(chunked, batch), grads_of(whole, batch)), 1e-5);
  ReformerModel a(chunked, cpu()), b(whole, cpu());
  const BatchStats sa = a.forward(batch, context(chunked, 2)),
                   sb = b.forward(batch, context(whole, 2));
  EXPECT_LT(test::max_abs_diff(sa.row_loss, sb.row_loss), 1e-5f);
}

TEST(Accumulation, TwoMicroBatchesEqualOneBatchOfTwiceTheSize) {
  const Config cfg = test::tiny_config();
  const TokenBatch big = random_batch(cfg, 4, 6);
  TokenBatch half[2];
  const int64_t rows = 2 * cfg.train.seq_len;
  for (int k = 0; k < 2; ++k) {
    half[k].batch = 2;
    half[k].seq_len = cfg.train.seq_len;
    half[k].inputs.assign(big.inputs.begin() + k * rows, big.inputs.begin() + (k + 1) * rows);
    half[k].targets.assign(big.targets.begin() + k * rows, big.targets.begin() + (k + 1) * rows);
  }
  const float scale = 1.0f / static_cast<float>(big.inputs.size());
  ReformerModel one(cfg, cpu()), two(cfg, cpu());
  one.params().zero_grads();
  one.forward_backward(big, context(cfg, 4, 7, 0), scale);
  two.params().zero_grads();
  // The second micro-batch holds examples 2 and 3 of the step: same rotations and dropout.
  two.forward_backward(half[0], context(cfg, 2, 7, 0), scale);
  two.forward_backward(half[1], context(cfg, 2, 7, 2), scale);
  EXPECT_LT(test::relative_difference(gradients(two), gradients(one)), 1e-5);
}

TEST(Determinism, SameInputsGiveBitIdenticalGradients) {
  const Config cfg = test::tiny_config();
  const TokenBatch batch = random_batch(cfg, 2, 7);
  const auto a = grads_of(cfg, batch), b = grads_of(cfg, batch);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
}

// runtime.precision: bf16 on the CPU: the whole model's loss and gradients stay close to fp32's
// (bf16 keeps 8 significant bits; the accumulation is fp32), but differ, so the bf16 products
// really run inside the model.
TEST(Precision, Bf16GradientsStayCloseToFp32) {
  std::string skip_reason;
  const std::unique_ptr<Executor> bf16 = test::bf16_cpu_or_skip_reason(&skip_reason);
  if (!bf16) GTEST_SKIP() << skip_reason;
  // Local and dense attention only: with LSH, the bf16-rounded projections move some vectors
  // into other buckets, which changes what attends to what (measured: 4-7% gradient difference
  // with LSH, 0.4-0.7% without).
  const Config cfg = test::tiny_config({"model.attention=[local, dense]"});
  const TokenBatch batch = random_batch(cfg, 2, 9);
  auto run = [&](Executor& ex, double* loss) {
    ReformerModel m(cfg, ex);
    m.params().zero_grads();
    *loss = m.forward_backward(batch, context(cfg, batch.batch),
                               1.0f / static_cast<float>(batch.inputs.size()))
                .loss_sum;
    std::vector<float> g(m.params().size());
    ex.download(g.data(), m.params().grads(), g.size() * sizeof(float));
    return g;
  };
  double loss16 = 0, loss32 = 0;
  const auto g16 = run(*bf16, &loss16), g32 = run(cpu(), &loss32);
  EXPECT_NEAR(loss16, loss32, 2e-3 * loss32);
  const double diff = test::relative_difference(g16, g32);
  EXPECT_LT(diff, 1.5e-2);
  EXPECT_GT(diff, 1e-5);
}

// At bf16 the CPU's kernels that make product inputs write them in bf16 (the layer norms before
// the attention projections and the feed-forward, the hidden activation and its gradient, the
// attention's output and its projections' gradients, and without dropout the gradient the
// layer norms' backward passes leave in the residual stream), and
// the products read the weights' bf16 copy, instead of the products rounding fp32 copies: the
// loss and every gradient keep their bits (ReLU and GELU, with and without dropout, two
// feed-forward chunks per pass, LSH and local attention, two residual streams and one).
TEST(Precision, Bf16OperandsWrittenByKernelsKeepEveryBit) {
  std::string skip_reason;
  const std::unique_ptr<Executor> bf16 = test::bf16_cpu_or_skip_reason(&skip_reason);
  if (!bf16) GTEST_SKIP() << skip_reason;
  ASSERT_TRUE(bf16->gemm_takes_bf16_operands());
  const std::vector<std::vector<std::string>> cases = {
      {"model.activation=gelu", "model.dropout=0.2"},
      {"model.activation=relu", "model.dropout=0.2"},
      {"model.activation=gelu", "model.dropout=0.0"},
      {"model.activation=gelu", "model.dropout=0.0", "model.residual=single",
       "model.reversible=false"}};
  for (const std::vector<std::string>& extra : cases) {
    std::vector<std::string> o = {"model.ff_chunk=32", "model.n_layers=3",
                                  "model.attention=[lsh, local]"};
    o.insert(o.end(), extra.begin(), extra.end());
    std::string label;  // (the case, for the failure messages)
    for (const std::string& setting : extra) label += setting + " ";
    const Config cfg = test::tiny_config(o);
    const TokenBatch batch = random_batch(cfg, 2, 13);
    auto run = [&](bool bf16_operands, double* loss) {
      bf16->set_bf16_operands(bf16_operands);
      ReformerModel m(cfg, *bf16);
      m.params().zero_grads();
      *loss = m.forward_backward(batch, context(cfg, batch.batch), 0.01f).loss_sum;
      std::vector<float> g(m.params().size());
      bf16->download(g.data(), m.params().grads(), g.size() * sizeof(float));
      return g;
    };
    double loss_written = 0, loss_rounded = 0;
    const auto written = run(true, &loss_written), rounded = run(false, &loss_rounded);
    EXPECT_EQ(loss_written, loss_rounded) << label;
    ASSERT_EQ(written.size(), rounded.size());
    EXPECT_EQ(std::memcmp(written.data(), rounded.data(), written.size() * sizeof(float)), 0)
        << label;
  }
  bf16->set_bf16_operands(true);
}

// At bf16 the products read the weights from a bf16 copy the model makes at the start of every
// pass, instead of rounding them at each product: the loss and every gradient keep their bits
// across two steps with the parameters changed in between (a copy made once would be stale in
// the second), with LSH, local and dense attention.
TEST(Precision, Bf16WeightCopyFollowsEveryParameterChange) {
  std::string skip_reason;
  const std::unique_ptr<Executor> bf16 = test::bf16_cpu_or_skip_reason(&skip_reason);
  if (!bf16) GTEST_SKIP() << skip_reason;
  const Config cfg = test::tiny_config({"model.n_layers=3", "model.attention=[lsh, local, dense]"});
  const TokenBatch batch = random_batch(cfg, 2, 17);
  auto run = [&](bool bf16_operands, std::vector<double>* losses) {
    bf16->set_bf16_operands(bf16_operands);
    ReformerModel m(cfg, *bf16);
    const int64_t n = static_cast<int64_t>(m.params().size());
    std::vector<float> grads;
    for (uint32_t step = 1; step <= 2; ++step) {
      m.params().zero_grads();
      losses->push_back(m.forward_backward(batch, context(cfg, batch.batch, step), 0.01f).loss_sum);
      int matrix = 0;
      while (m.params().tensor(matrix).shape.size() != 2) ++matrix;
      EXPECT_EQ(m.params().weight(matrix).type,
                bf16_operands ? OperandType::kBf16 : OperandType::kFp32);
      grads.resize(grads.size() + static_cast<size_t>(n));
      bf16->download(grads.data() + grads.size() - n, m.params().grads(), n * sizeof(float));
      add_scaled(*bf16, m.params().params(), m.params().grads(), -50.0f, n);  // a large step
    }
    return grads;
  };
  std::vector<double> loss_copy, loss_rounded;
  const auto copy = run(true, &loss_copy), rounded = run(false, &loss_rounded);
  bf16->set_bf16_operands(true);
  EXPECT_EQ(loss_copy, loss_rounded);
  EXPECT_NE(loss_copy[0], loss_copy[1]);  // the step changed the model
  ASSERT_EQ(copy.size(), rounded.size());
  EXPECT_EQ(std::memcmp(copy.data(), rounded.data(), copy.size() * sizeof(float)), 0);
}

// At bf16 the CPU rounds an operand once for all the products of a GemmOperandReuse scope (the
// feed-forward chunks', the attention layers', the head chunks'). With the checks on, every
// reused operand is rounded again and compared: a whole training step (two feed-forward and head
// chunks, LSH, local and dense attention, dropout, the reversible backward) must reuse only
// operands nothing has written since, and must reuse some.
TEST(Precision, Bf16OperandReuseScopesKeepTheirPromise) {
  set_operand_reuse_checks(true);
  std::string skip_reason;
  const std::unique_ptr<Executor> bf16 = test::bf16_cpu_or_skip_reason(&skip_reason);
  set_operand_reuse_checks(false);
  if (!bf16) GTEST_SKIP() << skip_reason;
  // Also one residual stream without dropout, whose backward writes the gradient buffer the
  // feed-forward's products read. (Without dropout the layer norms' backward passes hand the
  // output projections their gradient in bf16, so fewer operands are rounded and reused: 12
  // checks in this case, 26 with dropout.)
  for (const auto& [extra, least_reuses] :
       {std::pair{std::vector<std::string>{}, 20},
        std::pair{std::vector<std::string>{"model.residual=single", "model.reversible=false",
                                           "model.dropout=0.0"},
                  8}}) {
    std::vector<std::string> o = {"model.n_layers=3", "model.attention=[lsh, local, dense]",
                                  "model.ff_chunk=32", "model.head_chunk=40"};
    o.insert(o.end(), extra.begin(), extra.end());
    const Config cfg = test::tiny_config(o);
    const TokenBatch batch = random_batch(cfg, 2, 12);
    ReformerModel m(cfg, *bf16);
    const int64_t before = checked_operand_reuses();
    for (uint32_t step = 1; step <= 2; ++step) {
      m.params().zero_grads();
      EXPECT_NO_THROW(m.forward_backward(batch, context(cfg, batch.batch, step), 0.01f));
    }
    EXPECT_GT(checked_operand_reuses() - before, least_reuses);
  }
}

}  // namespace
}  // namespace rf
