#include "trainer/generate.h"

#include <algorithm>
#include <chrono>
#include <optional>
#include <string>

#include "base/error.h"
#include "base/philox.h"
#include "trainer/evaluate.h"
#include "trainer/sampling.h"
#include "trainer/segment_memory.h"

namespace rf {
namespace {

// One sequence of `length` positions: the n tokens from `first`, then zeros (positions after the
// last token, which causal masks keep from it).
TokenBatch padded_sequence(std::vector<int32_t>::const_iterator first, size_t n, int64_t length) {
  TokenBatch b;
  b.batch = 1;
  b.seq_len = length;
  b.inputs.assign(static_cast<size_t>(length), 0);
  b.targets.assign(static_cast<size_t>(length), 0);
  std::copy_n(first, n, b.inputs.begin());
  return b;
}

// The cached context: tokens[start ..] at positions 0.., the first cache.len of them in the cache.
struct CachedContext {
  GenerationCache cache;
  size_t start = 0;
  int64_t restarts = 0;

  // The logits for the token after `tokens`, running only the positions the cache lacks.
  std::vector<float> logits(ReformerModel& model, const std::vector<int32_t>& tokens,
                            int64_t* positions) {
    const int64_t T = cache.capacity;
    if (static_cast<int64_t>(tokens.size() - start) > T) {
      // Full: restart from the last half of the context (the prompt's first pass: its last T).
      const int64_t keep = cache.len == 0 ? T : std::max<int64_t>(1, T / 2);
      if (cache.len > 0) ++restarts;
      start = tokens.size() - static_cast<size_t>(keep);
      cache.clear();
    }
    const std::vector<int32_t> fresh(tokens.begin() + static_cast<int64_t>(start) + cache.len,
                                     tokens.end());
    *positions += static_cast<int64_t>(fresh.size());
    return model.cached_next_token_logits(fresh, cache);
  }
};

}  // namespace

std::string memory_generation_problem(const Config& cfg, int64_t memory_len) {
  if (cfg.model.position != PositionMode::kRelative && cfg.model.position != PositionMode::kNone)
    return std::string(
               "--memory-len needs model.position relative (or none); this model's "
               "positions are ") +
           position_name(cfg.model.position) + ", which restart at every segment";
  if (cfg.no_layer_sees_memory())
    return "--memory-len needs a layer that sees the memory; every layer of this model is lsh "
           "and lsh.sees_memory is false";
  if (memory_len % cfg.memory_unit() != 0)
    return "--memory-len " + std::to_string(memory_len) + " must be " + cfg.memory_unit_rule();
  return "";
}

namespace {

// Generation with a memory and no key/value cache (SamplingOptions::memory_len): the memory holds
// the layer inputs of the complete segments' last positions, as in evaluation; each token runs its
// segment so far with a copy of it, and the token that completes the segment runs with the memory
// itself, which advances.
class MemoryReRun {
 public:
  MemoryReRun(int64_t memory_len, int64_t segment)
      : memory_(memory_len), scratch_(memory_len), segment_(segment) {}

  // The logits for the token after `tokens` (the text so far, whose earlier tokens this has seen).
  std::vector<float> logits(ReformerModel& model, const std::vector<int32_t>& tokens,
                            int64_t* positions) {
    const size_t S = static_cast<size_t>(segment_);
    while (tokens.size() - start_ > S) {  // (the prompt's complete segments before its last)
      model.forward_with_memory(segment_batch(tokens), segment_step(model), memory_);
      complete_segment(positions);
    }
    const int64_t n = static_cast<int64_t>(tokens.size() - start_);
    if (n == segment_) {  // (evaluation's pass over this segment: the memory advances)
      std::vector<float> l =
          model.next_token_logits(segment_batch(tokens), segment_step(model), n - 1, &memory_);
      complete_segment(positions);
      return l;
    }
    copy_memory(model.executor());
    *positions += segment_;
    return model.next_token_logits(segment_batch(tokens), segment_step(model), n - 1, &scratch_);
  }

 private:
  // The current segment's tokens (at most S of them), padded with zeros to S.
  TokenBatch segment_batch(const std::vector<int32_t>& tokens) const {
    const size_t n = std::min(tokens.size() - start_, static_cast<size_t>(segment_));
    return padded_sequence(tokens.begin() + static_cast<std::ptrdiff_t>(start_), n, segment_);
  }
  // What evaluate_with_memory runs the current segment with (its rotations, among others).
  StepContext segment_step(const ReformerModel& model) const {
    return memory_segment_step(model.config(), segments_, segment_);
  }
  void complete_segment(int64_t* positions) {
    start_ += static_cast<size_t>(segment_);
    ++segments_;
    *positions += segment_;
  }
  // scratch_ = memory_ (a pass with scratch_ overwrites it with the padded segment's positions).
  void copy_memory(Executor& ex) {
    scratch_.len = memory_.len;
    SegmentMemory::copy_layers(ex, memory_.layers, scratch_.layers);
  }

  SegmentMemory memory_, scratch_;
  int64_t segment_;
  size_t start_ = 0;      // the current segment's first token
  int64_t segments_ = 0;  // segments complete: the current one is evaluation's window `segments_`
};

}  // namespace

std::vector<float> window_logits(ReformerModel& model, const std::vector<int32_t>& tokens,
                                 int64_t T) {
  const int64_t len = std::min<int64_t>(T, static_cast<int64_t>(tokens.size()));
  const TokenBatch window = padded_sequence(tokens.end() - len, static_cast<size_t>(len), T);
  StepContext step;
  step.seed = static_cast<uint64_t>(model.config().train.seed);
  step.step = kEvalStep;
  step.seq_len = T;
  step.training = false;
  return model.next_token_logits(window, step, len - 1);
}

std::vector<int32_t> generate(ReformerModel& model, std::vector<int32_t> tokens,
                              const SamplingOptions& o, GenerationStats* stats) {
  const int64_t T = o.context > 0 ? o.context : model.config().train.seq_len;
  if (tokens.empty()) tokens.push_back(0);
  const RngStream rng = make_rng_stream(o.seed, RngPurpose::kSampling, 0, 0, 0, 0);
  GenerationStats local;
  GenerationStats& st = stats ? *stats : local;
  st = GenerationStats{};
  if (o.memory_len > 0) {
    if (const std::string problem = memory_generation_problem(model.config(), o.memory_len);
        !problem.empty())
      fail(problem);
    if (o.lsh_cache && !model.supports_cached_generation())
      fail("--lsh-cache caches LSH layers without a memory, and --memory-len re-runs each ",
           "segment with one: take one of them");
    st.memory_len = o.memory_len;
  }
  st.cached = o.cache && model.supports_cached_generation(o.lsh_cache && o.memory_len == 0);
  const auto started = std::chrono::steady_clock::now();
  CachedContext context;
  std::optional<MemoryReRun> rerun;
  if (o.memory_len > 0 && !st.cached) {
    rerun.emplace(o.memory_len, model.config().train.seq_len);
  } else if (o.memory_len > 0) {  // (segments of train.seq_len arriving in pieces; never full)
    const int64_t segment = model.config().train.seq_len;
    context.cache = model.make_memory_cache(o.memory_len, segment,
                                            static_cast<int64_t>(tokens.size()) + o.tokens);
    context.cache.segment = segment;
  } else if (st.cached) {
    context.cache = model.make_generation_cache(T, o.lsh_cache);
  }
  for (int64_t n = 0; n < o.tokens; ++n) {
    std::vector<float> logits;
    if (rerun) {
      logits = rerun->logits(model, tokens, &st.model_positions);
    } else if (o.memory_len > 0) {
      // The prompt (the first time), then the last token, in pieces that end at the segments'
      // ends (GenerationCache::make_room then drops all but the memory).
      for (size_t from = n == 0 ? 0 : tokens.size() - 1; from < tokens.size();) {
        const size_t to =
            std::min(tokens.size(), from + static_cast<size_t>(context.cache.segment_room()));
        logits = model.cached_next_token_logits(
            std::vector<int32_t>(tokens.begin() + static_cast<std::ptrdiff_t>(from),
                                 tokens.begin() + static_cast<std::ptrdiff_t>(to)),
            context.cache);
        st.model_positions += static_cast<int64_t>(to - from);
        from = to;
      }
    } else if (st.cached) {
      logits = context.logits(model, tokens, &st.model_positions);
    } else {
      logits = window_logits(model, tokens, T);
      st.model_positions += T;
    }
    if (o.on_logits) o.on_logits(n, logits);
    if (o.vocabulary > 0 && static_cast<int64_t>(logits.size()) > o.vocabulary)
      logits.resize(static_cast<size_t>(o.vocabulary));
    tokens.push_back(sample_token(logits, o.rule(), rng, n));
    if (n == 0)
      st.prompt_seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    if (o.on_token) o.on_token(n + 1, o.tokens);
  }
  st.restarts = context.restarts;
  st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return tokens;
}

}  // namespace rf
