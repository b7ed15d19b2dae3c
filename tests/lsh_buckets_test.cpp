// The LSH hash and the bucket sort (kernels/lsh_buckets.h) against direct definitions: the
// argmax of rotated vectors with factorised buckets, segments hashed side by side against one at a
// time (and the launches that takes), the stable sort by (bucket, position) and the pieces of the
// GPU's sort.
#include "kernels/lsh_buckets.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <vector>

#include "base/philox.h"
#include "kernels/kernel_ops.h"
#include "kernels/linear.h"
#include "tests/test_util.h"

namespace rf {
namespace {

using test::cpu;

TEST(LshHash, ArgmaxOfRotatedVectorsWithFactorisedBuckets) {
  const int64_t T = kHashBlockRows + 37, d = 8, rounds = 2;  // two projection blocks
  BucketFactors f;
  f.count = 2;
  f.size[0] = 4;
  f.size[1] = 6;  // 24 buckets, 2 + 3 rotation columns per round
  const auto qk = test::random_vector(T * d, 9);
  auto dqk = test::to_device(qk);
  DeviceBuffer<int32_t> buckets(cpu(), rounds * T);
  Workspace ws(cpu());
  const RngStream stream = make_rng_stream(3, RngPurpose::kRotation, 0, 0, 0, 0);
  LshHashArgs hash;
  hash.qk = dqk.data();
  hash.ld = d;
  hash.seq_len = T;
  hash.d = d;
  hash.n_rounds = rounds;
  hash.factors = f;
  hash.rotation = stream;
  hash.buckets = buckets.data();
  lsh_hash(cpu(), ws, hash);
  const auto got = buckets.download();
  const int64_t cols = rounds * 5;
  for (int64_t r = 0; r < rounds; ++r)
    for (int64_t t = 0; t < T; ++t) {
      int expected = 0, radix = 1, offset = static_cast<int>(r * 5);
      for (int fi = 0; fi < 2; ++fi) {
        const int half = f.size[fi] / 2;
        std::vector<double> vals;
        for (int j = 0; j < half; ++j) {
          double p = 0;
          for (int64_t c = 0; c < d; ++c) p += qk[t * d + c] * stream.normal(c * cols + offset + j);
          vals.push_back(p);
        }
        for (int j = 0; j < half; ++j) vals.push_back(-vals[j]);
        expected +=
            static_cast<int>(std::max_element(vals.begin(), vals.end()) - vals.begin()) * radix;
        radix *= f.size[fi];
        offset += half;
      }
      EXPECT_EQ(got[r * T + t], expected + r * 24) << "round " << r << " position " << t;
    }
}

// lsh_hash draws every segment's rotation in one launch and hashes a group of segments per launch;
// the buckets must be those of one segment at a time (a fill, a product and a hash each, as it
// ran until 2026-12-05), bit for bit on the CPU.
TEST(LshHash, SegmentsHashedSideBySideGiveTheBucketsOfOneSegmentAtATime) {
  const int64_t batch = 3, heads = 5, T = 5000, d = 16, rounds = 2;  // groups of 3 segments
  const int64_t segments = batch * heads, ld = heads * d;
  BucketFactors f;
  f.size[0] = 8;
  const int64_t cols = rounds * f.rotation_cols();
  const auto qk = test::random_vector(batch * T * ld, 21);
  auto dqk = test::to_device(qk);
  Executor& ex = cpu();
  Workspace ws(ex);
  const RngStream stream = make_rng_stream(4, RngPurpose::kRotation, 7, 2, 3, 0);
  // One segment at a time.
  DeviceBuffer<int32_t> want(ex, segments * rounds * T);
  DeviceBuffer<float> rotation(ex, d * cols), projected(ex, T * cols);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t h = 0; h < heads; ++h) {
      RngStream segment = stream;
      segment.example += static_cast<uint32_t>(b);
      segment.head = static_cast<uint32_t>(h);
      ex.run(d * cols, RandomNormalFill{rotation.data(), segment, 1.0f});
      linear_forward(ex, {dqk.data() + b * T * ld + h * d, T, d, ld},
                     matrix(rotation.data(), d, cols), matrix(projected.data(), T, cols));
      LshHash hash{};
      hash.projected = projected.data();
      hash.ldp = cols;
      hash.buckets = want.data() + (b * heads + h) * rounds * T;
      hash.seq_len = T;
      hash.first = 0;
      hash.rows = T;
      hash.factors = f;
      ex.run(rounds * T, hash);
    }
  // Side by side.
  DeviceBuffer<int32_t> got(ex, segments * rounds * T);
  LshHashArgs a;
  a.qk = dqk.data();
  a.ld = ld;
  a.batch = batch;
  a.heads = heads;
  a.seq_len = T;
  a.d = d;
  a.n_rounds = rounds;
  a.factors = f;
  a.rotation = stream;
  a.buckets = got.data();
  const int64_t launches_before = ex.launches();
  lsh_hash(ex, ws, a);
  const int64_t group = kHashBlockRows / T;  // 3 segments a launch
  ASSERT_EQ(segments % group, 0);
  // One fill, a product per segment (on the CPU), one hash per group.
  EXPECT_EQ(ex.launches() - launches_before, 1 + segments + segments / group);
  EXPECT_EQ(got.download(), want.download());
}

TEST(LshHash, AnEmptySequenceHashesNothing) {
  Workspace ws(cpu());
  LshHashArgs a;
  a.batch = 2;
  a.heads = 3;
  a.seq_len = 0;
  a.d = 8;
  a.ld = 24;
  const int64_t launches_before = cpu().launches();
  lsh_hash(cpu(), ws, a);  // (sizing its groups by the sequence divided by zero)
  EXPECT_EQ(cpu().launches(), launches_before);
}

TEST(LshSort, IsTheStableSortByBucketThenPosition) {
  const int64_t T = 50, rounds = 3, segments = 2, n_buckets = 6;
  std::mt19937 gen(5);
  std::vector<int32_t> buckets(segments * rounds * T);
  for (int64_t s = 0; s < segments; ++s)
    for (int64_t r = 0; r < rounds; ++r)
      for (int64_t t = 0; t < T; ++t)
        buckets[(s * rounds + r) * T + t] = static_cast<int32_t>(gen() % n_buckets + r * n_buckets);
  auto db = test::to_device(buckets);
  DeviceBuffer<int32_t> perm(cpu(), buckets.size()), undo(cpu(), buckets.size());
  Workspace ws(cpu());
  lsh_sort(cpu(), ws,
           test::sort_args(db.data(), perm.data(), undo.data(), segments, T, rounds, n_buckets));
  const auto p = perm.download(), u = undo.download();
  for (int64_t s = 0; s < segments; ++s) {
    std::vector<int32_t> expected(rounds * T);
    std::iota(expected.begin(), expected.end(), 0);
    const int32_t* b = buckets.data() + s * rounds * T;
    std::stable_sort(expected.begin(), expected.end(), [&](int32_t x, int32_t y) {
      return int64_t{b[x]} * T + x % T < int64_t{b[y]} * T + y % T;
    });
    for (int64_t j = 0; j < rounds * T; ++j) {
      EXPECT_EQ(p[s * rounds * T + j], expected[j]);
      EXPECT_EQ(u[s * rounds * T + expected[j]], j);
    }
  }
}

// The pieces the GPU sort is built from (run here by the CPU executor, like every kernel).
TEST(LshSort, GpuSortHelpersComputeOffsetsSlotsAndTheInverse) {
  const int64_t n = 7, segments = 3;
  DeviceBuffer<int32_t> values(cpu(), n * segments), offsets(cpu(), segments + 1);
  cpu().run(n * segments + 1, SegmentSlotsAndOffsets{values.data(), offsets.data(), n, segments});
  const auto v = values.download(), o = offsets.download();
  for (int64_t i = 0; i < n * segments; ++i) EXPECT_EQ(v[i], i % n);
  for (int64_t s = 0; s <= segments; ++s) EXPECT_EQ(o[s], s * n);
  std::vector<int32_t> perm(n * segments);
  std::mt19937 gen(3);
  for (int64_t s = 0; s < segments; ++s) {
    std::iota(perm.begin() + s * n, perm.begin() + (s + 1) * n, 0);
    std::shuffle(perm.begin() + s * n, perm.begin() + (s + 1) * n, gen);
  }
  auto dperm = test::to_device(perm);
  DeviceBuffer<int32_t> undo(cpu(), n * segments);
  cpu().run(n * segments, InvertPermutation{dperm.data(), undo.data(), n});
  const auto u = undo.download();
  for (int64_t s = 0; s < segments; ++s)
    for (int64_t j = 0; j < n; ++j) EXPECT_EQ(u[s * n + perm[s * n + j]], j);
}

}  // namespace
}  // namespace rf
