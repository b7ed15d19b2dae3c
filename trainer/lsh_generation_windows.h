// Which keys a new position's LSH attention reads in cached generation (generate --lsh-cache).
//
// The uncached pass sorts all positions of the window by (bucket, position) in each hash round
// and lets every position attend to its chunk of bucket_size sorted slots and the chunk before
// it. A new key moves the chunk boundaries of every position after it in that order, so no cache
// reproduces it for the earlier positions. The cache instead fixes each position's windows when
// the position arrives: position t attends to what the uncached pass gives the last position of
// the text 0..t, over the positions 0..t sorted in each round: its own chunk (counted from the
// round's first sorted slot; the last one may be partial) and the chunk before it, or for the
// round's first chunk the previous round's last bucket_size slots (the uncached pass's
// look-back across rounds). Later positions never change it, so a position's output depends on
// the positions up to it only. For the text's first bucket_size positions that is the uncached
// pass's attention (every earlier position); in the first layer, at every multiple of
// bucket_size, it is the uncached pass's attention of the last position (tests).
//
// The sorted orders live on the host, per (head, round): each bucket's positions in order, and a
// Fenwick tree of the buckets' sizes, so that a new position's slot and the positions at any
// slots of the order take O(log buckets) plus one step per listed position (a long prompt's
// windows cost O(positions x listed), not the O(positions^2) of inserting into sorted arrays).
// Each window is listed as positions for the attention kernel (kernels/ops/cached_attention.h).
#pragma once

#include <cstdint>
#include <vector>

namespace rf {

class LshGenerationWindows {
 public:
  LshGenerationWindows() = default;
  LshGenerationWindows(int64_t heads, int64_t rounds, int64_t n_buckets, int64_t chunk);

  // Key positions listed per (new position, head): rounds * 2 * chunk, -1 where a window is short.
  int64_t window_len() const { return rounds_ * 2 * chunk_; }
  int64_t positions() const { return positions_; }

  // Forgets every position (a new context).
  void clear();
  // Appends `rows` positions whose buckets are buckets[(h * rounds + r) * stride + i], i < rows
  // (lsh_hash's layout [heads, rounds, stride] and numbering, round r's from r * n_buckets).
  // Returns their windows [rows, heads, window_len()], valid until the next call.
  const int32_t* append(const int32_t* buckets, int64_t stride, int64_t rows);

 private:
  // The positions so far of one (head, round), sorted by (bucket, position).
  class Order {
   public:
    explicit Order(int64_t n_buckets = 0);
    void clear();
    // Adds the latest position; returns its slot in the order.
    int64_t insert(int32_t bucket, int32_t position);
    // Writes the positions at slots [begin, end) of the order to out.
    int32_t* copy(int64_t begin, int64_t end, int32_t* out) const;

   private:
    int64_t size_before(int64_t bucket) const;   // positions in buckets < bucket
    int64_t bucket_of_slot(int64_t slot) const;  // the bucket holding slot `slot`
    std::vector<std::vector<int32_t>> members_;  // per bucket, its positions in order
    std::vector<int64_t> tree_;                  // Fenwick tree of the buckets' sizes
    int64_t top_bit_ = 1;                        // the highest power of 2 <= n_buckets
  };

  int64_t heads_ = 0, rounds_ = 0, n_buckets_ = 0, chunk_ = 0, positions_ = 0;
  std::vector<Order> orders_;    // [heads, rounds]
  std::vector<int64_t> slots_;   // append(): the new position's slot in each round
  std::vector<int32_t> listed_;  // append(): the windows it returns
};

}  // namespace rf
