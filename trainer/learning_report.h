// The end of a run says what the model learned, in the task's own terms: for the duplication task
// the copy accuracy on the second half for 1, 2, 4 and 8 evaluation hashes (the paper's Table 2
// row) and one example copy; for text the validation bits per byte and a sample continuation.
// Its evaluation is bounded (ReportPlan), so a short run of long sequences does not spend many
// times its training time on the report.
#pragma once

#include <cstdint>
#include <ostream>

#include "trainer/batches.h"
#include "trainer/evaluate.h"

namespace rf {

// Copy accuracy and loss on the second copy of the duplication task, with `n_hashes` hash rounds
// at evaluation time (the model's parameters do not depend on it).
EvalResult duplication_copy_accuracy(ReformerModel& model, const WindowSource& val, int64_t windows,
                                     int64_t n_hashes);

// What the report evaluates: `sequences` validation sequences of `seq_len` tokens in each of
// `passes` evaluations (one per evaluation hash count).
struct ReportPlan {
  int64_t sequences = 0;
  int64_t passes = 0;
  int64_t seq_len = 0;
  int64_t tokens() const { return sequences * passes * seq_len; }
};

// The bound on all passes together: a quarter of the tokens the run trained on (the report's
// forward passes then cost well under a tenth of the training), but never less than the default
// experiment's full report (64 sequences x 256 tokens x 4 hash counts) nor more than 2^20 tokens.
constexpr int64_t kReportMinTokens = int64_t{1} << 16;
constexpr int64_t kReportMaxTokens = int64_t{1} << 20;

// At most `wanted` sequences per pass within the bound above, and at least one.
ReportPlan plan_report(int64_t wanted, int64_t passes, int64_t seq_len, int64_t trained_tokens);

// Prints what the model learned after training on `trained_tokens` tokens, starting with a line
// saying what it evaluates.
void report_what_was_learned(ReformerModel& model, const DataSources& data, int64_t trained_tokens,
                             std::ostream& out);

}  // namespace rf
