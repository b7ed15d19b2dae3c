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
  // Whether an element whose uniform number is u is kept.
  RF_HD bool keeps(float u) const { return u < keep; }
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
    return keeps(s.uniform(row.first + col)) ? 1.0f / keep : 0.0f;
  }
  // scale_in(row, col + c) into out[c] for c < n, drawing each Philox block once: a block holds
  // four consecutive elements' numbers, and scale_in draws a whole block for each element.
  RF_HD void scales_in(const DropoutRow& row, int64_t col, int64_t n, float* out) const {
    if (!active()) {
      for (int64_t c = 0; c < n; ++c) out[c] = 1.0f;
      return;
    }
    RngStream s = stream;
    s.example = row.example;
    const uint64_t first = row.first + col;
    for (int64_t c = 0; c < n;) {
      const uint64_t e = first + c;
      const Philox4 b = s.block(e >> 2);
      for (uint64_t k = e & 3; k < 4 && c < n; ++k, ++c)
        out[c] = keeps(RngStream::uniform_from_bits(b.v[k])) ? 1.0f / keep : 0.0f;
    }
  }
  // scale_in(row, col) and scale_in(row, col + 1), drawing one Philox block when both lie in it
  // (for a GPU thread that holds two adjacent columns: no array indexed at run time).
  struct Pair {
    float first, second;
  };
  RF_HD Pair scale_pair_in(const DropoutRow& row, int64_t col) const {
    if (!active()) return {1.0f, 1.0f};
    const uint64_t e = row.first + col;
    const uint32_t k = static_cast<uint32_t>(e & 3);
    if (k == 3) return {scale_in(row, col), scale_in(row, col + 1)};  // (two blocks)
    RngStream s = stream;
    s.example = row.example;
    const Philox4 b = s.block(e >> 2);
    const uint32_t w0 = k == 0 ? b.v[0] : (k == 1 ? b.v[1] : b.v[2]);
    const uint32_t w1 = k == 0 ? b.v[1] : (k == 1 ? b.v[2] : b.v[3]);
    return {keeps(RngStream::uniform_from_bits(w0)) ? 1.0f / keep : 0.0f,
            keeps(RngStream::uniform_from_bits(w1)) ? 1.0f / keep : 0.0f};
  }
  // Multiplier for element (row, col): 0 or 1/keep.
  RF_HD float scale(int64_t row, int64_t col) const {
    return active() ? scale_in(row_of(row), col) : 1.0f;
  }
};

}  // namespace rf
