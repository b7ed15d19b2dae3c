// LSH bucketing of one layer: per (example, head) a fresh random rotation from Philox, the
// projection qk R as one GEMM, the argmax hash per round, then a stable sort of all slots by
// (bucket, position) for every (example, head) at once.
#pragma once

#include "kernels/device_buffer.h"
#include "kernels/ops/lsh_hash.h"

namespace rf {

// Positions hashed per GEMM when projecting onto the rotations.
constexpr int64_t kHashBlockRows = 16384;

struct LshHashSpec {
  int64_t seq_len = 0;
  int64_t d = 0;
  int64_t n_rounds = 1;
  BucketFactors factors;
};

// buckets [n_rounds, seq_len] of one (example, head) whose shared query-keys are qk [seq_len, ld].
void lsh_hash_head(Executor& ex, Workspace& ws, const LshHashSpec& spec, const float* qk,
                   int64_t ld, const RngStream& rotation_stream, int32_t* buckets);

// For `segments` consecutive bucket arrays of n_rounds * seq_len entries: perm (sorted slot ->
// r * seq_len + t) and its inverse undo, sorted by (bucket, position).
void lsh_sort(Executor& ex, Workspace& ws, const LshHashSpec& spec, int64_t segments,
              const int32_t* buckets, int32_t* perm, int32_t* undo);

}  // namespace rf
