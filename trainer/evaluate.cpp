#include "trainer/evaluate.h"

#include <algorithm>
#include <cmath>

#include "trainer/batches.h"

namespace rf {

EvalResult evaluate(ReformerModel& model, const WindowSource& source, int64_t windows,
                    int64_t batch, PositionRange positions,
                    const std::function<void(int64_t, int64_t)>& on_batch, Communicator* comm,
                    const std::vector<int32_t>& token_bytes) {
  const int64_t T = source.window_length() - 1;
  const int64_t begin = std::max<int64_t>(0, positions.begin);
  const int64_t end = positions.end < 0 ? T : std::min(positions.end, T);
  double loss = 0.0;
  int64_t correct = 0, tokens = 0, text_bytes = 0;
  const int64_t ranks = comm ? comm->size() : 1, rank = comm ? comm->rank() : 0;
  for (int64_t first = rank * batch; first < windows; first += ranks * batch) {
    const int64_t n = std::min(batch, windows - first);
    const TokenBatch b = read_windows(source, first, n);
    StepContext step;
    step.seed = static_cast<uint64_t>(model.config().train.seed);
    step.step = kEvalStep;
    step.example_base = static_cast<uint32_t>(first);
    step.batch = n;
    step.seq_len = T;
    step.training = false;
    const BatchStats s = model.forward(b, step);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t t = begin; t < end; ++t) {
        loss += s.row_loss[i * T + t];
        const int32_t target = b.targets[i * T + t];
        correct += s.row_prediction[i * T + t] == target;
        ++tokens;
        if (target >= 0 && static_cast<size_t>(target) < token_bytes.size())
          text_bytes += token_bytes[static_cast<size_t>(target)];
      }
    if (on_batch) on_batch(first + n, windows);
  }
  if (ranks > 1) {
    double totals[4] = {loss, static_cast<double>(correct), static_cast<double>(tokens),
                        static_cast<double>(text_bytes)};
    comm->all_reduce_sum(totals, 4, DType::kFloat64);
    loss = totals[0];
    correct = static_cast<int64_t>(totals[1]);
    tokens = static_cast<int64_t>(totals[2]);
    text_bytes = static_cast<int64_t>(totals[3]);
  }
  EvalResult r;
  r.tokens = tokens;
  if (tokens > 0) {
    r.loss = loss / static_cast<double>(tokens);
    r.bits_per_token = r.loss / std::log(2.0);
    r.accuracy = static_cast<double>(correct) / static_cast<double>(tokens);
  }
  r.text_bytes = text_bytes;
  if (text_bytes > 0) r.bits_per_byte = loss / std::log(2.0) / static_cast<double>(text_bytes);
  return r;
}

namespace {

// Segment after segment of `source` (windows [0, windows)), each scored by
// score(w, segment) -> per-position losses and predictions of the segment's S targets.
EvalResult score_segments(const WindowSource& source, int64_t windows,
                          const std::vector<int32_t>& token_bytes,
                          const std::function<void(int64_t, int64_t)>& on_window,
                          const std::function<BatchStats(int64_t, const TokenBatch&)>& score) {
  const int64_t T = source.window_length() - 1;
  double loss = 0.0;
  int64_t correct = 0, tokens = 0, text_bytes = 0;
  for (int64_t w = 0; w < windows; ++w) {
    const TokenBatch b = read_windows(source, w, 1);
    const BatchStats s = score(w, b);
    for (int64_t t = 0; t < T; ++t) {
      loss += s.row_loss[t];
      correct += s.row_prediction[t] == b.targets[t];
      const int32_t target = b.targets[t];
      if (target >= 0 && static_cast<size_t>(target) < token_bytes.size())
        text_bytes += token_bytes[static_cast<size_t>(target)];
    }
    tokens += T;
    if (on_window) on_window(w + 1, windows);
  }
  EvalResult r;
  r.tokens = tokens;
  r.text_bytes = text_bytes;
  if (tokens > 0) {
    r.loss = loss / static_cast<double>(tokens);
    r.bits_per_token = r.loss / std::log(2.0);
    r.accuracy = static_cast<double>(correct) / static_cast<double>(tokens);
  }
  if (text_bytes > 0) r.bits_per_byte = loss / std::log(2.0) / static_cast<double>(text_bytes);
  return r;
}

}  // namespace

StepContext memory_segment_step(const Config& cfg, int64_t segment, int64_t seq_len) {
  StepContext step;
  step.seed = static_cast<uint64_t>(cfg.train.seed);
  step.step = kEvalStep;
  step.example_base = static_cast<uint32_t>(segment);
  step.batch = 1;
  step.seq_len = seq_len;
  step.training = false;
  return step;
}

EvalResult evaluate_with_memory(ReformerModel& model, const WindowSource& source, int64_t windows,
                                int64_t memory_len, const std::vector<int32_t>& token_bytes,
                                const std::function<void(int64_t, int64_t)>& on_window) {
  if (!model.supports_cached_generation()) {
    // LSH layers have no exact cache (approximate_lsh's windows are not what a segment's hash
    // sort gives, with or without the memory): the forward training runs, from the memory's layer
    // inputs (their keys and values projected again for every segment).
    SegmentMemory memory(memory_len);
    return score_segments(
        source, windows, token_bytes, on_window, [&](int64_t w, const TokenBatch& segment) {
          return model.forward_with_memory(
              segment, memory_segment_step(model.config(), w, segment.seq_len), memory);
        });
  }
  // Through the key/value cache: each segment projects and attends with its own queries only,
  // the memory's keys and values kept from when their positions were new (what
  // forward_with_memory computes from the memory's layer inputs, at the segment's cost).
  const int64_t segment = source.window_length() - 1;
  GenerationCache cache = model.make_memory_cache(memory_len, segment, windows * segment);
  return score_segments(
      source, windows, token_bytes, on_window,
      [&](int64_t, const TokenBatch& segment) { return model.forward_cached(segment, cache); });
}

EvalResult evaluate_as_trained(ReformerModel& model, const WindowSource& source, int64_t windows,
                               const PositionRange& positions, Communicator* comm) {
  const Config& cfg = model.config();
  if (cfg.model.memory_len > 0)
    return evaluate_with_memory(model, source, windows, cfg.model.memory_len);
  return evaluate(model, source, windows, cfg.train.batch_size, positions, {}, comm);
}

EvalResult evaluate_sliding(ReformerModel& model, const WindowSource& source, int64_t windows,
                            int64_t context_len, const std::vector<int32_t>& token_bytes,
                            const std::function<void(int64_t, int64_t)>& on_window) {
  const int64_t S = source.window_length() - 1;
  return score_segments(
      source, windows, token_bytes, on_window, [&](int64_t w, const TokenBatch& segment) {
        // The up to context_len tokens before the segment (windows are consecutive segments of
        // the stream: window i's inputs are its stretch of S tokens), then the segment.
        const int64_t before = std::min(context_len, w * S);
        TokenBatch window;
        window.batch = 1;
        window.seq_len = before + S;
        if (before > 0) {
          const int64_t first = w - (before + S - 1) / S;  // the window holding the first token
          const TokenBatch past = read_windows(source, first, w - first);
          window.inputs.assign(past.inputs.end() - before, past.inputs.end());
          window.targets.assign(past.targets.end() - before, past.targets.end());
        }
        window.inputs.insert(window.inputs.end(), segment.inputs.begin(), segment.inputs.end());
        window.targets.insert(window.targets.end(), segment.targets.begin(), segment.targets.end());
        StepContext step = memory_segment_step(model.config(), w, window.seq_len);
        // model.same_length: every query sees context_len keys at most, as with a memory of
        // context_len (the limit was left out, and --sliding scored without it).
        if (model.config().model.same_length && context_len > 0)
          step.max_distance = context_len - 1;
        BatchStats all = model.forward(window, step);
        BatchStats s;  // the segment's positions only
        s.row_loss.assign(all.row_loss.end() - S, all.row_loss.end());
        s.row_prediction.assign(all.row_prediction.end() - S, all.row_prediction.end());
        return s;
      });
}

}  // namespace rf
