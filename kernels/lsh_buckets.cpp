#include "kernels/lsh_buckets.h"

namespace rf {

void lsh_hash_head(Executor& ex, Workspace& ws, const LshHashSpec& spec, const float* qk,
                   int64_t ld, const RngStream& rotation_stream, int32_t* buckets) {
  const int64_t cols = spec.n_rounds * spec.factors.rotation_cols();
  // rotation [d, n_rounds * rotation_cols] ~ N(0, 1), new for every step, example and head.
  float* rotation = ws.floats("lsh.rotation", spec.d * cols);
  ex.run(spec.d * cols, RandomNormalFill{rotation, rotation_stream, 1.0f});
  float* projected = ws.floats("lsh.projected", spec.seq_len * cols);
  matmul(ex, {false, false, spec.seq_len, cols, spec.d, ld, cols, cols, 0, 0, 0, 1, 1.0f, 0.0f},
         qk, rotation, projected);
  ex.run(spec.n_rounds * spec.seq_len,
         LshHash{projected, cols, buckets, spec.seq_len, spec.factors});
}

void lsh_sort(Executor& ex, Workspace& ws, const LshHashSpec& spec, int64_t segments,
              const int32_t* buckets, int32_t* perm, int32_t* undo) {
  const int64_t n = spec.n_rounds * spec.seq_len;
  const int64_t total_buckets = spec.n_rounds * spec.factors.n_buckets();
  int32_t* counts = ws.ints("lsh.sort_counts", segments * (total_buckets + 1));
  ex.run(segments, BucketCountingSort{buckets, perm, undo, counts, n, total_buckets});
}

}  // namespace rf
