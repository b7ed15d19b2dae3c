// Sampling from a trained model: each new token re-runs the model on the last seq_len tokens
// (there is no incremental LSH cache yet) and samples the next token with temperature and top-k,
// using Philox keyed by the seed and the token index, so a sample is reproducible.
#pragma once

#include <vector>

#include "trainer/model.h"

namespace rf {

struct SamplingOptions {
  int64_t tokens = 200;
  int64_t context = 0;       // tokens the model sees per prediction; 0 = train.seq_len
  double temperature = 1.0;  // 0 = greedy
  int64_t top_k = 0;         // 0 = the whole vocabulary
  uint64_t seed = 1;
};

// The prompt followed by `options.tokens` sampled tokens.
std::vector<int32_t> generate(ReformerModel& model, std::vector<int32_t> prompt,
                              const SamplingOptions& options);

}  // namespace rf
