// Choosing the next token from a model's logits: greedy, or drawn at a temperature from the k
// most likely tokens and, within those, from the nucleus: the fewest most likely tokens whose
// probability reaches top_p (Holtzman et al. 2020, "The Curious Case of Neural Text
// Degeneration"; Hugging Face's `top_k` then `top_p`, in that order). One Philox number per
// token, keyed by the token's index, so a sample is reproducible.
#pragma once

#include <cstdint>
#include <vector>

#include "base/philox.h"

namespace rf {

struct SamplingRule {
  double temperature = 1.0;  // 0 = greedy
  int64_t top_k = 0;         // 0 = the whole vocabulary
  double top_p = 1.0;        // in (0, 1]; 1 = no nucleus cut
};

// The token drawn from `logits` with number `index` of `rng` (the most likely at temperature 0,
// the first of equals).
int32_t sample_token(const std::vector<float>& logits, const SamplingRule& rule,
                     const RngStream& rng, int64_t index);

}  // namespace rf
