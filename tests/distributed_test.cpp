// Multi-rank training tests, run under mpirun with 2 and 4 ranks: N ranks with per-rank batch b
// end with the parameters of 1 rank with batch N*b; all ranks hold identical parameters after
// every step; step graphs train as eager steps; over an epoch every window is read exactly once
// across ranks, and a resumed stream continues where it stopped; with Transformer-XL's recurrence
// each rank keeps the memory of its own lanes, and the checkpoint gathers them in lane order.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>

#include "kernels/elementwise.h"
#include "kernels/launch_recorder.h"
#include "tests/model_fixture.h"
#include "tests/rank_report.h"
#include "tests/run_fixture.h"
#include "trainer/batches.h"
#include "trainer/model.h"
#include "trainer/rank_agreement.h"
#include "trainer/step_graphs.h"
#include "trainer/train_loop.h"

namespace rf {
namespace {

JobComms* g_comms = nullptr;  // the job's communicators, made once in main()

Communicator& comm() {
  return *g_comms->host;
}

// A directory every rank agrees on (rank 0 creates it).
std::string shared_dir(const std::string& name) {
  std::string dir;
  if (comm().is_root()) dir = test::fresh_dir(name + "_" + std::to_string(comm().size()));
  dir = broadcast_string(comm(), dir);
  return dir;
}

Config config(const std::string& out_dir, int64_t batch, std::vector<std::string> extra = {}) {
  extra.insert(extra.begin(), "train.batch_size=" + std::to_string(batch));
  return test::short_run_config(out_dir, 4, 1, extra);
}

// 600 lines of text in `dir` (shared by the ranks), written by rank 0; returns its path.
std::string shared_text(const std::string& dir) {
  const std::string text = dir + "/text.txt";
  if (comm().is_root()) {
    std::ofstream out(text);
    for (int i = 0; i < 600; ++i) out << "line " << i * 7919 % 1000 << " of text\n";
  }
  comm().barrier();
  return text;
}

// Transformer-XL's memory of 16 over segments of 16 bytes of `text`, relative positions (an LSH
// layer, where a run has one, hashes the memory too).
std::vector<std::string> memory_over(const std::string& text) {
  return {"model.position=relative", "model.vocab_size=256", "model.memory_len=16",
          "lsh.local_chunk=8",       "train.seq_len=16",     "lsh.bucket_size=4",
          "lsh.sees_memory=true",    "data.format=text",     "data.train=" + text};
}

TEST(DataParallel, NRanksEqualOneRankWithNTimesTheBatch) {
  const int n = comm().size();
  const std::string dir = shared_dir("parallel");
  TrainOptions options;
  options.report = false;
  options.verify_replicas = true;  // fails on every rank if any rank's parameters differ
  const TrainSummary parallel = run_training(config(dir + "/ranks", 1), options, *g_comms);
  if (comm().is_root()) {
    JobComms single = single_process_comms();
    const TrainSummary serial = run_training(config(dir + "/serial", n), options, single);
    const auto a = test::checkpoint_params(parallel.final_checkpoint);
    const auto b = test::checkpoint_params(serial.final_checkpoint);
    ASSERT_EQ(a.size(), b.size());
    EXPECT_LT(test::relative_difference(a, b), 1e-5);
    EXPECT_GT(test::relative_difference(
                  a, test::checkpoint_params(
                         run_training(config(dir + "/other", n, {"train.seed=8"}), options, single)
                             .final_checkpoint)),
              1e-3);
    EXPECT_NEAR(parallel.final_loss, serial.final_loss, 1e-5 * std::fabs(serial.final_loss));
  }
  comm().barrier();
}

std::vector<float> checkpoint_memory(const std::string& path) {
  const Hdf5File f = Hdf5File::open_read(path);
  std::vector<float> m(static_cast<size_t>(f.dataset_length("memory")));
  f.read("memory", H5T_NATIVE_FLOAT, 0, static_cast<int64_t>(m.size()), m.data());
  return m;
}

// N ranks x 2 micro-batches of 1 lane each train as 1 rank with 2N lanes: the same lanes read the
// same streams and keep the same memories; with Reformer's two streams, with one (Transformer-XL's
// block), and in the hybrid whose LSH layer hashes its memory with the segment beside a local
// layer.
TEST(DataParallel, RecurrenceNRanksEqualOneRankWithNTimesTheBatch) {
  const int n = comm().size();
  const std::string dir = shared_dir("recurrence");
  const std::string text = shared_text(dir);
  for (const std::string model : {"two_streams", "single", "hybrid"}) {
    SCOPED_TRACE(model);
    const std::string residual = model == "single" ? "single" : "two_streams";
    const std::string attention = model == "hybrid" ? "[lsh, local]" : "[local, dense]";
    auto recurrent = [&](const std::string& out, int64_t batch, int64_t accum) {
      std::vector<std::string> o = memory_over(text);
      o.insert(o.end(),
               {"train.grad_accum=" + std::to_string(accum), "model.attention=" + attention,
                "train.adam_eps=1e-6", "model.residual=" + residual,
                std::string("model.reversible=") + (residual == "single" ? "false" : "true")});
      return config(out, batch, o);
    };
    TrainOptions options;
    options.report = false;
    options.verify_replicas = true;
    std::string run = dir + "/";
    run += model;
    const TrainSummary parallel = run_training(recurrent(run + "_ranks", 1, 2), options, *g_comms);
    if (comm().is_root()) {
      JobComms single = single_process_comms();
      const TrainSummary serial =
          run_training(recurrent(run + "_serial", int64_t{2} * n, 1), options, single);
      EXPECT_LT(test::relative_difference(test::checkpoint_params(parallel.final_checkpoint),
                                          test::checkpoint_params(serial.final_checkpoint)),
                1e-5);
      const auto a = checkpoint_memory(parallel.final_checkpoint);
      const auto b = checkpoint_memory(serial.final_checkpoint);
      // (No ASSERT before the barrier: the other ranks would wait there.)
      EXPECT_EQ(a.size(), static_cast<size_t>(2 * n * 2 * 16 * 16));  // lanes x layers x M x D
      EXPECT_EQ(b.size(), a.size());
      if (a.size() == b.size()) {
        EXPECT_LT(test::relative_difference(a, b), 1e-4);
      }
    }
    comm().barrier();
  }
}

TEST(DataParallel, GradientAccumulationEqualsLargerBatch) {
  const int n = comm().size();
  const std::string dir = shared_dir("accumulation");
  TrainOptions options;
  options.report = false;
  const TrainSummary accumulated =
      run_training(config(dir + "/accum", 1, {"train.grad_accum=2"}), options, *g_comms);
  const TrainSummary big = run_training(config(dir + "/big", 2), options, *g_comms);
  if (comm().is_root()) {
    EXPECT_LT(test::relative_difference(test::checkpoint_params(accumulated.final_checkpoint),
                                        test::checkpoint_params(big.final_checkpoint)),
              1e-5)
        << n << " ranks";
  }
  comm().barrier();
}

// Step graphs with several ranks: the graph of each step's last micro-batch holds the gradient
// averages, each started where the backward pass finishes its bucket (the recorder starts them
// at their place in each replay, as a CUDA graph runs its NCCL kernels). Every rank trains bit for
// bit as without graphs, and the replicas stay identical.
TEST(DataParallel, StepGraphsHoldTheAveragesAndTrainAsEagerStepsOnEveryRank) {
  const std::string dir = shared_dir("graphs");
  TrainOptions options;
  options.report = false;
  options.verify_replicas = true;
  const TrainSummary eager =
      run_training(config(dir + "/eager", 1, {"train.grad_accum=2"}), options, *g_comms);
  const TrainSummary graphs =
      run_training(config(dir + "/graphs", 1, {"train.grad_accum=2", "runtime.step_graphs=true"}),
                   options, *g_comms);
  EXPECT_GE(graphs.step_graphs, 3);
  // Per step, one average per parameter group and the wait that ends them.
  const Config cfg = config(dir + "/count", 1);
  const auto ex = make_cpu_executor(1);
  const int64_t per_step =
      static_cast<int64_t>(ReformerModel(cfg, *ex).params().groups().size()) + 1;
  EXPECT_EQ(eager.collectives, cfg.train.steps * per_step);
  EXPECT_EQ(graphs.collectives, eager.collectives) << "as many collectives, replayed";
  EXPECT_EQ(eager.collectives_in_graphs, 0);
  EXPECT_GE(graphs.collectives_in_graphs, per_step) << "the averages were not in a graph";
  EXPECT_EQ(graphs.collectives_in_graphs % per_step, 0);
  if (comm().is_root()) test::expect_same_final_params(eager, graphs);
  comm().barrier();
}

// The same with Transformer-XL's memory (the hybrid whose LSH layer hashes it): each micro-batch
// runs eagerly until its memory is full, then the last one's graph holds the averages; every rank
// trains bit for bit as without graphs.
TEST(DataParallel, StepGraphsWithAMemoryHoldTheAveragesAndTrainAsEagerSteps) {
  const std::string dir = shared_dir("memory_graphs");
  std::vector<std::string> memory = memory_over(shared_text(dir));
  memory.insert(memory.end(),
                {"train.grad_accum=2", "train.steps=8", "model.attention=[lsh, local]"});
  std::vector<std::string> with_graphs = memory;
  with_graphs.push_back("runtime.step_graphs=true");
  TrainOptions options;
  options.report = false;
  options.verify_replicas = true;
  const TrainSummary eager = run_training(config(dir + "/eager", 1, memory), options, *g_comms);
  const TrainSummary graphs =
      run_training(config(dir + "/graphs", 1, with_graphs), options, *g_comms);
  EXPECT_GE(graphs.step_graphs, 3);
  EXPECT_GT(graphs.collectives_in_graphs, 0) << "the averages were not in a graph";
  EXPECT_EQ(graphs.collectives, eager.collectives);
  if (comm().is_root()) test::expect_same_final_params(eager, graphs);
  comm().barrier();
}

// A part whose graph holds collectives starts over on every rank when memory was released on one
// (NCCL needs a collective captured on all ranks or on none); a part without collectives starts
// over where its memory changed only. Rank 0 releases memory after the graphs exist.
TEST(DataParallel, StepGraphsWithCollectivesStartOverOnEveryRankTogether) {
  LaunchRecorder ex(make_cpu_executor(1));
  DeviceBuffer<float> x(ex, 4);
  x.zero();
  StepGraphs graphs(ex, any_rank_of(comm()));
  auto step = [&] {
    graphs.run(0, 1, [&] {
      add_scaled(ex, x.data(), x.data(), 1.0f, 4);
      ex.start_collective([] {});  // (what it starts does not matter here)
    });
    graphs.run(1, 1, [&] { add_scaled(ex, x.data(), x.data(), 1.0f, 4); });
  };
  for (int i = 0; i < 3; ++i) step();
  EXPECT_EQ(graphs.graphs(), 2);
  if (comm().is_root()) DeviceBuffer<float> released(ex, 16);  // allocated and released
  for (int i = 0; i < 3; ++i) step();
  // Rank 0 captured both parts again; every other rank the one with collectives only.
  EXPECT_EQ(graphs.graphs(), comm().is_root() ? 4 : 3) << "rank " << comm().rank();
}

// A bounded source that counts how often each window is read.
class CountingSource final : public WindowSource {
 public:
  explicit CountingSource(int64_t n) : reads(static_cast<size_t>(n), 0) {}
  int64_t num_windows() const override { return static_cast<int64_t>(reads.size()); }
  int64_t window_length() const override { return 5; }
  void read(int64_t index, int32_t* out) const override {
    ++reads[static_cast<size_t>(index)];
    for (int i = 0; i < 5; ++i) out[i] = static_cast<int32_t>(index);
  }
  std::string describe() const override { return "counting source"; }
  bool consecutive() const override { return false; }
  mutable std::vector<int32_t> reads;
};

TEST(DataParallel, EveryWindowOnceAcrossRanksPerEpochAndResumedStreamsContinue) {
  const int n = comm().size();
  const int64_t per_rank = 3, accum = 2, windows = 6 * per_rank * accum * n;  // 6 steps an epoch
  CountingSource source(windows);
  const SampleOrder order(windows, 11);
  const BatchGeometry g{per_rank, accum, n, comm().rank()};
  std::vector<int32_t> first_epoch_inputs;
  {
    BatchStream stream(source, order, g, 0, 2);
    for (int64_t k = 0; k < 6 * accum; ++k) {
      const TokenBatch b = stream.next();
      for (int64_t i = 0; i < per_rank; ++i) first_epoch_inputs.push_back(b.inputs[i * 4]);
    }
  }
  std::vector<int32_t> seen(static_cast<size_t>(windows), 0);
  for (int32_t w : first_epoch_inputs) ++seen[static_cast<size_t>(w)];
  comm().all_reduce_sum(seen.data(), seen.size(), DType::kInt32);
  for (int64_t w = 0; w < windows; ++w) EXPECT_EQ(seen[w], 1) << "window " << w;
  // A stream resumed at step 4 hands out exactly what the uninterrupted stream did from there.
  BatchStream resumed(source, order, g, 4 * g.global(), 0);
  for (int64_t k = 4 * accum; k < 6 * accum; ++k) {
    const TokenBatch b = resumed.next();
    for (int64_t i = 0; i < per_rank; ++i)
      EXPECT_EQ(b.inputs[i * 4], first_epoch_inputs[k * per_rank + i]);
  }
}

TEST(RankAgreement, FirstConfigDifferenceNamesTheKeyAndSkipsRankLocalOnes) {
  const std::string root =
      "# resolved\nmodel:\n  d_ff: 64\n  attention: [lsh]\ntrain:\n"
      "  out_dir: \"runs/a\"\n  lr: 0.001\ndata:\n  train: \"x.txt\"\n";
  EXPECT_EQ(first_config_difference(root, root), "");
  std::string other = root;
  other.replace(other.find("64"), 2, "128");
  EXPECT_EQ(first_config_difference(other, root), "model.d_ff: 128 here, 64 on rank 0");
  other = root;
  other.replace(other.find("[lsh]"), 5, "[local]");
  EXPECT_EQ(first_config_difference(other, root), "model.attention: [local] here, [lsh] on rank 0");
  other = root;  // the same key under another section is another key
  other.replace(other.find("train:\n"), 7, "optim:\n");
  EXPECT_EQ(first_config_difference(other, root),
            "optim.out_dir: \"runs/a\" here, absent on rank 0");
  other = root;  // paths may be node-local
  other.replace(other.find("runs/a"), 6, "runs/b");
  other.replace(other.find("x.txt"), 5, "y.txt");
  EXPECT_EQ(first_config_difference(other, root), "");
  EXPECT_NE(first_config_difference(root, root + "train:\n  steps: 3\n"), "");
}

// NCCL's set-up is a collective of the GPU ranks: a rank started on another runtime.device left
// them waiting in it. Every rank refuses before it.
TEST(RankAgreement, RanksOnAnotherDeviceRefuseBeforeTheGpusSetUp) {
  RuntimeConfig runtime;
  runtime.device = comm().rank() == comm().size() - 1 ? Device::kCuda : Device::kCpu;
  JobComms borrowed;  // (the job's host communicator, lent for the call)
  borrowed.host = std::move(g_comms->host);
  std::string error;
  try {
    add_device_comms(borrowed, runtime);
  } catch (const AgreedError& e) {
    error = e.what();
  }
  g_comms->host = std::move(borrowed.host);
  EXPECT_EQ(error, "runtime.device is cpu on this rank, but 1 of the " +
                       std::to_string(comm().size()) +
                       " ranks have cuda; every rank must be started with the same config file and "
                       "--set options (" +
                       std::to_string(comm().size()) + " ranks failed)");
}

// What run_training threw on this rank ("" when it returned).
std::string training_error(const Config& cfg) {
  TrainOptions options;
  options.report = false;
  try {
    run_training(cfg, options, *g_comms);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// A rank started with another model would build buffers of another size, which the gradient
// all-reduce overran (heap corruption); another learning rate trained replicas apart. Every rank
// now refuses at start-up, with the line of the lowest rank that differs.
TEST(RankAgreement, RanksStartedWithAnotherConfigRefuseToTrain) {
  const std::string dir = shared_dir("config");
  const bool last = comm().rank() == comm().size() - 1;
  const std::string d_ff = last ? "model.d_ff=48" : "model.d_ff=32";
  const std::string error = training_error(config(dir + "/a", 1, {d_ff}));
  const std::string rank = "rank " + std::to_string(comm().size() - 1) + ": ";
  EXPECT_EQ(error,
            rank +
                "this rank's config differs from rank 0's at model.d_ff: 48 here, 32 on rank "
                "0; every rank must be started with the same config file and --set options");
  const std::string lr = last ? "train.lr=0.002" : "train.lr=0.003";
  EXPECT_NE(training_error(config(dir + "/b", 1, {lr})).find("at train.lr: 0.002 here, 0.003"),
            std::string::npos);
  // Paths may be node-local: another out_dir string trains.
  EXPECT_EQ(training_error(config(dir + (last ? "/c" : "/c/../c"), 1)), "");
}

// A rank stopped at another step than the others waited for them at the next collective until the
// deadline, which then blamed a dead rank or the network. Options that steer the steps now agree.
TEST(RankAgreement, RanksStartedWithAnotherStopStepRefuseToTrain) {
  const std::string dir = shared_dir("options");
  const bool last = comm().rank() == comm().size() - 1;
  TrainOptions options;
  options.report = false;
  if (last) options.stop_at_step = 1;
  std::string error;
  try {
    run_training(config(dir + "/a", 2), options, *g_comms);
  } catch (const Error& e) {
    error = e.what();
  }
  EXPECT_EQ(error, "rank " + std::to_string(comm().size() - 1) +
                       ": this rank's --stop-at-step is 1, rank 0's not given; every rank must be "
                       "started with the same command line");
}

// Ranks reading files of other sizes, or the same size with other tokens, refuse to train.
TEST(RankAgreement, RanksReadingOtherDataRefuseToTrain) {
  const std::string dir = shared_dir("data");
  const std::string text = shared_text(dir);
  const bool last = comm().rank() == comm().size() - 1;
  const std::string mine = dir + "/rank" + std::to_string(comm().rank()) + ".txt";
  std::string content = test::read_text(text);
  auto train_on = [&](const std::string& run, const std::string& variant) {
    {
      std::ofstream out(mine, std::ios::binary | std::ios::trunc);
      out << variant;
    }
    comm().barrier();  // (every rank's file written before any rank reads)
    return training_error(config(
        dir + "/" + run, 1, {"data.format=text", "model.vocab_size=256", "data.train=" + mine}));
  };
  const std::string shorter = last ? content.substr(0, content.size() / 2) : content;
  const std::string rank = "rank " + std::to_string(comm().size() - 1) + ": ";
  const std::string error = train_on("shorter", shorter);
  const std::string last_file = dir + "/rank" + std::to_string(comm().size() - 1) + ".txt";
  EXPECT_EQ(error.rfind(rank + "this rank's training data ('" + last_file, 0), 0u) << error;
  EXPECT_NE(error.find(" windows here, "), std::string::npos) << error;
  std::string changed = content;
  if (last) changed[0] = changed[0] == 'x' ? 'y' : 'x';  // the first window is always compared
  EXPECT_NE(train_on("changed", changed).find("as many windows, other tokens"), std::string::npos);
  EXPECT_EQ(train_on("same", content), "");  // the same text in files of other names trains
}

}  // namespace
}  // namespace rf

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  rf::RuntimeConfig runtime;
  runtime.collective_timeout_s = 120;  // a failing rank must not leave the others waiting long
  rf::JobComms comms = rf::make_job_comms(runtime);
  rf::g_comms = &comms;
  // Only rank 0 prints the test report; the others print their failures, with their rank.
  if (!comms.is_root()) rf::test::report_failures_only(comms.host->rank());
  const int result = RUN_ALL_TESTS();
  int32_t failed = result != 0;
  comms.host->all_reduce_sum(&failed, 1, rf::DType::kInt32);
  rf::g_comms = nullptr;
  return failed ? 1 : 0;
}
