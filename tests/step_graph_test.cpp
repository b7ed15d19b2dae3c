// Step graphs (runtime.step_graphs): a training step's device work captured once and replayed.
// The LaunchRecorder does on the CPU what a CUDA graph does on a GPU, so these tests show that the
// step's launches carry no per-step value in their arguments and that no host work hides inside
// them: anything of the kind would make replayed training differ from eager training.
#include <gtest/gtest.h>

#include <cstring>

#include "kernels/elementwise.h"
#include "kernels/gemm_desc.h"
#include "kernels/launch_recorder.h"
#include "tests/model_fixture.h"
#include "tests/run_fixture.h"
#include "trainer/model.h"
#include "trainer/step_graphs.h"

namespace rf {
namespace {

using test::random_batch;

std::unique_ptr<LaunchRecorder> recorder() {
  return std::make_unique<LaunchRecorder>(make_cpu_executor(1));
}

std::vector<float> download_floats(Executor& ex, const float* x, size_t n) {
  std::vector<float> host(n);
  ex.download(host.data(), x, n * sizeof(float));
  return host;
}

StepContext training_step(const Config& cfg, uint32_t step) {
  StepContext s;
  s.seed = 5;
  s.step = step;
  s.batch = 2;
  s.seq_len = cfg.train.seq_len;
  s.training = true;
  return s;
}

TEST(LaunchRecorder, KeepsLaunchesWhileCapturingAndReplaysThemWithTheirArguments) {
  auto ex = recorder();
  DeviceBuffer<float> x(*ex, 5), y(*ex, 5);
  x.upload({1, 2, 3, 4, 5});
  y.zero();
  const int64_t launches = ex->launches();
  ex->begin_capture();
  add_scaled(*ex, y.data(), x.data(), 2.0f, 5);  // y += 2 x
  const int graph = ex->end_capture();
  EXPECT_EQ(ex->launches(), launches) << "a capture runs nothing";
  EXPECT_EQ(download_floats(*ex, y.data(), 5), std::vector<float>(5, 0.0f))
      << "ran while capturing";
  EXPECT_GE(ex->recorded_launches(), 1);
  ex->replay_graph(graph);
  EXPECT_EQ(ex->launches(), launches + 1) << "a replay counts the launches its graph holds";
  EXPECT_EQ(download_floats(*ex, y.data(), 5), (std::vector<float>{2, 4, 6, 8, 10}));
  // A replay reads what memory holds then, not what it held at capture.
  x.upload({1, 1, 1, 1, 1});
  ex->replay_graph(graph);
  EXPECT_EQ(download_floats(*ex, y.data(), 5), (std::vector<float>{4, 6, 8, 10, 12}));
}

// A collective (a gradient average) started among the launches: eagerly it starts at once; in a
// capture it is kept and starts at its place in each replay, after the launches before it and
// before those after it, so the communication overlaps what follows it.
TEST(LaunchRecorder, StartsACollectiveAtItsPlaceInEachReplay) {
  auto ex = recorder();
  DeviceBuffer<float> x(*ex, 3), y(*ex, 3);
  x.upload({1, 2, 3});
  y.zero();
  std::vector<std::vector<float>> seen;  // y as each start found it
  auto start = [&] { seen.push_back(download_floats(*ex, y.data(), 3)); };
  ex->start_collective(start);
  EXPECT_EQ(seen.size(), 1u) << "an eager collective starts at once";
  EXPECT_EQ(ex->collectives(), 1);
  ex->begin_capture();
  add_scaled(*ex, y.data(), x.data(), 1.0f, 3);
  ex->start_collective(start);
  add_scaled(*ex, y.data(), x.data(), 10.0f, 3);
  const int graph = ex->end_capture();
  EXPECT_EQ(seen.size(), 1u) << "started while capturing";
  EXPECT_EQ(ex->collectives(), 1) << "a capture starts nothing";
  EXPECT_EQ(ex->collectives_in_graphs(), 1);
  ex->replay_graph(graph);
  ex->replay_graph(graph);
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[1], (std::vector<float>{1, 2, 3})) << "not between the two launches";
  EXPECT_EQ(seen[2], (std::vector<float>{12, 24, 36}));
  EXPECT_EQ(download_floats(*ex, y.data(), 3), (std::vector<float>{22, 44, 66}));
  EXPECT_EQ(ex->collectives(), 3) << "a replay counts the collectives its graph holds";
  ex->drop_graphs();
  EXPECT_EQ(ex->collectives_in_graphs(), 0);
  EXPECT_EQ(ex->recorded_launches(), 0) << "the dropped graphs' launches are still kept";
}

// step_bench --profile-ops: with timing on, each launch is counted under its name (kernels by op,
// GEMMs by shape, with their arithmetic), and only while timing is on; the results are those of
// untimed launches.
TEST(LaunchRecorder, TimesLaunchesByNameWhileAsked) {
  auto ex = recorder();
  DeviceBuffer<float> x(*ex, 12), y(*ex, 12), c(*ex, 6);
  x.upload(std::vector<float>(12, 1.0f));
  y.zero();
  RowMajorGemm rows;  // C [2, 3] = A [2, 4] B [4, 3]
  rows.m = 2;
  rows.n = 3;
  rows.k = 4;
  rows.lda = 4;
  rows.ldb = 3;
  rows.ldc = 3;
  const GemmDesc product = to_column_major(rows);
  add_scaled(*ex, y.data(), x.data(), 2.0f, 12);  // before timing: not counted
  ex->set_launch_timing(true);
  add_scaled(*ex, y.data(), x.data(), 2.0f, 12);
  add_scaled(*ex, y.data(), x.data(), 2.0f, 12);
  ex->gemm(product, x.data(), y.data(), c.data());
  ex->set_launch_timing(false);
  add_scaled(*ex, y.data(), x.data(), 2.0f, 12);  // after: not counted
  const auto& times = ex->launch_times();
  ASSERT_EQ(times.size(), 2u);
  const auto kernel = times.find("AddScaled");
  ASSERT_NE(kernel, times.end());
  EXPECT_EQ(kernel->second.launches, 2);
  EXPECT_GT(kernel->second.seconds, 0.0);
  EXPECT_EQ(kernel->second.flop, 0.0);
  const auto gemm = times.find("gemm NN 3x2x4");  // column-major: C^T [3, 2] = B^T A^T
  ASSERT_NE(gemm, times.end()) << times.begin()->first;
  EXPECT_EQ(gemm->second.launches, 1);
  EXPECT_EQ(gemm->second.flop, 2.0 * 2 * 3 * 4);
  EXPECT_EQ(download_floats(*ex, y.data(), 12), std::vector<float>(12, 8.0f));
  EXPECT_EQ(download_floats(*ex, c.data(), 6), std::vector<float>(6, 4 * 6.0f));
  EXPECT_NE(ex->describe().find("timed"), std::string::npos) << ex->describe();
}

TEST(LaunchRecorder, RefusesWhatAGraphCannotHoldWhileCapturing) {
  auto ex = recorder();
  DeviceBuffer<float> x(*ex, 4);
  const std::vector<float> host(4, 1.0f);
  std::vector<float> back(4);
  const std::vector<std::pair<std::string, std::function<void()>>> calls = {
      {"an upload from the host", [&] { ex->upload(x.data(), host.data(), 16); }},
      {"a download to the host", [&] { ex->download(back.data(), x.data(), 16); }},
      {"a wait for the device", [&] { ex->synchronize(); }},
      {"an allocation", [&] { DeviceBuffer<float> more(*ex, 8); }},
  };
  for (const auto& [what, call] : calls) {
    ex->begin_capture();
    try {
      call();
      ADD_FAILURE() << what << " was accepted while capturing";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what + " while a step graph is being captured"),
                std::string::npos)
          << e.what();
    }
    ex->end_capture();
  }
  // A whole micro-step with its uploads is refused too: only its device work can be captured.
  const Config cfg = test::tiny_config();
  ReformerModel model(cfg, *ex);
  const TokenBatch batch = random_batch(cfg, 2, 1);
  ex->begin_capture();
  EXPECT_THROW(model.forward_backward(batch, training_step(cfg, 1), 0.01f), Error);
  ex->end_capture();
}

// A graph may hold the address of memory released after its capture (a workspace that grew): it
// is not replayed any more; the part runs as usual once and is captured again.
TEST(StepGraphs, CaptureAgainWhenMemoryWasReleased) {
  auto ex = recorder();
  Workspace ws(*ex);
  StepGraphs graphs(*ex);
  DeviceBuffer<float> x(*ex, 4);
  x.upload({1, 2, 3, 4});
  float* y = nullptr;
  auto part = [&] { add_scaled(*ex, y, x.data(), 1.0f, 4); };  // y += x
  y = ws.floats("y", 4);
  ex->zero(y, 4 * sizeof(float));
  graphs.run(0, 4, part);  // as usual
  graphs.run(0, 4, part);  // captured and replayed
  EXPECT_EQ(graphs.graphs(), 1);
  EXPECT_EQ(download_floats(*ex, y, 4), (std::vector<float>{2, 4, 6, 8}));
  y = ws.floats("y", 64);  // grows: the captured graph holds the freed buffer
  ex->zero(y, 4 * sizeof(float));
  graphs.run(0, 4, part);
  EXPECT_EQ(download_floats(*ex, y, 4), (std::vector<float>{1, 2, 3, 4}))
      << "replayed a stale graph";
  EXPECT_EQ(graphs.graphs(), 1);
  graphs.run(0, 4, part);  // captured again
  EXPECT_EQ(graphs.graphs(), 2);
  EXPECT_EQ(download_floats(*ex, y, 4), (std::vector<float>{2, 4, 6, 8}));
}

// The model's device work, captured at one step and replayed at others, equals running it at
// those steps: dropout masks and LSH rotations follow the step number the host stages, not the
// one the capture saw.
TEST(StepGraphs, ReplayedMicroStepEqualsTheMicroStepOfTheStagedStep) {
  const Config cfg = test::tiny_config();  // dropout on, LSH and local attention
  const TokenBatch batch = random_batch(cfg, 2, 4);
  auto graphs = recorder();
  ReformerModel replayed(cfg, *graphs);
  // Warm-up (allocations), then capture at step 1.
  replayed.forward_backward(batch, training_step(cfg, 1), 0.01f);
  const StepContext staged = replayed.stage(batch, training_step(cfg, 1));
  graphs->begin_capture();
  replayed.params().zero_grads();
  replayed.compute_forward_backward(staged, 0.01f);
  const int graph = graphs->end_capture();
  double previous_loss = 0;
  for (uint32_t step : {1u, 2u, 9u}) {
    replayed.stage(batch, training_step(cfg, step));
    graphs->replay_graph(graph);
    const BatchStats got = replayed.collect(batch);

    ReformerModel eager(cfg, test::cpu());
    eager.params().zero_grads();
    const BatchStats want = eager.forward_backward(batch, training_step(cfg, step), 0.01f);
    EXPECT_EQ(got.loss_sum, want.loss_sum) << "step " << step;
    const std::vector<float> g =
        download_floats(*graphs, replayed.params().grads(), replayed.params().size());
    const std::vector<float> w =
        download_floats(test::cpu(), eager.params().grads(), eager.params().size());
    ASSERT_EQ(g.size(), w.size());
    EXPECT_EQ(std::memcmp(g.data(), w.data(), g.size() * sizeof(float)), 0) << "step " << step;
    if (step > 1) {
      EXPECT_NE(got.loss_sum, previous_loss) << "dropout did not change with the step";
    }
    previous_loss = got.loss_sum;
  }
}

// Whole trainings: with gradient accumulation, dropout, LSH, warm-up and evaluations, a run whose
// micro-batches and optimizer steps replay graphs ends with the same parameters, bit for bit.
TEST(StepGraphs, TrainingFromReplayedGraphsEqualsEagerTrainingBitForBit) {
  // Evaluation every other step (its batches may need other buffers; graphs that might hold a
  // released one are captured again).
  const auto [eager, graphs] = test::train_eager_and_through_graphs(
      {"train.grad_accum=2", "train.eval_every=2", "train.eval_batches=2"});
  EXPECT_GE(graphs.step_graphs, 3) << "two micro-batches and the optimizer";
  EXPECT_EQ(eager.step_graphs, 0);
  EXPECT_EQ(graphs.final_loss, eager.final_loss);
  test::expect_same_final_params(eager, graphs);
}

// The same with one residual stream (model.residual = single, stored inputs).
TEST(StepGraphs, OneResidualStreamTrainsFromGraphsAsEagerly) {
  const auto [eager, graphs] = test::train_eager_and_through_graphs(
      {"train.grad_accum=2", "model.residual=single", "model.reversible=false"});
  EXPECT_GE(graphs.step_graphs, 3) << "two micro-batches and the optimizer";
  EXPECT_EQ(graphs.final_loss, eager.final_loss);
  test::expect_same_final_params(eager, graphs);
}

}  // namespace
}  // namespace rf
