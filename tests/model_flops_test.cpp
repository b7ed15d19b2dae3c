// The training log's model FLOP rate: the step's counted FLOPs (trainer/flop_count.h) at the
// measured pace, per rank, in metrics.jsonl and the log line; the GPU peak rates MFU divides by
// (kernels/device_peak.h); and how the log writes FLOP counts.
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <thread>

#include "kernels/device_peak.h"
#include "tests/run_fixture.h"
#include "trainer/flop_count.h"
#include "trainer/progress.h"

namespace rf {
namespace {

// The ETA is the steps left at the rate the same line shows (an average of the steps' times
// instead put it at 10x that after one stalled step), and ends where the run stops.
TEST(ProgressClock, TheEtaIsTheStepsLeftAtTheRateTheLineShows) {
  ProgressClock clock(0, 10);
  clock.step_done(0, 100);  // (warm-up: not timed)
  EXPECT_TRUE(std::isnan(clock.eta_seconds(0)));
  std::this_thread::sleep_for(std::chrono::milliseconds(1));
  clock.step_done(1, 100);
  std::this_thread::sleep_for(std::chrono::milliseconds(30));  // a stalled step
  clock.step_done(2, 100);
  ASSERT_GT(clock.tokens_per_second(), 0);
  EXPECT_NEAR(clock.eta_seconds(2), 7 * 100 / clock.tokens_per_second(),
              1e-9 * clock.eta_seconds(2));
  EXPECT_EQ(clock.eta_seconds(9), 0);
}

TEST(FormatFlops, ThreeSignificantFiguresWithTheUnitThatKeepsThemBelowAThousand) {
  EXPECT_EQ(format_flops(2.2995561e10), "23.0 GFLOP");
  EXPECT_EQ(format_flops(2.63e9), "2.63 GFLOP");
  EXPECT_EQ(format_flops(950e6), "950 MFLOP");
  EXPECT_EQ(format_flops(999.7e9), "1.00 TFLOP");  // not "1000 GFLOP" or "1e+03"
  EXPECT_EQ(format_flops(99.97e12), "100 TFLOP");
  EXPECT_EQ(format_flops(989e12), "989 TFLOP");
  EXPECT_EQ(format_flops(12), "12.0 FLOP");
  EXPECT_EQ(format_flops(0), "?");
  EXPECT_EQ(format_flops(-1), "?");
  EXPECT_EQ(format_flops(std::nan("")), "?");
}

TEST(DensePeak, DataSheetRatesByTheNameTheDriverReports) {
  const GemmPrecision fp32 = GemmPrecision::kFp32, tf32 = GemmPrecision::kTf32,
                      bf16 = GemmPrecision::kBf16;
  EXPECT_EQ(dense_peak_tflops("NVIDIA H100 80GB HBM3", fp32), 67);
  EXPECT_EQ(dense_peak_tflops("NVIDIA H100 80GB HBM3", tf32), 495);
  EXPECT_EQ(dense_peak_tflops("NVIDIA H100 80GB HBM3", bf16), 989);
  // The variants whose names contain a shorter one's: each its own rate.
  EXPECT_EQ(dense_peak_tflops("NVIDIA H100 PCIe", bf16), 756);
  EXPECT_EQ(dense_peak_tflops("NVIDIA H100 NVL", bf16), 835);
  EXPECT_EQ(dense_peak_tflops("NVIDIA H200 NVL", fp32), 60);
  EXPECT_EQ(dense_peak_tflops("NVIDIA H200", bf16), 989);
  EXPECT_EQ(dense_peak_tflops("NVIDIA GH200 480GB", tf32), 495);
  EXPECT_EQ(dense_peak_tflops("NVIDIA A100-SXM4-80GB", fp32), 19.5);
  EXPECT_EQ(dense_peak_tflops("NVIDIA A100 80GB PCIe", bf16), 312);
  // Unknown: no MFU rather than a wrong one.
  EXPECT_EQ(dense_peak_tflops("", fp32), 0);
  EXPECT_EQ(dense_peak_tflops("NVIDIA GeForce RTX 4090", bf16), 0);
}

// Every logged step's model_flops_per_s_per_rank is its tokens/s (global) over the tokens of a
// step, times one rank's counted FLOPs of a step: grad_accum micro-steps of batch_size sequences.
TEST(ModelFlops, MetricsHoldTheCountedFlopsOfARankAtTheMeasuredPace) {
  const std::string out = test::fresh_dir("run");
  const Config cfg = test::short_run_config(
      out, 5, 2, {"train.log_every=1", "train.grad_accum=2", "train.batch_size=3"});
  test::train_quietly(cfg);
  const double rank_step_flops = 2 * training_step_flops(cfg, 3, cfg.train.seq_len).total();
  const double tokens_per_step = 2.0 * 3 * static_cast<double>(cfg.train.seq_len);
  std::ifstream in(out + "/metrics.jsonl");
  std::string line;
  int timed_lines = 0;
  while (std::getline(in, line)) {
    const YAML::Node m = YAML::Load(line);  // JSON is YAML
    if (m["split"]) continue;
    ASSERT_TRUE(m["model_flops_per_s_per_rank"]) << line;
    EXPECT_FALSE(m["mfu"]) << "a CPU has no peak rate to divide by: " << line;
    const double tokens_per_s = m["tokens_per_s"].as<double>();
    const double expected = tokens_per_s / tokens_per_step * rank_step_flops;
    EXPECT_NEAR(m["model_flops_per_s_per_rank"].as<double>(), expected, 1e-6 * expected) << line;
    timed_lines += tokens_per_s > 0;
  }
  EXPECT_EQ(timed_lines, 4);  // the first step is warm-up, untimed
}

}  // namespace
}  // namespace rf
