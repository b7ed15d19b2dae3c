// The order in which windows are visited: sample n of the run (counted over the whole job, not
// per rank) is window permute(n mod N) of epoch n / N, where permute is a seeded pseudo-random
// permutation of [0, N) (a 4-round Feistel network with cycle walking, rounds keyed by Philox).
// It needs no state but the sample counter, so every window is used exactly once per epoch for
// any number of ranks, and a checkpoint's counter resumes on any number of ranks.
//
// In streams (Transformer-XL's batchify, for recurrence): the windows are cut into `lanes`
// contiguous streams of E = N / lanes windows (the last N mod lanes windows are not used), and
// sample n is window t mod E of lane n mod lanes, with t = n / lanes: each lane of a global batch
// reads the segment after the one it read in the previous step, and an epoch is E steps.
#pragma once

#include <cstdint>

namespace rf {

class SampleOrder {
 public:
  // num_windows = 0: an unbounded stream, sample n is window n.
  SampleOrder(int64_t num_windows, uint64_t seed);
  // The order in `lanes` contiguous streams (lanes <= num_windows; num_windows > 0).
  static SampleOrder streams(int64_t num_windows, int64_t lanes);
  int64_t window_of_sample(int64_t sample) const;
  // In streams: whether `sample` starts its lane's stream (its memory must be cleared).
  bool starts_stream(int64_t sample) const;
  int64_t lanes() const { return lanes_; }

 private:
  uint64_t permute(uint64_t x, uint64_t epoch) const;
  int64_t n_;
  uint64_t seed_;
  int half_bits_ = 0;
  int64_t lanes_ = 0;  // 0: shuffled windows
};

}  // namespace rf
