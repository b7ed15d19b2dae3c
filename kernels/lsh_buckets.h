// LSH bucketing of one layer: per (example, head) a fresh random rotation from Philox (all drawn
// in one launch), the projection qk R per block of positions (a product per head on the CPU, one
// strided-batched product over an example's heads on a GPU), the argmax hash per round (one launch
// per block of positions and group of segments), then a stable sort of all slots by
// (bucket, position) for every (example, head) at once.
#pragma once

#include "kernels/device_buffer.h"
#include "kernels/ops/lsh_hash.h"

namespace rf {

// Rows (positions of all the segments of a group) projected onto the rotations at a time.
constexpr int64_t kHashBlockRows = 16384;

struct LshHashArgs {
  const float* qk = nullptr;  // [batch * seq_len, ld]; head h's d columns start at h * d
  int64_t ld = 0;
  int64_t batch = 1, heads = 1, seq_len = 0, d = 0, n_rounds = 1;
  BucketFactors factors;
  // The rotation stream of (example 0, head 0); example b and head h draw from the same stream
  // with example += b and head = h, so every rank and executor draws the same rotations.
  RngStream rotation;
  int32_t* buckets = nullptr;  // [batch, heads, n_rounds, seq_len] out
};
void lsh_hash(Executor& ex, Workspace& ws, const LshHashArgs& args);

struct LshSortArgs {
  const int32_t* buckets = nullptr;  // [segments, n_rounds * seq_len]
  int32_t* perm = nullptr;  // [segments, n_rounds * seq_len]: sorted slot -> r * seq_len + t
  int32_t* undo = nullptr;  // its inverse
  int64_t segments = 1, seq_len = 0, n_rounds = 1;
  int64_t total_buckets = 0;  // n_rounds * buckets per round
};
// Sorts each segment's slots by (bucket, position).
void lsh_sort(Executor& ex, Workspace& ws, const LshSortArgs& args);

}  // namespace rf
