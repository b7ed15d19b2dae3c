#include "trainer/generate.h"

#include <algorithm>
#include <cmath>
#include <numeric>

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

}  // namespace

std::vector<int32_t> generate(ReformerModel& model, std::vector<int32_t> tokens,
                              const SamplingOptions& o) {
  const int64_t T = o.context > 0 ? o.context : model.config().train.seq_len;
  if (tokens.empty()) tokens.push_back(0);
  const RngStream rng = make_rng_stream(o.seed, RngPurpose::kSampling, 0, 0, 0, 0);
  for (int64_t n = 0; n < o.tokens; ++n) {
    // The last T tokens at positions 0.., padded on the right (future pads are masked out).
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
    tokens.push_back(sample(model.next_token_logits(window, step, len - 1), o, rng, n));
  }
  return tokens;
}

}  // namespace rf
