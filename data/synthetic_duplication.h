// The Reformer paper's duplication task (section 5, Table 2): sequences "0 w 0 w" where w is a
// string of random symbols from 1 .. vocab_size - 1. The second copy can only be predicted by
// attending half a sequence back. A window of seq_len + 1 tokens is
//   [0, 0, w_1 .. w_m, 0, w_1 .. w_m]   with m = seq_len / 2 - 1,
// the leading 0 playing the role of trax's ShiftRight pad. Target position j predicts window
// token j + 1, so the second copy occupies target positions [seq_len / 2 + 1, seq_len).
// Windows are generated from Philox keyed by (seed, split, window index): nothing is downloaded.
#pragma once

#include <memory>

#include "data/window_source.h"

namespace rf {

class SyntheticDuplication final : public WindowSource {
 public:
  SyntheticDuplication(int64_t seq_len, int64_t vocab_size, uint64_t seed, bool validation);

  int64_t num_windows() const override { return 0; }
  int64_t window_length() const override { return seq_len_ + 1; }
  void read(int64_t index, int32_t* out) const override;
  std::string describe() const override;
  bool consecutive() const override { return false; }  // independent windows

  // Target positions [first, seq_len) hold the second copy of w.
  static int64_t copy_begin(int64_t seq_len) { return seq_len / 2 + 1; }

 private:
  int64_t seq_len_, vocab_;
  uint64_t seed_;
  bool validation_;
};

}  // namespace rf
