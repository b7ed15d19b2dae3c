#include "kernels/lsh_buckets.h"

#include <algorithm>

namespace rf {

void lsh_hash_head(Executor& ex, Workspace& ws, const LshHashSpec& spec, const float* qk,
                   int64_t ld, const RngStream& rotation_stream, int32_t* buckets) {
  const int64_t cols = spec.n_rounds * spec.factors.rotation_cols();
  // rotation [d, n_rounds * rotation_cols] ~ N(0, 1), new for every step, example and head.
  float* rotation = ws.floats("lsh.rotation", spec.d * cols);
  ex.run(spec.d * cols, RandomNormalFill{rotation, rotation_stream, 1.0f});
  // Projections for a block of positions at a time: [seq_len, cols] would be the largest buffer
  // of a long sequence (1.5 GB at 2^20 tokens with 32768 factorised buckets).
  const int64_t block = std::min<int64_t>(spec.seq_len, kHashBlockRows);
  float* projected = ws.floats("lsh.projected", block * cols);
  for (int64_t first = 0; first < spec.seq_len; first += block) {
    const int64_t rows = std::min(block, spec.seq_len - first);
    matmul(ex, {false, false, rows, cols, spec.d, ld, cols, cols, 0, 0, 0, 1, 1.0f, 0.0f},
           qk + first * ld, rotation, projected);
    ex.run(spec.n_rounds * rows,
           LshHash{projected, cols, buckets, spec.seq_len, first, rows, spec.factors});
  }
}

void lsh_sort(Executor& ex, Workspace& ws, const LshHashSpec& spec, int64_t segments,
              const int32_t* buckets, int32_t* perm, int32_t* undo) {
  const Executor::BucketSort sort{buckets,
                                  perm,
                                  undo,
                                  segments,
                                  spec.n_rounds * spec.seq_len,
                                  spec.n_rounds * spec.factors.n_buckets()};
  ex.sort_buckets(sort, ws.get<char>("lsh.sort_scratch", ex.sort_scratch_bytes(sort)));
}

}  // namespace rf
