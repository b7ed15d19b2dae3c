// Helpers for tests that run whole trainings or commands: a fresh temporary run directory, running
// a shell command, and reading back a checkpoint's parameters.
#pragma once

#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "data/hdf5_io.h"
#include "tests/model_fixture.h"
#include "tests/test_util.h"
#include "trainer/config.h"
#include "trainer/job.h"
#include "trainer/train_loop.h"

namespace rf::test {

// A new empty directory under the test temp dir, unique per test.
inline std::string fresh_dir(const std::string& name) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const std::filesystem::path dir = std::filesystem::path(::testing::TempDir()) / "rf_tests" /
                                    (std::string(info->test_suite_name()) + "." + info->name()) /
                                    name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

// tiny_config for a short, quiet run into out_dir (no evaluation or intermediate checkpoints),
// then `extra`.
inline Config short_run_config(const std::string& out_dir, int64_t steps, int64_t warmup,
                               const std::vector<std::string>& extra = {}) {
  std::vector<std::string> o = {"train.steps=" + std::to_string(steps),
                                "train.log_every=100",
                                "train.eval_every=0",
                                "train.checkpoint_every=0",
                                "train.out_dir=" + out_dir,
                                "train.lr=0.003",
                                "train.warmup=" + std::to_string(warmup)};
  o.insert(o.end(), extra.begin(), extra.end());
  return tiny_config(o);
}

// Trains cfg in this process without the final report; resume and stop_at as TrainOptions.
inline TrainSummary train_quietly(const Config& cfg, const std::string& resume = "",
                                  int64_t stop_at = -1) {
  JobComms comms = single_process_comms();
  TrainOptions options;
  options.report = false;
  options.resume = resume;
  options.stop_at_step = stop_at;
  return run_training(cfg, options, comms);
}

// What a shell command printed (stdout and stderr, in order), how it exited (-1: not normally)
// and how long it ran.
struct CommandResult {
  int exit_code = -1;
  std::string out;
  double seconds = 0;
};

inline CommandResult run_command(const std::string& command) {
  const auto start = std::chrono::steady_clock::now();
  CommandResult r;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  char buf[4096];
  while (pipe && fgets(buf, sizeof buf, pipe)) r.out += buf;
  const int status = pipe ? pclose(pipe) : -1;
  r.exit_code = status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

inline std::vector<float> checkpoint_params(const std::string& path) {
  const Hdf5File f = Hdf5File::open_read(path);
  std::vector<float> p(static_cast<size_t>(f.dataset_length("params")));
  f.read("params", H5T_NATIVE_FLOAT, 0, static_cast<int64_t>(p.size()), p.data());
  return p;
}

// Two short runs of the same setup, the second also with runtime.step_graphs=true (6 steps, 3 of
// warm-up), each in a fresh directory: {eager, through step graphs}.
inline std::pair<TrainSummary, TrainSummary> train_eager_and_through_graphs(
    const std::vector<std::string>& setup) {
  const std::string eager_dir = fresh_dir("eager"), graph_dir = fresh_dir("graphs");
  const TrainSummary eager = train_quietly(short_run_config(eager_dir, 6, 3, setup));
  std::vector<std::string> with_graphs = setup;
  with_graphs.push_back("runtime.step_graphs=true");
  return {eager, train_quietly(short_run_config(graph_dir, 6, 3, with_graphs))};
}

// The final checkpoints of two runs hold the same parameters, bit for bit.
inline void expect_same_final_params(const TrainSummary& a, const TrainSummary& b) {
  const std::vector<float> pa = checkpoint_params(a.final_checkpoint);
  const std::vector<float> pb = checkpoint_params(b.final_checkpoint);
  ASSERT_EQ(pa.size(), pb.size());
  EXPECT_EQ(std::memcmp(pa.data(), pb.data(), pa.size() * sizeof(float)), 0)
      << "relative difference " << relative_difference(pa, pb);
}

}  // namespace rf::test
