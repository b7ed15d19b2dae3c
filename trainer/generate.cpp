#include "trainer/generate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <string>

#include "base/error.h"
#include "base/philox.h"

namespace rf {
namespace {

int32_t sample(std::vector<float> logits, const SamplingOptions& o, const RngStream& rng,
               int64_t index) {
  const int64_t V = static_cast<int64_t>(logits.size());
  std::vector<int32_t> order(V);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  if (o.temperature <= 0.0) return order[0];
  const int64_t k = o.top_k > 0 ? std::min(o.top_k, V) : V;
  std::vector<double> p(k);
  for (int64_t i = 0; i < k; ++i)
    p[i] = std::exp((logits[order[i]] - logits[order[0]]) / o.temperature);
  const double total = std::accumulate(p.begin(), p.end(), 0.0);
  double u = static_cast<double>(rng.uniform(static_cast<uint64_t>(index))) * total;
  for (int64_t i = 0; i < k; ++i) {
    if (u < p[i]) return order[i];
    u -= p[i];
  }
  return order[k - 1];
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
           (cfg.model.position == PositionMode::kAxial ? "axial" : "learned") +
           ", which restart at every segment";
  for (int64_t i = 0; i < cfg.model.n_layers; ++i)
    if (cfg.attention_of_layer(i) == AttentionKind::kLsh)
      return "--memory-len generates with dense and local layers; layer " + std::to_string(i) +
             " is lsh (it has no exact cache to keep a memory in)";
  if (memory_len % cfg.memory_unit() != 0)  // (no LSH layer here: local layers' chunks)
    return "--memory-len " + std::to_string(memory_len) + " must be " + cfg.memory_unit_rule();
  return "";
}

std::vector<float> window_logits(ReformerModel& model, const std::vector<int32_t>& tokens,
                                 int64_t T) {
  const int64_t len = std::min<int64_t>(T, static_cast<int64_t>(tokens.size()));
  TokenBatch window;
  window.batch = 1;
  window.seq_len = T;
  window.inputs.assign(T, 0);
  window.targets.assign(T, 0);
  std::copy(tokens.end() - len, tokens.end(), window.inputs.begin());
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
    st.memory_len = o.memory_len;
  }
  st.cached = o.memory_len > 0 || (o.cache && model.supports_cached_generation(o.lsh_cache));
  const auto started = std::chrono::steady_clock::now();
  CachedContext context;
  if (o.memory_len > 0) {  // (segments of train.seq_len arriving in pieces; never full)
    const int64_t segment = model.config().train.seq_len;
    context.cache = model.make_memory_cache(o.memory_len, segment,
                                            static_cast<int64_t>(tokens.size()) + o.tokens);
    context.cache.segment = segment;
  } else if (st.cached) {
    context.cache = model.make_generation_cache(T, o.lsh_cache);
  }
  for (int64_t n = 0; n < o.tokens; ++n) {
    std::vector<float> logits;
    if (o.memory_len > 0) {
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
    tokens.push_back(sample(std::move(logits), o, rng, n));
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
