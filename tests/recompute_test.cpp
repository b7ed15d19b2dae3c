// model.recompute: layers that keep their activations (none, the default without reversible
// layers) train bit for bit as layers that run their forward again in the backward (layers), with
// LSH, local and dense attention, dropout, chunked feed-forward, one residual stream and
// Transformer-XL's memory; the backward then runs no attention forward or activation again; the
// FLOP count (trainer/flop_count.cpp) matches the GEMMs each mode runs; and the config rule.
#include <gtest/gtest.h>

#include <cstring>

#include "kernels/launch_recorder.h"
#include "tests/model_fixture.h"
#include "trainer/flop_count.h"
#include "trainer/model.h"

namespace rf {
namespace {

using test::cpu;
using test::random_batch;

// A model, and the memory its layers see (Transformer-XL's, 0: none).
struct Model {
  std::vector<std::string> overrides;
  int64_t memory_len = 0;
};

const std::vector<Model> kModels = {
    {{"model.ff_chunk=5"}},  // [lsh, local], dropout on
    {{"model.attention=[dense]", "model.dropout=0", "model.attention_dropout=0"}},
    {{"model.residual=single", "model.attention=[local, dense]", "model.position=relative"}},
    {{"model.position=relative"}},  // [lsh, local]: the LSH layer without the relative term
    {{"model.attention=[local, dense]", "model.position=relative", "train.seq_len=16",
      "lsh.local_chunk=8"},
     16},
    {{"model.residual=single", "model.attention=[dense]", "model.position=relative",
      "train.seq_len=16", "model.dropout=0"},
     16},
    // [lsh, local] with a memory that the LSH layer hashes with the segment (dropout on)
    {{"model.position=relative", "train.seq_len=16", "lsh.local_chunk=8", "lsh.sees_memory=true"},
     16},
};

Config with(std::vector<std::string> overrides, const std::string& recompute) {
  overrides.push_back("model.reversible=false");
  overrides.push_back("model.recompute=" + recompute);
  return test::tiny_config(overrides);
}

// The gradients of two micro-batches accumulated (the second reuses the kept buffers; with a
// memory, the second segment sees the first one's).
std::vector<float> gradients_of(const Config& cfg, int64_t memory_len, Executor& ex) {
  ReformerModel m(cfg, ex);
  test::randomize_params(m, 17);
  SegmentMemory memory(memory_len);
  for (uint32_t micro = 1; micro <= 2; ++micro)
    m.forward_backward(random_batch(cfg, 2, micro), test::step_context(2, cfg.train.seq_len, micro),
                       0.01f, {}, memory_len > 0 ? &memory : nullptr);
  if (memory_len > 0) {
    EXPECT_EQ(memory.len, memory_len);
  }
  std::vector<float> g(m.params().size());
  ex.download(g.data(), m.params().grads(), g.size() * sizeof(float));
  return g;
}

std::vector<float> gradients_of(const Model& model, const std::string& recompute, Executor& ex) {
  return gradients_of(with(model.overrides, recompute), model.memory_len, ex);
}

TEST(Recompute, KeptActivationsTrainBitForBitAsRecomputedLayers) {
  for (const Model& model : kModels) {
    const auto kept = gradients_of(model, "none", cpu());
    const auto recomputed = gradients_of(model, "layers", cpu());
    ASSERT_EQ(kept.size(), recomputed.size());
    EXPECT_EQ(std::memcmp(kept.data(), recomputed.data(), kept.size() * sizeof(float)), 0)
        << test::describe_overrides(model.overrides) << "max difference "
        << test::max_abs_diff(kept, recomputed);
    EXPECT_GT(test::relative_difference(kept, std::vector<float>(kept.size(), 0.0f)), 0.5);
  }
}

// A reversible stack whose top layers are stored (model.stored_top_layers): with every layer
// stored it trains bit for bit as stored layers that keep their activations (two streams: LSH and
// local attention with dropout, without and with a memory, and dense); with the top one
// stored, its gradients are the fully reversible stack's within the rounding of the rebuilt
// inputs, and differ from them (the top layer's inputs are no longer rebuilt).
std::vector<float> stored_top_gradients(const Model& model, int64_t stored_top_layers) {
  std::vector<std::string> overrides = model.overrides;
  overrides.push_back("model.stored_top_layers=" + std::to_string(stored_top_layers));
  return gradients_of(test::tiny_config(overrides), model.memory_len, cpu());
}

TEST(Recompute, StoredTopLayersOfAReversibleStackTrainAsStoredLayers) {
  for (const Model& model : {kModels[0], kModels[1], kModels[3], kModels[6]}) {
    const int64_t layers = test::tiny_config(model.overrides).model.n_layers;
    const auto all_stored = stored_top_gradients(model, layers);
    const auto kept = gradients_of(model, "none", cpu());
    ASSERT_EQ(all_stored.size(), kept.size());
    EXPECT_EQ(std::memcmp(all_stored.data(), kept.data(), kept.size() * sizeof(float)), 0)
        << test::describe_overrides(model.overrides) << "max difference "
        << test::max_abs_diff(all_stored, kept);
    const auto top_stored = stored_top_gradients(model, 1);
    const auto rebuilt = stored_top_gradients(model, 0);
    EXPECT_LT(test::relative_difference(top_stored, rebuilt), 1e-4)
        << test::describe_overrides(model.overrides);
    EXPECT_NE(top_stored, rebuilt) << test::describe_overrides(model.overrides);
    EXPECT_GT(test::relative_difference(top_stored, std::vector<float>(kept.size(), 0.0f)), 0.5);
  }
}

// With bf16 products: kept bf16 operands (written by the forward's kernels), or kept fp32 ones
// that each product rounds (set_bf16_operands(false), where the activation's gradient overwrites
// the kept activation): bit for bit as recomputing, and the same bits either way.
TEST(Recompute, KeptBf16OperandsTrainBitForBitAsRecomputedLayers) {
  std::string skip_reason;
  const std::unique_ptr<Executor> bf16 = test::bf16_cpu_or_skip_reason(&skip_reason);
  if (!bf16) GTEST_SKIP() << skip_reason;
  for (const Model& model : {kModels[0], kModels[3], kModels[6]}) {
    std::vector<std::vector<float>> kept_by_operands;
    for (const bool bf16_operands : {true, false}) {
      bf16->set_bf16_operands(bf16_operands);
      const auto kept = gradients_of(model, "none", *bf16);
      const auto recomputed = gradients_of(model, "layers", *bf16);
      EXPECT_EQ(std::memcmp(kept.data(), recomputed.data(), kept.size() * sizeof(float)), 0)
          << test::describe_overrides(model.overrides) << "bf16 operands " << bf16_operands;
      kept_by_operands.push_back(kept);
    }
    EXPECT_EQ(kept_by_operands[0], kept_by_operands[1])
        << test::describe_overrides(model.overrides);
  }
  bf16->set_bf16_operands(true);
}

// Launches by name, and the FLOPs of all GEMM launches, of one training micro-step.
struct StepLaunches {
  std::map<std::string, int64_t> count;
  double gemm_flop = 0;
};

StepLaunches launches_of(const Config& cfg) {
  LaunchRecorder ex(make_cpu_executor(1));
  ReformerModel m(cfg, ex);
  const TokenBatch batch = random_batch(cfg, 2, 1);
  const StepContext step = test::step_context(2, cfg.train.seq_len, 1);
  m.forward_backward(batch, step, 0.01f);  // (the first allocates)
  ex.set_launch_timing(true);
  m.forward_backward(batch, step, 0.01f);
  ex.set_launch_timing(false);
  StepLaunches s;
  for (const auto& [name, time] : ex.launch_times()) {
    s.count[name] = time.launches;
    if (name.rfind("gemm ", 0) == 0) s.gemm_flop += time.flop;
  }
  return s;
}

TEST(Recompute, TheBackwardRunsNoAttentionForwardOrActivationAgain) {
  const std::vector<std::string> model = {"model.ff_chunk=5", "model.dropout=0"};
  const Config kept = with(model, "none"), recomputed = with(model, "layers");
  const int64_t layers = kept.model.n_layers, ff_chunks = (2 * 32 + 4) / 5;
  StepLaunches a = launches_of(kept), b = launches_of(recomputed);
  EXPECT_EQ(a.count["attention forward"], layers);
  EXPECT_EQ(b.count["attention forward"], 2 * layers);
  EXPECT_EQ(a.count["BiasActivationForward"], layers * ff_chunks);
  EXPECT_EQ(b.count["BiasActivationForward"], 2 * layers * ff_chunks);
  EXPECT_EQ(a.count["CombineRounds"], layers);  // (the backward reads the kept output)
  EXPECT_EQ(b.count["CombineRounds"], 2 * layers);
  // The backward passes themselves are the same.
  EXPECT_EQ(a.count["attention gradients"], b.count["attention gradients"]);
  EXPECT_EQ(a.count["ActivationBackward"], b.count["ActivationBackward"]);
  // A reversible stack with its top layer stored runs the forward of the layers below again.
  std::vector<std::string> top_stored = model;
  top_stored.push_back("model.stored_top_layers=1");
  StepLaunches c = launches_of(test::tiny_config(top_stored));
  EXPECT_EQ(c.count["attention forward"], 2 * layers - 1);
  EXPECT_EQ(c.count["BiasActivationForward"], (2 * layers - 1) * ff_chunks);
  EXPECT_EQ(c.count["attention gradients"], b.count["attention gradients"]);
}

// The FLOP count of a model is the GEMMs' (what the executor multiplied) plus the fused
// attention's products, for reversible layers, a reversible stack with its top layer stored,
// stored layers that recompute, and kept activations.
void expect_counted_flops_run(const std::vector<std::string>& model) {
  std::vector<std::string> top_stored = model;
  top_stored.push_back("model.stored_top_layers=1");
  std::vector<double> totals;
  for (const Config& cfg : {test::tiny_config(model), test::tiny_config(top_stored),
                            with(model, "layers"), with(model, "none")}) {
    const StepFlops counted = training_step_flops(cfg, 2, cfg.train.seq_len);
    const double run = launches_of(cfg).gemm_flop;
    EXPECT_NEAR(counted.total() - counted.attention, run, 1e-9 * run)
        << "reversible " << cfg.model.reversible << ", recomputes " << cfg.recomputes_layers();
    totals.push_back(counted.total());
  }
  EXPECT_GT(totals[0], totals[1]);  // reversible > top layer stored > activations kept
  EXPECT_GT(totals[1], totals[3]);
  EXPECT_GT(totals[0], totals[2]);  // reversible > stored and recomputed > activations kept
  EXPECT_GT(totals[2], totals[3]);
}

// With LSH and local layers (also with relative positions, which the LSH layer does not take),
// and with local and dense layers with relative positions.
TEST(FlopCount, CountsTheGemmsEachRecomputeModeRuns) {
  for (const std::vector<std::string>& model : std::vector<std::vector<std::string>>{
           {"model.ff_chunk=5", "model.dropout=0", "model.attention_dropout=0"},
           {"model.position=relative", "model.dropout=0", "model.attention_dropout=0"},
           {"model.attention=[local, dense]", "model.position=relative", "model.dropout=0",
            "model.attention_dropout=0"}})
    expect_counted_flops_run(model);
}

// The FLOP count with a memory (taken full, as from the second segment on) against the GEMMs of
// the third segment's step.
void expect_counted_memory_flops_run(const std::string& attention, const std::string& lsh_memory) {
  SCOPED_TRACE(attention + " " + lsh_memory);
  const Config cfg =
      test::tiny_config({attention, lsh_memory, "model.position=relative", "model.dropout=0",
                         "model.attention_dropout=0", "train.seq_len=16", "lsh.local_chunk=8"});
  LaunchRecorder ex(make_cpu_executor(1));
  ReformerModel m(cfg, ex);
  SegmentMemory memory(16);
  for (uint32_t segment = 1; segment <= 3; ++segment) {
    ex.set_launch_timing(segment == 3);
    m.forward_backward(random_batch(cfg, 2, segment), test::step_context(2, 16, segment), 0.01f, {},
                       &memory);
  }
  ex.set_launch_timing(false);
  double run = 0;
  for (const auto& [name, time] : ex.launch_times())
    if (name.rfind("gemm ", 0) == 0) run += time.flop;
  Config with_memory = cfg;
  with_memory.model.memory_len = 16;
  const StepFlops counted = training_step_flops(with_memory, 2, 16);
  EXPECT_NEAR(counted.total() - counted.attention, run, 1e-9 * run);
}

// Local and dense layers, and the hybrid, whose LSH layer sees the memory (its projections and
// hashing take the memory's rows: counting the hashing of the segment's alone fails this) or not
// (they take none: counting them fails this).
TEST(FlopCount, CountsTheRelativeTermOfAMemory) {
  expect_counted_memory_flops_run("model.attention=[local, dense]", "lsh.sees_memory=false");
  for (const char* lsh_memory : {"lsh.sees_memory=true", "lsh.sees_memory=false"})
    expect_counted_memory_flops_run("model.attention=[lsh, local]", lsh_memory);
}

// Kept activations are sized before the forward runs: when they do not fit, the error says so
// and what keeps less (here half a terabyte of feed-forward activations).
TEST(Recompute, KeptActivationsThatDoNotFitSayWhatKeepsLess) {
  const Config cfg =
      test::tiny_config({"model.reversible=false", "model.d_ff=1048576", "model.attention=[dense]",
                         "model.position=none", "train.seq_len=4096", "model.dropout=0"});
  ReformerModel m(cfg, cpu());
  try {
    m.forward_backward(random_batch(cfg, 32, 1), test::step_context(32, 4096, 1), 0.01f);
    FAIL() << "kept half a terabyte of activations";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("out of host memory"), std::string::npos) << message;
    EXPECT_NE(message.find("model.recompute: layers keeps only their inputs"), std::string::npos)
        << message;
  }
}

TEST(Recompute, ConfigRefusesKeptActivationsWithReversibleLayers) {
  try {
    test::tiny_config({"model.recompute=none"});
    FAIL() << "accepted model.recompute=none with reversible layers";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.recompute = none needs model.reversible: false"),
              std::string::npos)
        << e.what();
  }
  // model.stored_top_layers: a reversible stack's top layers, at most all of them.
  for (const auto& [overrides, message] :
       std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"model.stored_top_layers=3"},
            "model.stored_top_layers = 3 is more than model.n_layers = 2"},
           {{"model.stored_top_layers=1", "model.reversible=false"},
            "model.stored_top_layers = 1 needs model.reversible: true"}}) {
    try {
      test::tiny_config(overrides);
      FAIL() << "accepted " << test::describe_overrides(overrides);
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << e.what();
    }
  }
  const Config top = test::tiny_config({"model.stored_top_layers=1"});
  EXPECT_FALSE(top.stores_layer(0));
  EXPECT_TRUE(top.stores_layer(1));
  EXPECT_TRUE(top.keeps_layer_activations(1));
  EXPECT_TRUE(test::tiny_config({"model.recompute=layers"}).recomputes_layers());
  EXPECT_TRUE(test::tiny_config().recomputes_layers());
  EXPECT_FALSE(test::tiny_config({"model.reversible=false"}).recomputes_layers());
}

}  // namespace
}  // namespace rf
