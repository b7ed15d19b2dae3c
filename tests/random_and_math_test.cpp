// The numbers every kernel draws or computes with: Philox against its published known-answer
// vectors and its moments, dropout masks drawn in runs (the host's) and a block at a time (a GPU
// thread's) against one element at a time,
// and the fast exp and tanh against libm and against their own clamped and earlier forms, bit
// for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "base/philox.h"
#include "kernels/fast_math.h"
#include "kernels/ops/dropout_mask.h"

namespace rf {
namespace {

TEST(Philox, MatchesRandom123KnownAnswers) {
  // Known-answer vectors of Philox4x32-10 from the Random123 distribution (kat_vectors).
  const Philox4 zero = philox4x32_10({{0, 0, 0, 0}}, 0, 0);
  EXPECT_EQ(zero.v[0], 0x6627e8d5u);
  EXPECT_EQ(zero.v[1], 0xe169c58du);
  EXPECT_EQ(zero.v[2], 0xbc57ac4cu);
  EXPECT_EQ(zero.v[3], 0x9b00dbd8u);
  const Philox4 ones = philox4x32_10({{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}},
                                     0xffffffffu, 0xffffffffu);
  EXPECT_EQ(ones.v[0], 0x408f276du);
  EXPECT_EQ(ones.v[1], 0x41c83b0eu);
  EXPECT_EQ(ones.v[2], 0xa20bc7c6u);
  EXPECT_EQ(ones.v[3], 0x6d5451fdu);
  const Philox4 pi = philox4x32_10({{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}},
                                   0xa4093822u, 0x299f31d0u);
  EXPECT_EQ(pi.v[0], 0xd16cfe09u);
  EXPECT_EQ(pi.v[1], 0x94fdccebu);
  EXPECT_EQ(pi.v[2], 0x5001e420u);
  EXPECT_EQ(pi.v[3], 0x24126ea1u);
}

TEST(FastMath, ExpAndTanhMatchLibm) {
  double worst_exp = 0, worst_tanh = 0;
  // x from -87 to 88 in steps of 2^-9 (each x exact), counted by an integer.
  for (int64_t k = 0;; ++k) {
    const float x = -87.0f + static_cast<float>(k) * 0.001953125f;
    if (x > 88.0f) break;
    const double e = std::exp(static_cast<double>(x));
    worst_exp = std::max(worst_exp, std::fabs(exp_approx(x) - e) / e);
    worst_tanh = std::max(worst_tanh, std::fabs(tanh_approx(x) - std::tanh(double{x})));
  }
  EXPECT_LT(worst_exp, 3e-7);
  EXPECT_LT(worst_tanh, 1e-6);
  EXPECT_EQ(exp_approx(-100.0f), 0.0f);
  EXPECT_EQ(exp_approx(-1e9f), 0.0f);
  // Up to the clamp, where e^x is still a float (2^n alone overflows from x = 88.38 on).
  double worst_top = 0;
  for (int64_t k = 0;; ++k) {
    const float x = 88.0f + static_cast<float>(k) * 0.001953125f;
    if (x > 88.7f) break;
    const double e = std::exp(static_cast<double>(x));
    worst_top = std::max(worst_top, std::fabs(exp_approx(x) - e) / e);
  }
  EXPECT_LT(worst_top, 2e-6);
  EXPECT_EQ(exp_approx(1e9f), exp_approx(88.7f));
  EXPECT_EQ(tanh_approx(50.0f), 1.0f);
  EXPECT_EQ(tanh_approx(-50.0f), -1.0f);
}

// exp_up_to_88 and tanh_approx leave out exp_approx's clamps where they cannot act (so GCC
// vectorises them as one path): the same bits as the clamped forms, on a sweep of every 509th
// float pattern up to 88.37 and at every float near where the clamps would begin, computed in
// arrays so that the vectorised loops are what is compared.
TEST(FastMath, UnclampedFormsGiveTheClampedBits) {
  std::vector<float> x;
  for (uint64_t bits = 0; bits < (uint64_t{1} << 32); bits += 509) {
    const float v = float_from_bits(static_cast<int32_t>(static_cast<uint32_t>(bits)));
    if (v <= 88.37f) x.push_back(v);  // (NaNs drop out here)
  }
  for (const float edge : {-87.3f, -15.0f, 0.0f, 15.0f, 88.37f}) {  // 100,000 floats each side
    float v = edge;
    for (int i = 0; i < 100000; ++i) v = std::nextafter(v, -100.0f);
    for (int i = 0; i < 200000 && v <= 88.37f; ++i) {
      x.push_back(v);
      v = std::nextafter(v, 100.0f);
    }
  }
  for (const float v : {-std::numeric_limits<float>::infinity(), -3.0e38f, -0.0f}) x.push_back(v);
  const size_t n = x.size();
  std::vector<float> clamped(n), unclamped(n), tanh_clamped(n), tanh_unclamped(n);
  for (size_t i = 0; i < n; ++i) clamped[i] = exp_approx(x[i]);
  for (size_t i = 0; i < n; ++i) unclamped[i] = exp_up_to_88(x[i]);
  for (size_t i = 0; i < n; ++i)
    tanh_clamped[i] =
        1.0f - 2.0f / (exp_approx(2.0f * fmin_hd(fmax_hd(x[i], -15.0f), 15.0f)) + 1.0f);
  for (size_t i = 0; i < n; ++i) tanh_unclamped[i] = tanh_approx(x[i]);
  size_t exp_differ = 0, tanh_differ = 0;
  for (size_t i = 0; i < n; ++i) {
    exp_differ += bits_of_float(clamped[i]) != bits_of_float(unclamped[i]);
    tanh_differ += bits_of_float(tanh_clamped[i]) != bits_of_float(tanh_unclamped[i]);
  }
  EXPECT_GT(n, size_t{5000000});
  EXPECT_EQ(exp_differ, 0u) << "of " << n;
  EXPECT_EQ(tanh_differ, 0u) << "of " << n;
  EXPECT_EQ(exp_up_to_88(-std::numeric_limits<float>::infinity()), 0.0f);
  // Past its range (non-finite inputs upstream) it stops at e^88.37, with no undefined
  // behaviour on the way (the sanitizer build runs this).
  EXPECT_EQ(exp_up_to_88(1e30f), exp_up_to_88(88.37f));
  EXPECT_EQ(exp_up_to_88(std::numeric_limits<float>::infinity()), exp_up_to_88(88.37f));
  EXPECT_TRUE(std::isfinite(exp_up_to_88(88.37f)));
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(exp_up_to_88(nan), exp_approx(nan));
}

// exp_approx as it was written until 2026-12-04: 2^n by converting n to an integer.
float exp_by_conversion(float x) {
  const bool underflow = x < -87.3f;
  x = fmin_hd(fmax_hd(x, -87.3f), 88.7f);
  const float n = fmin_hd((x * 1.44269504088896341f + 12582912.0f) - 12582912.0f, 127.0f);
  const float r = x - n * 0.693145751953125f - n * 1.428606765330187e-06f;
  float p = 1.0f / 5040.0f;
  for (const float c : {1.0f / 720.0f, 1.0f / 120.0f, 1.0f / 24.0f, 1.0f / 6.0f, 0.5f, 1.0f, 1.0f})
    p = p * r + c;
  const float e = p * float_from_bits((static_cast<int32_t>(n) + 127) << 23);
  return underflow ? 0.0f : e;
}

// exp_from_rounded reads 2^n from the bits of the rounding sum instead of converting n (cheaper
// on the GPU): the same bits as the conversion, on every 127th float pattern (every exponent),
// every float from -88 to 89 near the points where n steps (x = (k + 1/2) ln2) and the ends.
TEST(FastMath, ExpFromTheRoundingSumsBitsEqualsTheConversion) {
  std::vector<float> x;
  for (uint64_t bits = 0; bits < (uint64_t{1} << 32); bits += 127)
    x.push_back(float_from_bits(static_cast<int32_t>(static_cast<uint32_t>(bits))));
  for (int k = -128; k <= 128; ++k) {
    float v = static_cast<float>((k + 0.5) * 0.6931471805599453);
    for (int i = 0; i < 2000; ++i) v = std::nextafter(v, -1000.0f);
    for (int i = 0; i < 4000; ++i, v = std::nextafter(v, 1000.0f)) x.push_back(v);
  }
  for (const float v : {-87.3f, 88.37f, 88.7f, 1e30f, -1e30f}) x.push_back(v);
  const size_t n = x.size();
  std::vector<float> now(n), before(n);
  for (size_t i = 0; i < n; ++i) now[i] = exp_approx(x[i]);
  for (size_t i = 0; i < n; ++i) before[i] = exp_by_conversion(x[i]);
  size_t differ = 0;
  for (size_t i = 0; i < n; ++i) differ += bits_of_float(now[i]) != bits_of_float(before[i]);
  EXPECT_GT(n, size_t{30000000});
  EXPECT_EQ(differ, 0u) << "of " << n;
  EXPECT_EQ(exp_approx(88.7f), exp_by_conversion(88.7f));
  EXPECT_EQ(exp_approx(-87.0f), exp_by_conversion(-87.0f));
}

TEST(Philox, NormalAndUniformHaveTheRightMoments) {
  const RngStream s = make_rng_stream(7, RngPurpose::kRotation, 3, 11, 5, 2);
  const int n = 200000;
  double sum = 0, sum2 = 0, usum = 0;
  for (int i = 0; i < n; ++i) {
    const double x = s.normal(i);
    sum += x;
    sum2 += x * x;
    const float u = s.uniform(i);
    ASSERT_GE(u, 0.0f);
    ASSERT_LT(u, 1.0f);
    usum += u;
  }
  EXPECT_NEAR(sum / n, 0.0, 0.01);
  EXPECT_NEAR(sum2 / n, 1.0, 0.015);
  EXPECT_NEAR(usum / n, 0.5, 0.005);
}

TEST(Philox, StreamsDifferByEveryCoordinate) {
  const RngStream base = make_rng_stream(1, RngPurpose::kRotation, 0, 0, 0, 0);
  const std::vector<RngStream> others = {
      make_rng_stream(2, RngPurpose::kRotation, 0, 0, 0, 0),
      make_rng_stream(1, RngPurpose::kAttentionDropout, 0, 0, 0, 0),
      make_rng_stream(1, RngPurpose::kRotation, 1, 0, 0, 0),
      make_rng_stream(1, RngPurpose::kRotation, 0, 1, 0, 0),
      make_rng_stream(1, RngPurpose::kRotation, 0, 0, 1, 0),
      make_rng_stream(1, RngPurpose::kRotation, 0, 0, 0, 1)};
  for (const RngStream& o : others) {
    int same = 0;
    for (int i = 0; i < 64; ++i) same += o.bits(i) == base.bits(i);
    EXPECT_LT(same, 2);
  }
}

// A run of a row's multipliers drawn side by side (for_each_scale, the host's path), drawn a
// Philox block at a time (for_each_scale_by_block, a GPU thread's), and pairs of them
// (scale_pair_in), equal the same elements drawn one at a time (scale), from every alignment
// within a block, for runs that start and end mid-block and runs longer than the host's batch of
// 128, in rows past seq_len (the next example's stream).
TEST(Dropout, RunsOfARowEqualTheElementsDrawnOneAtATime) {
  DropoutMask mask;
  mask.keep = 0.7f;
  mask.stream = make_rng_stream(5, RngPurpose::kAttentionDropout, 2, 9, 0, 1);
  mask.example_base = 3;
  mask.seq_len = 11;
  mask.cols = 337;
  mask.row_offset = 4;
  int64_t dropped = 0, compared = 0;
  for (int64_t row : {0, 1, 6, 7, 20}) {
    for (int64_t col = 0; col < 9; ++col) {
      for (int64_t n : {1, 2, 3, 4, 5, 13, 28, 127, 128, 129, 300}) {
        std::vector<float> run(static_cast<size_t>(n), -1.0f);
        mask.for_each_scale(row, col, col + n, [&](int64_t c, float s) { run[c - col] = s; });
        std::vector<float> by_block(static_cast<size_t>(n), -1.0f);
        mask.for_each_scale_by_block(mask.row_of(row), col, col + n,
                                     [&](int64_t c, float s) { by_block[c - col] = s; });
        for (int64_t c = 0; c < n; ++c) {
          ASSERT_EQ(run[static_cast<size_t>(c)], mask.scale(row, col + c))
              << "row " << row << " col " << col << " n " << n << " c " << c;
          ASSERT_EQ(by_block[static_cast<size_t>(c)], mask.scale(row, col + c))
              << "block by block: row " << row << " col " << col << " n " << n << " c " << c;
          if (c + 1 < n) {
            const DropoutMask::Pair pair = mask.scale_pair_in(mask.row_of(row), col + c);
            ASSERT_EQ(pair.first, run[static_cast<size_t>(c)]) << "pair at col " << col + c;
            ASSERT_EQ(pair.second, run[static_cast<size_t>(c + 1)]) << "pair at col " << col + c;
          }
          dropped += run[static_cast<size_t>(c)] == 0.0f;
          ++compared;
        }
      }
    }
  }
  EXPECT_GT(dropped, compared / 5);  // (about 30% dropped: the comparison saw both values)
  EXPECT_LT(dropped, compared / 2);
  mask.keep = 1.0f;  // inactive: all ones
  std::vector<float> run(6, -1.0f);
  mask.for_each_scale(2, 3, 9, [&](int64_t c, float s) { run[c - 3] = s; });
  EXPECT_EQ(run, std::vector<float>(6, 1.0f));
}

}  // namespace
}  // namespace rf
