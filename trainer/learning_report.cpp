#include "trainer/learning_report.h"

#include <algorithm>
#include <cstdio>
#include <numeric>

#include "base/error.h"
#include "data/byte_corpus.h"
#include "data/synthetic_duplication.h"
#include "trainer/generate.h"

namespace rf {
namespace {

std::string percent(double fraction) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "%.1f%%", 100.0 * fraction);
  return buf;
}

// At most `wanted` windows, and no more than the source holds (when it knows).
int64_t available_windows(const WindowSource& val, int64_t wanted) {
  return val.num_windows() > 0 ? std::min(wanted, val.num_windows()) : wanted;
}

void report_duplication(ReformerModel& model, const WindowSource& val, int64_t trained_tokens,
                        std::ostream& out) {
  const Config& cfg = model.config();
  const int64_t T = cfg.train.seq_len;
  std::vector<int64_t> hashes = {cfg.lsh.n_hashes};
  if (cfg.any_layer_uses(AttentionKind::kLsh)) hashes = {1, 2, 4, 8};
  const ReportPlan plan =
      plan_report(available_windows(val, std::max<int64_t>(64, cfg.train.batch_size)),
                  static_cast<int64_t>(hashes.size()), T, trained_tokens);
  out << "report: evaluating " << plan.sequences << " sequences x " << plan.passes << " hash count"
      << (plan.passes > 1 ? "s" : "") << " (" << plan.tokens() << " tokens)..." << std::endl;
  const int64_t windows = plan.sequences;
  out << "What the model learned (duplication task, second copy of w, " << windows
      << " validation sequences):\n";
  for (int64_t h : hashes) {
    const EvalResult r = duplication_copy_accuracy(model, val, windows, h);
    out << "  copy accuracy " << percent(r.accuracy);
    if (cfg.any_layer_uses(AttentionKind::kLsh))
      out << " with " << h << " evaluation hash" << (h > 1 ? "es" : "");
    out << " (" << r.tokens << " tokens, loss " << r.loss << " nats)\n";
  }
  // One example: the first symbols of w and what the model predicts for its copy.
  const TokenBatch b = read_windows(val, 0, 1);
  StepContext step;
  step.seed = static_cast<uint64_t>(cfg.train.seed);
  step.step = kEvalStep;
  step.seq_len = T;
  step.training = false;
  const BatchStats s = model.forward(b, step);
  const int64_t first = SyntheticDuplication::copy_begin(T);
  const int64_t shown = std::min<int64_t>(24, T - first);
  out << "  example w:       ";
  for (int64_t i = 0; i < shown; ++i) out << b.targets[first + i] << ' ';
  out << (T - first > shown ? "...\n" : "\n") << "  model's copy:    ";
  for (int64_t i = 0; i < shown; ++i) {
    const int32_t p = s.row_prediction[first + i];
    if (p == b.targets[first + i])
      out << p << ' ';
    else
      out << '[' << p << "] ";
  }
  out << (T - first > shown ? "...  ([x] = wrong)\n" : " ([x] = wrong)\n");
}

// A context of at most ~2048 tokens for sampling (each sampled token re-runs the model on it),
// a multiple of every chunk length the layers use.
int64_t short_context(const Config& cfg) {
  int64_t unit = 1;
  for (int64_t i = 0; i < cfg.model.n_layers; ++i) {
    const AttentionKind k = cfg.attention_of_layer(i);
    const int64_t chunk = k == AttentionKind::kLsh     ? cfg.lsh.bucket_size
                          : k == AttentionKind::kLocal ? cfg.lsh.local_chunk
                                                       : 1;
    unit = std::lcm(unit, chunk);
  }
  const int64_t context = std::max<int64_t>(unit, 2048 / unit * unit);
  return std::min(context, cfg.train.seq_len);
}

std::string printable(const std::vector<int32_t>& tokens, size_t from) {
  std::string s;
  for (size_t i = from; i < tokens.size(); ++i) {
    const int c = tokens[i];
    if (c == '\n')
      s += "\n    ";
    else if (c >= 32 && c < 127)
      s += static_cast<char>(c);
    else
      s += '?';
  }
  return s;
}

// Validation loss, bits and accuracy over the planned windows, after saying what it evaluates.
EvalResult evaluate_planned(ReformerModel& model, const WindowSource& val, int64_t trained_tokens,
                            const std::string& then, std::ostream& out) {
  const Config& cfg = model.config();
  const ReportPlan plan =
      plan_report(eval_window_count(val, cfg.train.eval_batches, cfg.train.batch_size), 1,
                  cfg.train.seq_len, trained_tokens);
  const int64_t memory = cfg.model.memory_len;
  out << "report: evaluating " << plan.sequences << " sequences (" << plan.tokens() << " tokens)"
      << (memory > 0 ? " in order, each seeing a memory of " + std::to_string(memory) : "") << then
      << "..." << std::endl;
  return evaluate_as_trained(model, val, plan.sequences, {});
}

void report_text(ReformerModel& model, const WindowSource& val, int64_t trained_tokens,
                 std::ostream& out) {
  const Config& cfg = model.config();
  constexpr int64_t kSampledBytes = 160;
  const EvalResult r =
      evaluate_planned(model, val, trained_tokens,
                       ", then sampling " + std::to_string(kSampledBytes) + " bytes", out);
  out << "What the model learned (byte-level language model):\n  validation: " << r.bits_per_token
      << " bits per byte, next-byte accuracy " << percent(r.accuracy) << " (" << r.tokens
      << " bytes)\n";
  std::vector<int32_t> prompt(val.window_length());
  val.read(0, prompt.data());
  prompt.resize(std::min<size_t>(prompt.size(), 48));
  SamplingOptions o;
  o.tokens = kSampledBytes;
  o.context = short_context(cfg);
  // A model trained with memory samples with it where it can (relative or no positions; LSH
  // layers re-run each token's segment so far).
  if (cfg.model.memory_len > 0 && memory_generation_problem(cfg, cfg.model.memory_len).empty())
    o.memory_len = cfg.model.memory_len;
  o.temperature = 0.8;
  o.seed = static_cast<uint64_t>(cfg.train.seed);
  const std::vector<int32_t> sample = generate(model, prompt, o);
  out << "  prompt:  " << printable(prompt, 0)
      << "\n  sample:  " << printable(sample, prompt.size()) << "\n";
}

}  // namespace

EvalResult duplication_copy_accuracy(ReformerModel& model, const WindowSource& val, int64_t windows,
                                     int64_t n_hashes) {
  const Config& cfg = model.config();
  const PositionRange copy{SyntheticDuplication::copy_begin(cfg.train.seq_len), -1};
  model.set_n_hashes(n_hashes);
  const EvalResult r = evaluate(model, val, windows, cfg.train.batch_size, copy);
  model.set_n_hashes(cfg.lsh.n_hashes);
  return r;
}

ReportPlan plan_report(int64_t wanted, int64_t passes, int64_t seq_len, int64_t trained_tokens) {
  RF_CHECK(wanted >= 1 && passes >= 1 && seq_len >= 1);
  const int64_t budget =
      std::clamp(trained_tokens / 4, kReportMinTokens, kReportMaxTokens);  // all passes together
  ReportPlan plan;
  plan.passes = passes;
  plan.seq_len = seq_len;
  plan.sequences = std::clamp<int64_t>(budget / (passes * seq_len), 1, wanted);
  return plan;
}

void report_what_was_learned(ReformerModel& model, const DataSources& data, int64_t trained_tokens,
                             std::ostream& out) {
  if (data.task == DataTask::kDuplication) {
    report_duplication(model, *data.val, trained_tokens, out);
  } else if (data.task == DataTask::kByteText) {
    report_text(model, *data.val, trained_tokens, out);
  } else {
    const EvalResult r = evaluate_planned(model, *data.val, trained_tokens, "", out);
    out << "What the model learned (" << data.tokenizer << " tokens): validation loss " << r.loss
        << " nats, " << r.bits_per_token << " bits per token, next-token accuracy "
        << percent(r.accuracy) << " (" << r.tokens << " tokens)\n";
  }
}

}  // namespace rf
