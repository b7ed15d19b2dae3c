// Where rank 0 logs a run's metrics: <out_dir>/metrics.jsonl (one JSON object per logged step or
// evaluation) and, with train.tensorboard, TensorBoard event files under <out_dir>/tb/ holding
// the same values as scalars tagged "<split>/<name>" ("train/loss", "val_copy/accuracy").
#pragma once

#include <string>
#include <vector>

#include "trainer/metrics.h"
#include "trainer/tensorboard_events.h"

namespace rf {

// The TensorBoard folder of a run directory.
std::string tensorboard_dir(const std::string& out_dir);

class RunMetrics {
 public:
  RunMetrics() = default;  // writes nothing (ranks other than 0)
  // metrics.jsonl is appended to when `append` (any --resume: a run that starts over keeps the
  // lines of the attempts before it), else truncated. Each start opens a new event file whose
  // first event tells TensorBoard to drop what older files logged from this run's first step on
  // (resumed_step < 0: a start from step 0; the steps after a checkpoint are logged again).
  RunMetrics(const std::string& out_dir, bool tensorboard, int64_t resumed_step, bool append);

  // A training log line: JSON {"step", metrics...}; TensorBoard "train/<name>".
  void log_training(int64_t step, const std::vector<Metric>& metrics);
  // An evaluation: JSON {"step", "split", metrics...}; TensorBoard "<split>/<name>".
  void log_evaluation(int64_t step, const std::string& split, const std::vector<Metric>& metrics);

  const std::string& tensorboard_file() const { return tensorboard_.path(); }

 private:
  void log_tensorboard(int64_t step, const std::string& split, const std::vector<Metric>& metrics);

  MetricsLog jsonl_;
  TensorBoardWriter tensorboard_;
};

}  // namespace rf
