// The order in which windows are visited: sample n of the run (counted over the whole job, not
// per rank) is window permute(n mod N) of epoch n / N, where permute is a seeded pseudo-random
// permutation of [0, N) (a 4-round Feistel network with cycle walking, rounds keyed by Philox).
// It needs no state but the sample counter, so every window is used exactly once per epoch for
// any number of ranks, and a checkpoint's counter resumes on any number of ranks.
#pragma once

#include <cstdint>

namespace rf {

class SampleOrder {
 public:
  // num_windows = 0: an unbounded stream, sample n is window n.
  SampleOrder(int64_t num_windows, uint64_t seed);
  int64_t window_of_sample(int64_t sample) const;

 private:
  uint64_t permute(uint64_t x, uint64_t epoch) const;
  int64_t n_;
  uint64_t seed_;
  int half_bits_ = 0;
};

}  // namespace rf
