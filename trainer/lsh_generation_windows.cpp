#include "trainer/lsh_generation_windows.h"

#include <algorithm>

#include "base/error.h"

namespace rf {

LshGenerationWindows::Order::Order(int64_t n_buckets) : members_(n_buckets), tree_(n_buckets + 1) {
  while (top_bit_ * 2 <= n_buckets) top_bit_ *= 2;
}

void LshGenerationWindows::Order::clear() {
  for (std::vector<int32_t>& m : members_) m.clear();
  std::fill(tree_.begin(), tree_.end(), 0);
}

int64_t LshGenerationWindows::Order::size_before(int64_t bucket) const {
  int64_t sum = 0;
  for (int64_t i = bucket; i > 0; i -= i & -i) sum += tree_[i];
  return sum;
}

int64_t LshGenerationWindows::Order::bucket_of_slot(int64_t slot) const {
  // The largest prefix of buckets holding at most `slot` positions: its end is slot's bucket.
  int64_t bucket = 0, remaining = slot;
  for (int64_t step = top_bit_; step > 0; step /= 2) {
    const int64_t next = bucket + step;
    if (next < static_cast<int64_t>(tree_.size()) && tree_[next] <= remaining) {
      bucket = next;
      remaining -= tree_[next];
    }
  }
  return bucket;
}

int64_t LshGenerationWindows::Order::insert(int32_t bucket, int32_t position) {
  members_[bucket].push_back(position);
  for (int64_t i = bucket + 1; i < static_cast<int64_t>(tree_.size()); i += i & -i) ++tree_[i];
  return size_before(bucket + 1) - 1;  // the last of its bucket
}

int32_t* LshGenerationWindows::Order::copy(int64_t begin, int64_t end, int32_t* out) const {
  if (begin >= end) return out;
  int64_t bucket = bucket_of_slot(begin);
  size_t index = static_cast<size_t>(begin - size_before(bucket));
  for (int64_t slot = begin; slot < end; ++slot) {
    while (index == members_[bucket].size()) {  // (skipping empty buckets)
      ++bucket;
      index = 0;
    }
    *out++ = members_[bucket][index++];
  }
  return out;
}

LshGenerationWindows::LshGenerationWindows(int64_t heads, int64_t rounds, int64_t n_buckets,
                                           int64_t chunk)
    : heads_(heads),
      rounds_(rounds),
      n_buckets_(n_buckets),
      chunk_(chunk),
      orders_(heads * rounds, Order(n_buckets)),
      slots_(rounds) {
  RF_CHECK(heads >= 1 && rounds >= 1 && n_buckets >= 1 && chunk >= 1);
}

void LshGenerationWindows::clear() {
  for (Order& o : orders_) o.clear();
  positions_ = 0;
}

const int32_t* LshGenerationWindows::append(const int32_t* buckets, int64_t stride, int64_t rows) {
  const int64_t W = window_len(), c = chunk_;
  listed_.resize(static_cast<size_t>(rows * heads_ * W));
  for (int64_t i = 0; i < rows; ++i) {
    const int32_t t = static_cast<int32_t>(positions_ + i);
    const int64_t n = t + 1;  // positions in each order once t is in
    for (int64_t h = 0; h < heads_; ++h) {
      Order* orders = &orders_[h * rounds_];
      // Insert t into every round first: a first chunk looks back into the previous round.
      for (int64_t r = 0; r < rounds_; ++r) {
        const int64_t bucket = buckets[(h * rounds_ + r) * stride + i] - r * n_buckets_;
        RF_CHECK(bucket >= 0 && bucket < n_buckets_, "bucket ", bucket, " of round ", r,
                 " outside [0, ", n_buckets_, ")");
        slots_[r] = orders[r].insert(static_cast<int32_t>(bucket), t);
      }
      int32_t* out = listed_.data() + (i * heads_ + h) * W;
      std::fill(out, out + W, -1);
      for (int64_t r = 0; r < rounds_; ++r) {
        const int64_t k = slots_[r] / c;
        int32_t* w = out + r * 2 * c;
        if (k > 0)
          w = orders[r].copy((k - 1) * c, k * c, w);
        else
          w = orders[(r + rounds_ - 1) % rounds_].copy(std::max<int64_t>(0, n - c), n, w);
        orders[r].copy(k * c, std::min(n, (k + 1) * c), w);
      }
    }
  }
  positions_ += rows;
  return listed_.data();
}

}  // namespace rf
