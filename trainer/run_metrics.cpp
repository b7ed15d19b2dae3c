#include "trainer/run_metrics.h"

#include <filesystem>

namespace fs = std::filesystem;

namespace rf {

std::string tensorboard_dir(const std::string& out_dir) {
  return (fs::path(out_dir) / "tb").string();
}

RunMetrics::RunMetrics(const std::string& out_dir, bool tensorboard, int64_t resumed_step,
                       bool append)
    : jsonl_((fs::path(out_dir) / "metrics.jsonl").string(), append) {
  if (!tensorboard) return;
  tensorboard_ = TensorBoardWriter::create_in(tensorboard_dir(out_dir));
  tensorboard_.write_session_start(resumed_step < 0 ? 0 : resumed_step + 1);
}

void RunMetrics::log_training(int64_t step, const std::vector<Metric>& metrics) {
  JsonLine line;
  line.add("step", step);
  for (const Metric& m : metrics) line.add(m);
  jsonl_.write(line);
  log_tensorboard(step, "train", metrics);
}

void RunMetrics::log_evaluation(int64_t step, const std::string& split,
                                const std::vector<Metric>& metrics) {
  JsonLine line;
  line.add("step", step).add("split", split);
  for (const Metric& m : metrics) line.add(m);
  jsonl_.write(line);
  log_tensorboard(step, split, metrics);
}

void RunMetrics::log_tensorboard(int64_t step, const std::string& split,
                                 const std::vector<Metric>& metrics) {
  if (!tensorboard_.is_open()) return;
  std::vector<TaggedScalar> values;
  values.reserve(metrics.size());
  for (const Metric& m : metrics)
    values.push_back({split + "/" + m.name, static_cast<float>(m.value)});
  tensorboard_.write_scalars(step, values);
}

}  // namespace rf
