#include "kernels/lsh_buckets.h"

#include <algorithm>

#include "kernels/linear.h"
#include "kernels/profile.h"

namespace rf {

namespace {

// Projections [rows, cols] of positions first .. first + rows - 1 of `count` consecutive segments
// of one example (heads h .. h + count - 1) onto their rotations, to `projected` one segment's
// [rows, cols] after another, as one strided-batched product. (lsh_hash passes count 1 on the CPU:
// its executor runs a batch as one single-threaded OpenBLAS product per thread, and a single
// product on all threads in oneDNN, so each head's projections keep the bits they had.)
void project(Executor& ex, const LshHashArgs& a, int64_t b, int64_t h, int64_t count, int64_t first,
             int64_t rows, const float* rotations, float* projected) {
  const int64_t cols = a.n_rounds * a.factors.rotation_cols();
  RowMajorGemm g;
  g.m = rows;
  g.n = cols;
  g.k = a.d;
  g.lda = a.ld;
  g.ldb = cols;
  g.ldc = cols;
  g.stride_a = a.d;
  g.stride_b = a.d * cols;
  g.stride_c = rows * cols;
  g.batch = count;
  matmul(ex, g, a.qk + (b * a.seq_len + first) * a.ld + h * a.d, rotations, projected);
}

}  // namespace

void lsh_hash(Executor& ex, Workspace& ws, const LshHashArgs& a) {
  const ScopedLauncherTimer timer(ex, "lsh hash and sort");
  if (a.seq_len == 0 || a.batch == 0 || a.heads == 0) return;  // (no position to hash)
  const int64_t cols = a.n_rounds * a.factors.rotation_cols();
  const int64_t segments = a.batch * a.heads, per_segment = a.d * cols;
  // Every segment's rotation [d, cols] ~ N(0, 1), new for every step, example and head, in one
  // launch (rotations are small beside the queries: cols is about n_rounds * seq_len / bucket).
  float* rotations = ws.floats("lsh.rotation", segments * per_segment);
  ex.run(segments * per_segment, LshRotationFill{rotations, a.rotation, a.heads, per_segment});
  // Projections of a block of positions of a group of segments at a time, kHashBlockRows rows in
  // all: [seq_len, cols] per segment would be the largest buffer of a long sequence (1.5 GB at
  // 2^20 tokens with 32768 factorised buckets). Each group's buckets are one launch.
  const int64_t block = std::min<int64_t>(a.seq_len, kHashBlockRows);
  const int64_t group = std::min<int64_t>(segments, std::max<int64_t>(1, kHashBlockRows / block));
  float* projected = ws.floats("lsh.projected", group * block * cols);
  const bool batched = ex.device() == Device::kCuda;
  for (int64_t first = 0; first < a.seq_len; first += block) {
    const int64_t rows = std::min(block, a.seq_len - first);
    for (int64_t g0 = 0; g0 < segments; g0 += group) {
      const int64_t g1 = std::min(segments, g0 + group);
      for (int64_t s = g0; s < g1;) {
        const int64_t b = s / a.heads, h = s % a.heads;
        const int64_t count = batched ? std::min(g1 - s, a.heads - h) : 1;
        project(ex, a, b, h, count, first, rows, rotations + s * per_segment,
                projected + (s - g0) * rows * cols);
        s += count;
      }
      LshHash hash{};
      hash.projected = projected;
      hash.ldp = cols;
      hash.buckets = a.buckets + g0 * a.n_rounds * a.seq_len;
      hash.seq_len = a.seq_len;
      hash.first = first;
      hash.rows = rows;
      hash.factors = a.factors;
      hash.entries = g1 - g0;
      hash.bucket_stride = a.n_rounds * a.seq_len;
      ex.run(a.n_rounds * hash.entries * rows, hash);
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
