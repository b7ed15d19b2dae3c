#include "trainer/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace rf {

int32_t sample_token(const std::vector<float>& logits, const SamplingRule& rule,
                     const RngStream& rng, int64_t index) {
  const int64_t V = static_cast<int64_t>(logits.size());
  std::vector<int32_t> order(V);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  if (rule.temperature <= 0.0) return order[0];
  const int64_t k = rule.top_k > 0 ? std::min(rule.top_k, V) : V;
  // Unnormalised probabilities, most likely first.
  std::vector<double> p(k);
  for (int64_t i = 0; i < k; ++i)
    p[i] = std::exp((logits[order[i]] - logits[order[0]]) / rule.temperature);
  double total = std::accumulate(p.begin(), p.end(), 0.0);
  int64_t kept = k;
  if (rule.top_p < 1.0) {  // the nucleus: the shortest prefix holding top_p of the probability
    const double wanted = rule.top_p * total;
    double held = 0.0;
    kept = 0;
    while (kept < k && held < wanted) held += p[kept++];  // (wanted > 0: at least one)
    total = held;
  }
  double u = static_cast<double>(rng.uniform(static_cast<uint64_t>(index))) * total;
  for (int64_t i = 0; i < kept; ++i) {
    if (u < p[i]) return order[i];
    u -= p[i];
  }
  return order[kept - 1];
}

}  // namespace rf
