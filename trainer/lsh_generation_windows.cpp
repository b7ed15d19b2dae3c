#include "trainer/lsh_generation_windows.h"

#include <algorithm>

#include "base/error.h"

namespace rf {

LshGenerationWindows::LshGenerationWindows(int64_t heads, int64_t rounds, int64_t chunk)
    : heads_(heads), rounds_(rounds), chunk_(chunk), orders_(heads * rounds) {
  RF_CHECK(heads >= 1 && rounds >= 1 && chunk >= 1);
}

void LshGenerationWindows::clear() {
  for (Order& o : orders_) {
    o.bucket_of.clear();
    o.sorted.clear();
  }
  positions_ = 0;
}

void LshGenerationWindows::append(const int32_t* buckets, int64_t rows, int32_t* windows) {
  const int64_t W = window_len(), c = chunk_;
  std::vector<int64_t> slot(rounds_);  // t's sorted slot in each round
  for (int64_t i = 0; i < rows; ++i) {
    const int32_t t = static_cast<int32_t>(positions_ + i);
    const int64_t n = t + 1;  // positions sorted after t's insertion
    for (int64_t h = 0; h < heads_; ++h) {
      // Insert t into every round first: a first chunk looks back into the previous round.
      for (int64_t r = 0; r < rounds_; ++r) {
        Order& o = order(h, r);
        const int32_t b = buckets[(i * heads_ + h) * rounds_ + r];
        o.bucket_of.push_back(b);
        // t is the latest position: it goes after every position of its bucket.
        const auto at =
            std::upper_bound(o.sorted.begin(), o.sorted.end(), b,
                             [&](int32_t bucket, int32_t p) { return bucket < o.bucket_of[p]; });
        slot[r] = at - o.sorted.begin();
        o.sorted.insert(at, t);
      }
      int32_t* out = windows + (i * heads_ + h) * W;
      std::fill(out, out + W, -1);
      for (int64_t r = 0; r < rounds_; ++r) {
        const int64_t k = slot[r] / c;
        const Order& own = order(h, r);
        const Order& before = k > 0 ? own : order(h, (r + rounds_ - 1) % rounds_);
        const int64_t before_lo = k > 0 ? (k - 1) * c : std::max<int64_t>(0, n - c);
        const int64_t before_hi = k > 0 ? k * c : n;
        int32_t* w = out + r * 2 * c;
        w = std::copy(before.sorted.begin() + before_lo, before.sorted.begin() + before_hi, w);
        std::copy(own.sorted.begin() + k * c, own.sorted.begin() + std::min(n, (k + 1) * c), w);
      }
    }
  }
  positions_ += rows;
}

}  // namespace rf
