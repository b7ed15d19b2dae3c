// The end-of-run report: its evaluation is bounded relative to the run (plan_report), it says
// what it evaluates, and train.report: false (or TrainOptions::report = false) skips it.
#include <gtest/gtest.h>

#include <sstream>

#include "tests/run_fixture.h"
#include "trainer/learning_report.h"
#include "trainer/train_loop.h"

namespace rf {
namespace {

constexpr int64_t kHashCounts = 4;  // the duplication report's 1, 2, 4 and 8 hashes

TEST(ReportPlan, TheDefaultExperimentKeepsItsSixtyFourSequences) {
  const int64_t trained = int64_t{3000} * 8 * 256;  // configs/default.yaml
  const ReportPlan plan = plan_report(64, kHashCounts, 256, trained);
  EXPECT_EQ(plan.sequences, 64);
  EXPECT_EQ(plan.tokens(), 64 * kHashCounts * 256);
}

TEST(ReportPlan, AShortRunOfLongSequencesEvaluatesFewerSequences) {
  // 3 steps of 8 sequences of 32K tokens: a quarter of that is 1.5 sequences x 4 hash counts.
  EXPECT_EQ(plan_report(64, kHashCounts, 32768, int64_t{3} * 8 * 32768).sequences, 1);
  // At 4K tokens the floor of 2^16 tokens allows 4 sequences per hash count.
  EXPECT_EQ(plan_report(64, kHashCounts, 4096, int64_t{3} * 8 * 4096).sequences, 4);
  // A long run at 32K: the ceiling of 2^20 tokens is 8 sequences per hash count.
  EXPECT_EQ(plan_report(64, kHashCounts, 32768, int64_t{100000} * 8 * 32768).sequences, 8);
}

TEST(ReportPlan, StaysWithinTheBudgetUnlessOneSequenceIsLarger) {
  for (int64_t seq_len = 16; seq_len <= (int64_t{1} << 22); seq_len *= 4) {
    for (int64_t trained : {int64_t{100}, int64_t{1} << 20, int64_t{1} << 26, int64_t{1} << 40}) {
      for (int64_t passes : {int64_t{1}, kHashCounts}) {
        const ReportPlan plan = plan_report(64, passes, seq_len, trained);
        const int64_t budget = std::clamp(trained / 4, kReportMinTokens, kReportMaxTokens);
        EXPECT_GE(plan.sequences, 1);
        EXPECT_LE(plan.sequences, 64);
        if (plan.sequences > 1) {
          EXPECT_LE(plan.tokens(), budget) << seq_len << " " << trained;
        }
        if (plan.sequences < 64) {
          EXPECT_GT((plan.sequences + 1) * passes * seq_len, budget) << "could evaluate more";
        }
      }
    }
  }
  EXPECT_EQ(plan_report(10, 1, 32, int64_t{1} << 40).sequences, 10);  // never more than wanted
}

// A 3-step tiny run (duplication task, LSH and local layers) with TrainOptions::report.
TrainSummary tiny_run_with_report(const std::string& report_key) {
  JobComms comms = single_process_comms();
  TrainOptions options;
  options.report = true;
  return run_training(
      test::short_run_config(test::fresh_dir("run"), 3, 1, {"train.report=" + report_key}), options,
      comms);
}

TEST(Report, SaysWhatItEvaluatesThenWhatTheModelLearned) {
  const TrainSummary s = tiny_run_with_report("true");
  ASSERT_TRUE(s.report);
  std::ostringstream out;
  s.report(out);
  EXPECT_NE(out.str().find("report: evaluating 64 sequences x 4 hash counts (8192 tokens)..."),
            std::string::npos)
      << out.str();
  EXPECT_NE(out.str().find("What the model learned"), std::string::npos) << out.str();
  EXPECT_NE(out.str().find("copy accuracy"), std::string::npos) << out.str();
}

TEST(Report, TrainReportFalseSkipsIt) {
  EXPECT_FALSE(tiny_run_with_report("false").report);
}

}  // namespace
}  // namespace rf
