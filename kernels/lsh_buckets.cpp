#include "kernels/lsh_buckets.h"

#include <algorithm>

#include "kernels/elementwise.h"
#include "kernels/linear.h"
#include "kernels/profile.h"

namespace rf {

void lsh_hash(Executor& ex, Workspace& ws, const LshHashArgs& a) {
  const ScopedLauncherTimer timer(ex, "lsh hash and sort");
  const int64_t cols = a.n_rounds * a.factors.rotation_cols();
  // rotation [d, n_rounds * rotation_cols] ~ N(0, 1), new for every step, example and head.
  float* rotation = ws.floats("lsh.rotation", a.d * cols);
  // Projections for a block of positions at a time: [seq_len, cols] would be the largest buffer
  // of a long sequence (1.5 GB at 2^20 tokens with 32768 factorised buckets).
  const int64_t block = std::min<int64_t>(a.seq_len, kHashBlockRows);
  float* projected = ws.floats("lsh.projected", block * cols);
  for (int64_t b = 0; b < a.batch; ++b)
    for (int64_t h = 0; h < a.heads; ++h) {
      RngStream stream = a.rotation;
      stream.example += static_cast<uint32_t>(b);
      stream.head = static_cast<uint32_t>(h);
      fill_normal(ex, rotation, a.d * cols, stream, 1.0f);
      const float* qk = a.qk + b * a.seq_len * a.ld + h * a.d;
      int32_t* buckets = a.buckets + (b * a.heads + h) * a.n_rounds * a.seq_len;
      for (int64_t first = 0; first < a.seq_len; first += block) {
        const int64_t rows = std::min(block, a.seq_len - first);
        linear_forward(ex, {qk + first * a.ld, rows, a.d, a.ld}, matrix(rotation, a.d, cols),
                       matrix(projected, rows, cols));
        LshHash hash{};
        hash.projected = projected;
        hash.ldp = cols;
        hash.buckets = buckets;
        hash.seq_len = a.seq_len;
        hash.first = first;
        hash.rows = rows;
        hash.factors = a.factors;
        ex.run(a.n_rounds * rows, hash);
      }
    }
}

void lsh_sort(Executor& ex, Workspace& ws, const LshSortArgs& a) {
  const ScopedLauncherTimer timer(ex, "lsh hash and sort");
  const Executor::BucketSort sort{
      a.buckets, a.perm, a.undo, a.segments, a.n_rounds * a.seq_len, a.total_buckets};
  ex.sort_buckets(sort, ws.get<char>("lsh.sort_scratch", ex.sort_scratch_bytes(sort)));
}

}  // namespace rf
