#include "trainer/memory_eval.h"

#include <algorithm>
#include <sstream>

#include "trainer/batches.h"
#include "trainer/checkpoint.h"
#include "trainer/evaluate.h"
#include "trainer/job.h"
#include "trainer/metrics.h"
#include "trainer/progress.h"

namespace rf {

std::string memory_eval_problem(const Config& cfg, const MemoryEvalOptions& o) {
  std::ostringstream why;
  if (cfg.model.position != PositionMode::kRelative && cfg.model.position != PositionMode::kNone)
    why << "--memory-len needs model.position relative (or none); this model's positions are "
        << position_name(cfg.model.position) << ", which restart at every segment";
  if (cfg.no_layer_sees_memory() && why.str().empty())
    why << "--memory-len needs a layer that sees the memory; every layer of this model is lsh "
           "and lsh.sees_memory is false";
  for (int64_t i = 0; i < cfg.model.n_layers && why.str().empty(); ++i) {
    const AttentionKind kind = cfg.attention_of_layer(i);
    // (--sliding runs the context through every layer with the segment, where an LSH layer's
    // chunks then cut the context's positions differently from when they were a segment of their
    // own: it would not score what memory evaluation scores, even for LSH layers that see the
    // memory.)
    if (kind == AttentionKind::kLsh && o.sliding)
      why << "--sliding needs dense or local attention; layer " << i
          << " is lsh (score it with --memory-len alone)";
    if (kind == AttentionKind::kLocal && o.segment % cfg.lsh.local_chunk != 0)
      why << "--segment " << o.segment
          << " must be a multiple of lsh.local_chunk = " << cfg.lsh.local_chunk
          << " (local layers)";
  }
  for (int64_t m : o.memory_lens)
    if (m < 0 && why.str().empty()) why << "--memory-len " << m << " is negative";
  for (int64_t m : o.memory_lens)
    if (m % cfg.memory_unit() != 0 && why.str().empty())
      why << "--memory-len " << m << " must be " << cfg.memory_unit_rule();
  if (o.segment < 1 && why.str().empty()) why << "--segment must be at least 1";
  return why.str();
}

void evaluate_memory_table(const std::string& checkpoint, const Config& cfg,
                           const MemoryEvalOptions& o, std::ostream& out) {
  if (const std::string problem = memory_eval_problem(cfg, o); !problem.empty()) fail(problem);
  auto ex = make_rank_executor(cfg.runtime);
  ReformerModel model(cfg, *ex);
  const TrainingState state = load_checkpoint(checkpoint, model, nullptr);
  const DataSources data = open_data(cfg, cfg.data.verify_checksums);
  check_checkpoint_tokenizer(checkpoint, state.tokenizer_model, data, cfg);
  const std::vector<int32_t> token_bytes = text_bytes_per_token(data);  // (bits per byte)
  const int64_t available = data.val->num_windows();
  const int64_t wanted = o.windows > 0 ? o.windows : cfg.train.eval_batches * cfg.train.batch_size;
  const int64_t windows = std::min(available, wanted);
  if (windows < 1) fail("the validation data holds no segment of ", o.segment, " tokens");
  const bool lsh = cfg.any_layer_uses(AttentionKind::kLsh);  // (n_hashes means nothing without)
  if (!o.json)
    out << checkpoint << " (step " << state.step << ")"
        << (lsh ? ", n_hashes " + std::to_string(cfg.lsh.n_hashes) : std::string()) << ": "
        << windows << " consecutive segments of " << o.segment << " tokens"
        << (o.sliding ? ", each recomputed with the `memory` tokens before it (sliding window)"
                      : "")
        << "\n"
        << "  memory | bits/token |" << (token_bytes.empty() ? "" : " bits/byte |")
        << " accuracy | seconds\n";
  for (int64_t memory : o.memory_lens) {
    ProgressClock clock(0, windows);
    const auto progress = [&](int64_t done, int64_t total) {
      if (o.json) return;  // (as eval --json without a memory: the JSON lines alone)
      if (done % std::max<int64_t>(1, total / 20) != 0 && done != total) return;
      print_progress_line(
          std::string("eval with ") + (o.sliding ? "a sliding window of " : "memory ") +
              std::to_string(memory) + ":",
          done, total, "segments", clock.elapsed_seconds(), clock.average_eta_seconds(done, total));
    };
    const EvalResult r =
        o.sliding ? evaluate_sliding(model, *data.val, windows, memory, token_bytes, progress)
                  : evaluate_with_memory(model, *data.val, windows, memory, token_bytes, progress);
    if (!o.json) clear_progress_line();
    const double seconds = clock.elapsed_seconds();
    if (o.json) {
      JsonLine line;
      // (The keys of eval --json without a memory, and the memory's own.)
      line.add("checkpoint", checkpoint)
          .add("step", state.step)
          .add("memory_len", memory)
          .add_flag("sliding", o.sliding)
          .add("segment", o.segment)
          .add("loss", r.loss)
          .add("bits_per_token", r.bits_per_token)
          .add("accuracy", r.accuracy)
          .add("tokens", r.tokens)
          .add("seconds", seconds);
      if (r.text_bytes > 0)
        line.add("bits_per_byte", r.bits_per_byte).add("text_bytes", r.text_bytes);
      if (lsh) line.add("n_hashes", cfg.lsh.n_hashes);
      out << line.str() << std::endl;
      continue;
    }
    char row[160];
    if (token_bytes.empty())
      std::snprintf(row, sizeof row, "  %6lld | %10.4f | %8.4f | %7.2f\n",
                    static_cast<long long>(memory), r.bits_per_token, r.accuracy, seconds);
    else
      std::snprintf(row, sizeof row, "  %6lld | %10.4f | %9.4f | %8.4f | %7.2f\n",
                    static_cast<long long>(memory), r.bits_per_token, r.bits_per_byte, r.accuracy,
                    seconds);
    out << row << std::flush;
  }
}

}  // namespace rf
