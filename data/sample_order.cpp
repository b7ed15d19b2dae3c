#include "data/sample_order.h"

#include "base/error.h"
#include "base/philox.h"

namespace rf {

SampleOrder::SampleOrder(int64_t num_windows, uint64_t seed) : n_(num_windows), seed_(seed) {
  int bits = 0;
  while (n_ > 1 && (int64_t{1} << bits) < n_) ++bits;
  half_bits_ = (bits + 1) / 2;
}

SampleOrder SampleOrder::streams(int64_t num_windows, int64_t lanes) {
  RF_CHECK(lanes >= 1 && num_windows >= lanes, "streams of ", num_windows, " windows in ", lanes,
           " lanes");
  SampleOrder order(num_windows, 0);
  order.lanes_ = lanes;
  return order;
}

bool SampleOrder::starts_stream(int64_t sample) const {
  return lanes_ > 0 && (sample / lanes_) % (n_ / lanes_) == 0;
}

int64_t SampleOrder::window_of_sample(int64_t sample) const {
  if (lanes_ > 0) {
    const int64_t per_lane = n_ / lanes_;
    return (sample % lanes_) * per_lane + (sample / lanes_) % per_lane;
  }
  if (n_ <= 0) return sample;
  return static_cast<int64_t>(
      permute(static_cast<uint64_t>(sample % n_), static_cast<uint64_t>(sample / n_)));
}

uint64_t SampleOrder::permute(uint64_t x, uint64_t epoch) const {
  if (n_ <= 1) return 0;
  const uint64_t mask = (uint64_t{1} << half_bits_) - 1;
  const RngStream keys =
      make_rng_stream(seed_, RngPurpose::kShuffle, 0, static_cast<uint32_t>(epoch), 0, 0);
  // Cycle walking: a permutation of [0, 4^half_bits) restricted to [0, n) by re-applying it
  // until the value lands inside; the domain is < 4n, so this takes few rounds.
  do {
    uint64_t left = x >> half_bits_, right = x & mask;
    for (uint32_t round = 0; round < 4; ++round) {
      RngStream k = keys;
      k.head = round;
      const uint64_t f = k.bits(right) & mask;
      const uint64_t next = left ^ f;
      left = right;
      right = next;
    }
    x = (left << half_bits_) | right;
  } while (x >= static_cast<uint64_t>(n_));
  return x;
}

}  // namespace rf
