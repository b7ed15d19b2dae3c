// Dropout keep-masks drawn from Philox, so the reversible backward regenerates exactly the mask the
// forward used. Element (row, col) of a [batch * seq_len, cols] activation belongs to example
// example_base + row / seq_len and is element (row % seq_len) * cols + col of that example's
// stream.
#pragma once

#include "base/philox.h"

namespace rf {

// Where one row's elements are drawn: its example's stream and its first element. Kernels that
// draw many elements of a row find it once (DropoutMask::row_of takes a 64-bit division).
// (No member initialisers: kernels keep arrays of them in shared memory.)
struct DropoutRow {
  uint32_t example;
  uint64_t first;
};

struct DropoutMask {
  float keep = 1.0f;  // 1 - rate; 1 disables dropout
  RngStream stream;   // example field is replaced per row
  uint32_t example_base = 0;
  int64_t seq_len = 1;
  int64_t cols = 1;
  int64_t row_offset = 0;  // added to the row index (a chunk of a larger activation)

  RF_HD bool active() const { return keep < 1.0f; }
  RF_HD DropoutRow row_of(int64_t row) const {
    const int64_t r = row + row_offset;
    return {example_base + static_cast<uint32_t>(r / seq_len),
            static_cast<uint64_t>(r % seq_len) * cols};
  }
  // Multiplier for element col of a row: 0 or 1/keep.
  RF_HD float scale_in(const DropoutRow& row, int64_t col) const {
    if (!active()) return 1.0f;
    RngStream s = stream;
    s.example = row.example;
    return s.uniform(row.first + col) < keep ? 1.0f / keep : 0.0f;
  }
  // Multiplier for element (row, col): 0 or 1/keep.
  RF_HD float scale(int64_t row, int64_t col) const {
    return active() ? scale_in(row_of(row), col) : 1.0f;
  }
};

}  // namespace rf
