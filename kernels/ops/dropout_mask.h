// Dropout keep-masks drawn from Philox, so the reversible backward regenerates exactly the mask the
// forward used. Element (row, col) of a [batch * seq_len, cols] activation belongs to example
// example_base + row / seq_len and is element (row % seq_len) * cols + col of that example's
// stream.
#pragma once

#include "base/philox.h"
#include "base/philox_batch.h"

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
  // The stream a row's elements are drawn from.
  RF_HD RngStream stream_of(const DropoutRow& row) const {
    RngStream s = stream;
    s.example = row.example;
    return s;
  }
  // Multiplier of an element whose Philox word is `bits`: 0 or 1/keep.
  RF_HD float scale_of_bits(uint32_t bits) const {
    return keeps(RngStream::uniform_from_bits(bits)) ? 1.0f / keep : 0.0f;
  }
  // Multiplier for element col of a row: 0 or 1/keep.
  RF_HD float scale_in(const DropoutRow& row, int64_t col) const {
    if (!active()) return 1.0f;
    return scale_of_bits(stream_of(row).bits(row.first + col));
  }
  // f(c, scale_in(row, c)) for c = c0 .. c1 - 1 in order. On the host a run's numbers are
  // drawn side by side in SIMD registers (philox_batch.h); a GPU thread draws them a block at a
  // time (for_each_scale_by_block). The same bits either way.
  template <class F>
  RF_HD void for_each_scale_in(const DropoutRow& row, int64_t c0, int64_t c1, const F& f) const {
#if defined(__CUDA_ARCH__)
    for_each_scale_by_block(row, c0, c1, f);
#else
    if (!active()) {
      for (int64_t c = c0; c < c1; ++c) f(c, 1.0f);
      return;
    }
    const RngStream s = stream_of(row);
    constexpr int64_t kRun = 128;  // (two AVX-512 passes; 1 KB of stack for both arrays)
    uint32_t words[kRun];
    float scales[kRun];
    for (int64_t c = c0; c < c1; c += kRun) {
      const int64_t n = c1 - c < kRun ? c1 - c : kRun;
      philox_stream_words(s, row.first + static_cast<uint64_t>(c), n, words);
      for (int64_t k = 0; k < n; ++k) scales[k] = scale_of_bits(words[k]);
      for (int64_t k = 0; k < n; ++k) f(c + k, scales[k]);
    }
#endif
  }
  // The same, drawing each Philox block once: a block holds four consecutive elements' numbers,
  // and scale_in draws a whole block for each.
  template <class F>
  RF_HD void for_each_scale_by_block(const DropoutRow& row, int64_t c0, int64_t c1,
                                     const F& f) const {
    if (!active()) {
      for (int64_t c = c0; c < c1; ++c) f(c, 1.0f);
      return;
    }
    const RngStream s = stream_of(row);
    for (int64_t c = c0; c < c1;) {
      const uint64_t e = row.first + c;
      const Philox4 b = s.block(e >> 2);
      for (uint32_t k = static_cast<uint32_t>(e & 3); k < 4 && c < c1; ++k, ++c)
        f(c, scale_of_bits(RngStream::word(b, k)));
    }
  }
  // The same for row `row`: the activations' dropout over a row's columns.
  template <class F>
  RF_HD void for_each_scale(int64_t row, int64_t c0, int64_t c1, const F& f) const {
    for_each_scale_in(row_of(row), c0, c1, f);
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
    const Philox4 b = stream_of(row).block(e >> 2);
    return {scale_of_bits(RngStream::word(b, k)), scale_of_bits(RngStream::word(b, k + 1))};
  }
  // Multiplier for element (row, col): 0 or 1/keep.
  RF_HD float scale(int64_t row, int64_t col) const {
    return active() ? scale_in(row_of(row), col) : 1.0f;
  }
};

}  // namespace rf
