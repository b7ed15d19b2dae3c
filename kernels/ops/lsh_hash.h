// Angular LSH (Andoni et al. 2015, as the Reformer uses it): with projections p = qk R of a
// round, the bucket is argmax([p ; -p]). Many buckets are factorised as trax and HF do: the
// rotation holds sum(f_i / 2) columns, each factor takes the argmax of its own block, and the
// factor ids combine mixed-radix (id = a1 + f1 * a2 + f1 * f2 * a3). Round r adds r * n_buckets.
// Then a stable counting sort orders the n_rounds * seq_len slots by (bucket, position).
#pragma once

#include "base/hd.h"
#include "base/philox.h"

namespace rf {

constexpr int kMaxBucketFactors = 3;

struct BucketFactors {
  int count = 1;
  int size[kMaxBucketFactors] = {2, 1, 1};  // each even; product = n_buckets
  RF_HD int n_buckets() const {
    int n = 1;
    for (int f = 0; f < count; ++f) n *= size[f];
    return n;
  }
  RF_HD int rotation_cols() const {  // columns of the rotation matrix per round
    int n = 0;
    for (int f = 0; f < count; ++f) n += size[f] / 2;
    return n;
  }
};

// A factor's bucket among 2 * half: the argmax over [p[0 .. half) ; -p[0 .. half)], the first
// index on ties (a strict-greater scan).
RF_HD int lsh_factor_argmax(const float* p, int half) {
  float best = p[0];
  int arg = 0;
  for (int j = 1; j < half; ++j)
    if (p[j] > best) best = p[j], arg = j;
  for (int j = 0; j < half; ++j)
    if (-p[j] > best) best = -p[j], arg = half + j;
  return arg;
}

// Hashes positions [first, first + rows) of `entries` sequences (segments: an example and head
// each) from their projections, side by side in one launch. Index = (round * entries + entry) *
// rows + (t - first); with one entry, round * rows + (t - first).
struct LshHash {
  const float* projected;  // [entries, rows, ldp]: round r's projections at columns r * rot_cols
  int64_t ldp;
  int32_t* buckets;  // per entry [n_rounds, seq_len], entry e's at buckets + e * bucket_stride
  int64_t seq_len;
  int64_t first, rows;  // the block of positions hashed
  BucketFactors factors;
  int64_t entries = 1, bucket_stride = 0;
  // Index i's projections (rotation_cols() per round from there) and where its bucket goes.
  struct Row {
    const float* p;
    int32_t* bucket;
    int32_t round_offset;  // round * n_buckets
  };
  RF_HD Row row(int64_t i) const {
    const int64_t per_round = entries * rows, r = i / per_round;
    const int64_t entry = i % per_round / rows, local = i % rows;
    return {projected + (entry * rows + local) * ldp + r * factors.rotation_cols(),
            buckets + entry * bucket_stride + r * seq_len + first + local,
            static_cast<int32_t>(r) * factors.n_buckets()};
  }
  // Index i's bucket, each factor's argmax found by argmax(p, half) (an executor may pass a
  // vectorised one that gives the same index: kernels/cpu/lsh_argmax.h).
  template <class Argmax>
  RF_HD void hash(int64_t i, const Argmax& argmax) const {
    const Row at = row(i);
    const float* p = at.p;
    int bucket = 0, radix = 1;
    for (int f = 0; f < factors.count; ++f) {
      const int half = factors.size[f] / 2;
      bucket += argmax(p, half) * radix;
      radix *= factors.size[f];
      p += half;
    }
    *at.bucket = bucket + at.round_offset;
  }
  RF_HD void operator()(int64_t i) const {
    hash(i, [](const float* p, int half) { return lsh_factor_argmax(p, half); });
  }
};

// The random rotations of every segment (example b, head h: segment b * heads + h) in one
// launch: segment s's [d, cols] values are the first values_per_segment of `stream` with
// example += b and head = h, so each segment draws what a fill of its own would.
// Index = s * values_per_segment + j.
struct LshRotationFill {
  float* x;
  RngStream stream;  // example 0, head 0
  int64_t heads, values_per_segment;
  RF_HD void operator()(int64_t i) const {
    const int64_t s = i / values_per_segment;
    RngStream segment = stream;
    segment.example += static_cast<uint32_t>(s / heads);
    segment.head = static_cast<uint32_t>(s % heads);
    x[i] = segment.normal(static_cast<uint64_t>(i % values_per_segment));
  }
};

// Stable counting sort of one segment (one example and head) by bucket. Slots i = r * seq_len + t
// are visited in increasing order and a bucket holds slots of one round only, so the order within
// a bucket is by position: the result is the sort of the key bucket * seq_len + t. Index = segment.
struct BucketCountingSort {
  const int32_t* buckets;  // [segments, n]
  int32_t* perm;           // [segments, n] out: sorted slot -> r * seq_len + t
  int32_t* undo;           // [segments, n] out: r * seq_len + t -> sorted slot
  int32_t* counts;         // scratch [segments, total_buckets + 1]
  int64_t n, total_buckets;
  RF_HD void operator()(int64_t segment) const {
    const int32_t* b = buckets + segment * n;
    int32_t* p = perm + segment * n;
    int32_t* u = undo + segment * n;
    int32_t* c = counts + segment * (total_buckets + 1);
    for (int64_t k = 0; k <= total_buckets; ++k) c[k] = 0;
    for (int64_t i = 0; i < n; ++i) ++c[b[i] + 1];
    for (int64_t k = 0; k < total_buckets; ++k) c[k + 1] += c[k];
    for (int64_t i = 0; i < n; ++i) {
      const int32_t slot = c[b[i]]++;
      p[slot] = static_cast<int32_t>(i);
      u[i] = slot;
    }
  }
};

// undo[segment, perm[segment, j]] = j: the inverse of each segment's permutation.
// Index = segment * n + j.
struct InvertPermutation {
  const int32_t* perm;
  int32_t* undo;
  int64_t n;
  RF_HD void operator()(int64_t i) const {
    const int64_t segment = i / n;
    undo[segment * n + perm[i]] = static_cast<int32_t>(i % n);
  }
};

// values[i] = i mod n (each segment's slot numbers) and offsets[s] = s * n for the GPU sort.
// Index = i over segments * n + 1 (the last index only writes the end offset).
struct SegmentSlotsAndOffsets {
  int32_t* values;
  int32_t* offsets;
  int64_t n, segments;
  RF_HD void operator()(int64_t i) const {
    if (i < segments * n) values[i] = static_cast<int32_t>(i % n);
    if (i % n == 0) offsets[i / n] = static_cast<int32_t>(i);
  }
};

}  // namespace rf
