// Dropout keep-masks drawn from Philox, so the reversible backward regenerates exactly the mask the
// forward used. Element (row, col) of a [batch * seq_len, cols] activation belongs to example
// example_base + row / seq_len and is element (row % seq_len) * cols + col of that example's
// stream.
#pragma once

#include "base/philox.h"

namespace rf {

struct DropoutMask {
  float keep = 1.0f;  // 1 - rate; 1 disables dropout
  RngStream stream;   // example field is replaced per row
  uint32_t example_base = 0;
  int64_t seq_len = 1;
  int64_t cols = 1;
  int64_t row_offset = 0;  // added to the row index (a chunk of a larger activation)

  RF_HD bool active() const { return keep < 1.0f; }
  // Multiplier for element (row, col): 0 or 1/keep.
  RF_HD float scale(int64_t row, int64_t col) const {
    if (!active()) return 1.0f;
    RngStream s = stream;
    const int64_t r = row + row_offset;
    s.example = example_base + static_cast<uint32_t>(r / seq_len);
    const uint64_t element = static_cast<uint64_t>(r % seq_len) * cols + col;
    return s.uniform(element) < keep ? 1.0f / keep : 0.0f;
  }
};

}  // namespace rf
