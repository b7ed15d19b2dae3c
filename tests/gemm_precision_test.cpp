// Tests of the products on the CPU: fp32 products of every transpose against the reference where
// the executor cuts them into blocks or runs them as matrix-vector products; bf16 rounding (the
// scalar rule and AVX512-BF16's), oneDNN's bf16 products against the product of rounded operands,
// bf16 operands written by kernels, the rounding cache's reuse, and the same bits with any thread
// count at fp32 and bf16.
// Where the CPU has no bf16 dot-product instructions the bf16 cases skip, saying so.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <ostream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "kernels/cpu/bf16_gemm.h"
#include "kernels/cpu/onednn_matmul.h"
#include "kernels/cpu/openblas_blocks.h"
#include "kernels/linear.h"
#include "kernels/ops/bf16_round.h"
#include "tests/test_util.h"

namespace rf {

// Names the precision in test listings ("CpuPrecisions/ThreadCountTest.../fp32"), where
// GoogleTest would print the enum's bytes, which ctest then takes into the test's name.
// (static rather than in an unnamed namespace: GoogleTest finds PrintTo by argument-dependent
// lookup in the type's namespace, which does not look into an unnamed one)
// NOLINTNEXTLINE(misc-use-anonymous-namespace)
static void PrintTo(GemmPrecision p, std::ostream* out) {
  *out << precision_name(p);
}

namespace {

using selftest::reference_gemm;
using test::cpu;

TEST(Bf16, RoundsToNearestWithTiesToEven) {
  const float one = 1.0f, ulp = 1.0f / 128;  // bf16 keeps 7 mantissa bits: 1 + 1/128 is next
  const std::vector<float> x = {one,
                                one + ulp / 4,      // below half: down
                                one + ulp * 3 / 4,  // above half: up
                                one + ulp / 2,      // tie, even below: down to 1
                                one + ulp * 3 / 2,  // tie, odd below: up to 1 + 2 ulp
                                -2.5f,              // exact
                                std::nanf(""),      // stays NaN
                                3.0e38f};           // rounds up to the largest finite or inf
  std::vector<uint16_t> y(x.size());
  round_to_bf16(x.data(), y.data(), static_cast<int64_t>(x.size()));
  EXPECT_EQ(bf16_value(y[0]), one);
  EXPECT_EQ(bf16_value(y[1]), one);
  EXPECT_EQ(bf16_value(y[2]), one + ulp);
  EXPECT_EQ(bf16_value(y[3]), one);
  EXPECT_EQ(bf16_value(y[4]), one + 2 * ulp);
  EXPECT_EQ(bf16_value(y[5]), -2.5f);
  EXPECT_TRUE(std::isnan(bf16_value(y[6])));
  EXPECT_GT(bf16_value(y[7]), 2.9e38f);
}

// The vectorised rounding (AVX512-BF16 where the CPU has it) gives the scalar rule's bits for
// every kind of value: random bit patterns, subnormals (which the instruction would read as zero),
// zeros, infinities, NaNs, values that round up to infinity; a length that is not a multiple of
// the 32-value blocks.
TEST(Bf16, VectorisedRoundingGivesTheScalarRulesBits) {
  std::mt19937 gen(17);
  std::vector<uint32_t> bits(100003);
  for (uint32_t& b : bits) b = static_cast<uint32_t>(gen());
  const std::vector<uint32_t> special = {0x00000000u, 0x80000000u, 0x00000001u, 0x807FFFFFu,
                                         0x00400000u, 0x7F800000u, 0xFF800000u, 0x7FC00001u,
                                         0x7F800001u, 0x7F7FFFFFu, 0x3F808000u, 0x3F818000u};
  for (size_t i = 0; i < special.size(); ++i) bits[1000 + 37 * i] = special[i];
  for (size_t i = 5000; i < 5100; ++i) bits[i] &= 0x807FFFFFu;  // a run of subnormals
  std::vector<float> x(bits.size());
  std::memcpy(x.data(), bits.data(), bits.size() * sizeof(float));
  std::vector<uint16_t> y(x.size());
  round_to_bf16(x.data(), y.data(), static_cast<int64_t>(x.size()));
  int64_t mismatches = 0;
  for (size_t i = 0; i < x.size(); ++i) mismatches += y[i] != bf16_bits(x[i]);
  EXPECT_EQ(mismatches, 0);
}

// bf16 products (oneDNN) for every transpose combination, alpha and beta: they must equal the
// exact product of the bf16-rounded operands (up to fp32 accumulation), and differ from the
// unrounded one by about bf16's precision, which shows the operands really were rounded.
class Bf16GemmTest : public ::testing::TestWithParam<std::tuple<bool, bool>> {};

TEST_P(Bf16GemmTest, EqualsTheProductOfRoundedOperands) {
  const auto [ta, tb] = GetParam();
  std::string skip_reason;
  const std::unique_ptr<Executor> bf16 = test::bf16_cpu_or_skip_reason(&skip_reason);
  if (!bf16) GTEST_SKIP() << skip_reason;
  auto rounded = [](std::vector<float> v) {
    std::vector<uint16_t> bits(v.size());
    round_to_bf16(v.data(), bits.data(), static_cast<int64_t>(v.size()));
    for (size_t i = 0; i < v.size(); ++i) v[i] = bf16_value(bits[i]);
    return v;
  };
  // A small product (oneDNN on all threads), and thin deep ones that run in blocks
  // (kThinBf16Plan): one block in three 1024-deep slices, the last short; with B untransposed
  // also three blocks of the whole depth.
  for (const auto& [m, n, k] :
       {std::tuple{37, 29, 67}, std::tuple{37, 200, 2100}, std::tuple{37, 800, 1000}}) {
    if (tb && n > 256) continue;
    const GemmDesc d = test::padded_gemm_desc(ta, tb, m, n, k, 1, 0.75f, 0.5f);
    ASSERT_EQ(block_plan(d, OperandType::kBf16).has_value(), k > 512);
    const auto a = test::random_vector(d.stride_a, 11), b = test::random_vector(d.stride_b, 12);
    const auto c0 = test::random_vector(d.stride_c, 13);
    const auto got = test::gemm_result(*bf16, d, a, b, c0);
    const std::string what = std::to_string(m) + "x" + std::to_string(n) + "x" + std::to_string(k);
    // (fp32 accumulation: its rounding grows with the depth)
    EXPECT_LT(test::max_abs_diff(got, reference_gemm(d, rounded(a), rounded(b), c0)), 3e-7f * k)
        << what;
    const float rounding_effect = test::max_abs_diff(got, reference_gemm(d, a, b, c0));
    EXPECT_GT(rounding_effect, 1e-4f) << what;
    EXPECT_LT(rounding_effect, 0.1f * k / 67) << what;
  }
  EXPECT_NE(bf16->describe().find("bf16"), std::string::npos) << bf16->describe();
}

INSTANTIATE_TEST_SUITE_P(AllTransposes, Bf16GemmTest,
                         ::testing::Combine(::testing::Bool(), ::testing::Bool()));

// An operand a kernel wrote in bf16 (OperandType::kBf16) gives the bits the product gives when
// it rounds the fp32 operand itself, for either operand, every transpose, alpha and beta.
TEST_P(Bf16GemmTest, TakesBf16OperandsAsItsOwnRoundingOfThem) {
  const auto [ta, tb] = GetParam();
  std::string skip_reason;
  const std::unique_ptr<Executor> bf16 = test::bf16_cpu_or_skip_reason(&skip_reason);
  if (!bf16) GTEST_SKIP() << skip_reason;
  ASSERT_TRUE(bf16->gemm_takes_bf16_operands());
  const GemmDesc d = test::padded_gemm_desc(ta, tb, 37, 29, 67, 1, 0.75f, 0.5f);
  const auto a = test::random_vector(d.stride_a, 14), b = test::random_vector(d.stride_b, 15);
  const auto c0 = test::random_vector(d.stride_c, 16);
  auto bits_of = [&](const std::vector<float>& v) {
    const std::vector<uint16_t> bits = test::bf16_bits_of(v);
    DeviceBuffer<uint16_t> on_device(*bf16, bits.size());
    bf16->upload(on_device.data(), bits.data(), bits.size() * sizeof(uint16_t));
    return on_device;
  };
  const DeviceBuffer<uint16_t> a16 = bits_of(a), b16 = bits_of(b);
  DeviceBuffer<float> da(*bf16, a.size()), db(*bf16, b.size());
  da.upload(a);
  db.upload(b);
  const auto want = test::gemm_result(*bf16, d, a, b, c0);
  for (int operands = 1; operands <= 3; ++operands) {  // A, B, both in bf16
    GemmDesc typed = d;
    if (operands & 1) typed.a_type = OperandType::kBf16;
    if (operands & 2) typed.b_type = OperandType::kBf16;
    DeviceBuffer<float> dc(*bf16, c0.size());
    dc.upload(c0);
    bf16->gemm(typed, (operands & 1) ? static_cast<const void*>(a16.data()) : da.data(),
               (operands & 2) ? static_cast<const void*>(b16.data()) : db.data(), dc.data());
    EXPECT_EQ(dc.download(), want) << "bf16 operands " << operands;
  }
}

// With reuse on, an operand read as a block of a wider matrix (one head's columns, as the LSH
// hash's products read them) is rounded only where the product reads it, so the cache may hand
// that rounding only to a later product reading the same block, never to one that reads the whole
// matrix from the same address (which would multiply values never rounded).
TEST(Bf16, ReusesAStridedOperandOnlyForWhatItRounded) {
  set_operand_reuse_checks(true);
  std::string skip_reason;
  const std::unique_ptr<Executor> bf16 = test::bf16_cpu_or_skip_reason(&skip_reason);
  set_operand_reuse_checks(false);
  if (!bf16) GTEST_SKIP() << skip_reason;
  const int64_t ld = 48, block = 16, cols = 20, n = 7;
  // A [block or ld, cols] at the same address with lda = ld; B [cols, n]; C [rows, n].
  auto desc = [&](int64_t rows) {
    GemmDesc d;
    d.m = rows;
    d.n = n;
    d.k = cols;
    d.lda = ld;
    d.ldb = cols;
    d.ldc = rows;
    d.stride_a = ld * cols;
    d.stride_b = cols * n;
    d.stride_c = rows * n;
    return d;
  };
  const auto a = test::random_vector(ld * cols, 41), b = test::random_vector(cols * n, 42);
  DeviceBuffer<float> da(*bf16, a.size()), db(*bf16, b.size());
  da.upload(a);
  db.upload(b);
  auto product = [&](int64_t rows) {
    DeviceBuffer<float> dc(*bf16, static_cast<size_t>(rows * n));
    bf16->gemm(desc(rows), da.data(), db.data(), dc.data());
    return dc.download();
  };
  const auto block_alone = product(block), whole_alone = product(ld);
  const int64_t reuses_before = checked_operand_reuses();
  {
    const GemmOperandReuse reuse(*bf16);
    EXPECT_EQ(product(block), block_alone);
    EXPECT_EQ(product(ld), whole_alone);  // not the block's rounding
    EXPECT_EQ(product(block), block_alone);
  }
  // B each time after the first, and the block's A once the whole matrix is rounded: a rounding
  // that covers the block's values serves it.
  EXPECT_EQ(checked_operand_reuses() - reuses_before, 3);
}

// The training step's bits must not depend on the thread count. oneDNN splits deep products'
// sums across threads in a way that does (k = 1024 differed between 1 and 2 threads at bf16; at
// fp32, k = 4096 at 8 threads, and k = 1500 with a small output even in slices of 512), so the
// CPU's oneDNN products run deeper sums as slices of thread_independent_depth: the model's deep
// shapes (the feed-forward's second product, weight
// gradients over 1K and 4K rows, accumulating) and a ragged depth give the same bits with 1, 2, 3,
// 4 and 8 threads, at fp32 (oneDNN for single products on AVX-512 CPUs, OpenBLAS otherwise, in
// blocks the executor cuts) and at bf16.
// (The shallow shapes below, the feed-forward's first product and its weight gradient, the LSH
// rotations and the projections' weight gradient, are here because oneDNN 2.6's AVX2 fp32 matmul
// split them between threads so that 3 threads gave other bits, even at depth 64: 2026-12-06 on
// an AMD EPYC, where it ran NN and TN 1024 x 1024 x 256 at 71 against OpenBLAS's 47 GFLOP/s.)
class ThreadCountTest : public ::testing::TestWithParam<GemmPrecision> {};

TEST_P(ThreadCountTest, ProductsGiveTheSameBitsWithAnyThreadCount) {
  const GemmPrecision precision = GetParam();
  std::string skip_reason;
  if (precision == GemmPrecision::kBf16 && !test::bf16_cpu_or_skip_reason(&skip_reason))
    GTEST_SKIP() << skip_reason;
  const int threads_before = omp_get_max_threads();
  struct Shape {
    bool ta, tb;
    int64_t m, n, k;
    float beta;
  };
  const Shape shapes[] = {
      {false, false, 256, 1024, 1024, 0.0f}, {false, true, 1024, 256, 1024, 1.0f},
      {false, true, 256, 256, 4096, 1.0f},   {false, false, 256, 256, 4096, 1.0f},
      {true, false, 256, 256, 4096, 0.0f},   {true, false, 256, 64, 1500, 0.5f},
      {false, false, 64, 48, 4096, 0.0f},  // (an output of one block)
      {false, false, 1024, 1024, 256, 0.0f}, {true, false, 1024, 1024, 256, 1.0f},
      {false, false, 128, 4096, 64, 0.0f},   {true, false, 256, 4096, 256, 0.0f},
      {true, false, 512, 1024, 8192, 0.0f},   // the loss head's at a vocabulary of 8K: at fp32
      {false, true, 8192, 512, 1024, 1.0f}};  // in blocks (OnednnMatmul::multiply_in_blocks)
  for (const Shape& s : shapes) {
    GemmDesc d = test::padded_gemm_desc(s.ta, s.tb, s.m, s.n, s.k, 1, 1.0f, s.beta);
    d.lda = s.ta ? s.k : s.m;  // packed, as the model's matrices are (oneDNN treats padded
    d.ldb = s.tb ? s.n : s.k;  // rows differently)
    d.ldc = s.m;
    d.stride_a = d.lda * (s.ta ? s.m : s.k);
    d.stride_b = d.ldb * (s.tb ? s.k : s.n);
    d.stride_c = d.ldc * s.n;
    const auto a = test::random_vector(d.stride_a, 17), b = test::random_vector(d.stride_b, 18);
    const auto c0 = test::random_vector(d.stride_c, 19);
    std::vector<float> one_thread;
    for (int threads : {1, 2, 3, 4, 8}) {
      const std::unique_ptr<Executor> ex = make_cpu_executor(threads, precision);
      const auto got = test::gemm_result(*ex, d, a, b, c0);
      if (threads == 1)
        one_thread = got;
      else
        EXPECT_EQ(got, one_thread)
            << precision_name(precision) << (s.ta ? " T" : " N") << (s.tb ? "T" : "N") << " m "
            << s.m << " n " << s.n << " k " << s.k << ", " << threads << " threads";
    }
  }
  omp_set_num_threads(threads_before);
}

INSTANTIATE_TEST_SUITE_P(CpuPrecisions, ThreadCountTest,
                         ::testing::Values(GemmPrecision::kFp32, GemmPrecision::kBf16));

// oneDNN products in fixed blocks (OnednnMatmul::multiply_in_blocks, which the loss head's large
// products take): every transpose, padded leading dimensions, alpha and beta (beta = 0 over a C
// full of NaN), several depth slices with a short last one, output blocks along either side with
// a short last one, one slice alone, and a depth that the 16-slice cap deepens; within fp32
// rounding of the reference, and the same bits on 1, 2, 3 and 8 threads. A small plan stands for
// kLargeProductPlan here, whose products would take seconds to check.
TEST(OnednnBlocks, ProductsInBlocksMatchTheReferenceWithTheSameBitsOnAnyThreadCount) {
  const int threads_before = omp_get_max_threads();
  struct Shape {
    int64_t m, n, k;
    BlockPlan plan;
  };
  uint32_t seed = 70;
  int checked = 0;
  for (const Shape& s : {Shape{70, 90, 700, {256, 32}}, Shape{130, 40, 300, {256, 32}},
                         Shape{48, 64, 200, {256, 32}},
                         Shape{40, 50, 700, {16, 32}}})  // (44 slices of 16: 16 of 44 instead)
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (const auto& [alpha, beta] : {std::pair{1.0f, 0.0f}, std::pair{0.75f, 0.5f}}) {
          const GemmDesc d = test::padded_gemm_desc(ta, tb, s.m, s.n, s.k, 1, alpha, beta);
          const auto a = test::random_vector(d.stride_a, ++seed);
          const auto b = test::random_vector(d.stride_b, ++seed);
          auto c0 = test::random_vector(d.stride_c, ++seed);
          const auto expected = reference_gemm(d, a, b, c0);
          if (beta == 0.0f) std::fill(c0.begin(), c0.end(), std::nanf(""));
          std::vector<float> one_thread;
          for (int threads : {1, 2, 3, 8}) {
            omp_set_num_threads(threads);
            OnednnMatmul matmul(OperandType::kFp32);
            std::vector<float> got = c0;
            matmul.multiply_in_blocks(d, a.data(), b.data(), got.data(), s.plan);
            const std::string what = std::string(ta ? "T" : "N") + (tb ? "T" : "N") + " " +
                                     std::to_string(s.m) + "x" + std::to_string(s.n) + "x" +
                                     std::to_string(s.k) + " beta " + std::to_string(beta) + ", " +
                                     std::to_string(threads) + " threads";
            if (threads == 1) {
              one_thread = got;
              float worst = 0.0f;
              for (int64_t col = 0; col < s.n; ++col)
                for (int64_t row = 0; row < s.m; ++row) {
                  const int64_t e = col * d.ldc + row;
                  worst =
                      std::max(worst, std::isnan(got[e]) ? 1e30f : std::abs(got[e] - expected[e]));
                }
              EXPECT_LT(worst, 1e-4f) << what;
              ++checked;
            } else {  // (bit for bit: the padding between C's columns holds NaN at beta = 0)
              EXPECT_EQ(std::memcmp(got.data(), one_thread.data(), got.size() * sizeof(float)), 0)
                  << what;
            }
          }
        }
  omp_set_num_threads(threads_before);
  EXPECT_EQ(checked, 4 * 4 * 2);
}

// Which products run in blocks, and in which plan: the loss head's at vocabularies of 8K and 32K
// (every one of its three products) at fp32; thin deep bf16 products (an output side of at most
// 256; several blocks of one slice with B untransposed, or one block and several slices: the
// reference model's feed-forward products and weight gradients, 64K tokens' included); not the
// model's own fp32 products, not bf16 products of depth 512 or less, with both output sides 512 or
// more (the GEMM rate's 2048^3 probe), with a transposed B cut into blocks, of several blocks and
// several slices, or of one block and one slice.
TEST(OnednnBlocks, TheLossHeadsLargeAndThinDeepBf16ProductsRunInBlocks) {
  auto desc = [](bool ta, bool tb, int64_t m, int64_t n, int64_t k) {
    return test::padded_gemm_desc(ta, tb, m, n, k, 1, 1.0f, 0.0f);
  };
  auto plan_of = [](const GemmDesc& d, OperandType operands) {
    const std::optional<BlockPlan> plan = block_plan(d, operands);
    return plan ? std::pair{plan->slice_depth, plan->block} : std::pair<int64_t, int64_t>{0, 0};
  };
  const std::pair large{kLargeProductPlan.slice_depth, kLargeProductPlan.block};
  const std::pair thin{kThinBf16Plan.slice_depth, kThinBf16Plan.block};
  const std::pair<int64_t, int64_t> none{0, 0};
  for (int64_t vocab : {8192, 32768}) {
    EXPECT_EQ(plan_of(desc(true, false, 512, 1024, vocab), OperandType::kFp32), large) << vocab;
    EXPECT_EQ(plan_of(desc(false, true, vocab, 512, 1024), OperandType::kFp32), large) << vocab;
    EXPECT_EQ(plan_of(desc(false, false, vocab, 1024, 512), OperandType::kFp32), large) << vocab;
    EXPECT_EQ(plan_of(desc(true, false, 512, 1024, vocab), OperandType::kBf16), none) << vocab;
  }
  EXPECT_EQ(plan_of(desc(false, true, 256, 256, 65536), OperandType::kFp32), none);
  EXPECT_EQ(plan_of(desc(false, false, 1024, 1024, 256), OperandType::kFp32), none);
  EXPECT_EQ(plan_of(desc(false, false, 256, 1024, 1024), OperandType::kFp32), none);
  EXPECT_EQ(plan_of(desc(true, false, 512, 1024, 4096), OperandType::kFp32), none);
  EXPECT_EQ(plan_of(desc(false, false, 2048, 2048, 2048), OperandType::kFp32), none);

  EXPECT_EQ(plan_of(desc(false, false, 256, 1024, 1024), OperandType::kBf16), thin);
  EXPECT_EQ(plan_of(desc(true, false, 256, 1024, 1024), OperandType::kBf16), thin);
  EXPECT_EQ(plan_of(desc(false, true, 1024, 256, 1024), OperandType::kBf16), none);
  EXPECT_EQ(plan_of(desc(false, true, 256, 1024, 1024), OperandType::kBf16), none);
  EXPECT_EQ(plan_of(desc(true, false, 1024, 256, 1024), OperandType::kBf16), thin);
  EXPECT_EQ(plan_of(desc(false, true, 256, 256, 4096), OperandType::kBf16), thin);
  EXPECT_EQ(plan_of(desc(false, true, 256, 256, 65536), OperandType::kBf16), thin);
  EXPECT_EQ(plan_of(desc(false, false, 64, 4096, 600), OperandType::kBf16), thin);
  EXPECT_EQ(plan_of(desc(false, false, 1024, 1024, 256), OperandType::kBf16), none);
  EXPECT_EQ(plan_of(desc(false, false, 256, 4096, 512), OperandType::kBf16), none);
  EXPECT_EQ(plan_of(desc(false, false, 512, 1024, 1024), OperandType::kBf16), none);
  EXPECT_EQ(plan_of(desc(false, false, 2048, 2048, 2048), OperandType::kBf16), none);
  EXPECT_EQ(plan_of(desc(false, false, 256, 1024, 4096), OperandType::kBf16), none);
  EXPECT_EQ(plan_of(desc(true, false, 256, 4096, 2048), OperandType::kBf16), none);
  EXPECT_EQ(plan_of(desc(false, true, 256, 256, 1024), OperandType::kBf16), none);
}

TEST(Bf16, OperandsInBf16AreRefusedWhereProductsDoNotRoundToIt) {
  EXPECT_FALSE(cpu().gemm_takes_bf16_operands());
  GemmDesc d = test::padded_gemm_desc(false, false, 4, 3, 2, 1, 1.0f, 0.0f);
  d.a_type = OperandType::kBf16;
  DeviceBuffer<float> a(cpu(), d.stride_a), b(cpu(), d.stride_b), c(cpu(), d.stride_c);
  EXPECT_THROW(cpu().gemm(d, a.data(), b.data(), c.data()), Error);
  d.batch = 2;  // and never in a batch of products
  EXPECT_NE(gemm_desc_problem(d).find("bf16"), std::string::npos);
}

TEST(Bf16, TensorFloat32IsRefusedOnTheCpu) {
  EXPECT_THROW(make_cpu_executor(0, GemmPrecision::kTf32), Error);
}

// The CPU's product of one shape, every transpose, each (alpha, beta), against the reference on
// C's own elements (the padding between its columns is neither read nor written); beta = 0 gets a
// C full of NaN, which must not leak through. Returns how many products it compared.
int expect_products_match_reference(
    const std::vector<std::tuple<int64_t, int64_t, int64_t>>& shapes,
    const std::vector<std::pair<float, float>>& scalings, uint32_t seed) {
  int checked = 0;
  for (const auto& [m, n, k] : shapes)
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (const auto& [alpha, beta] : scalings) {
          const GemmDesc d = test::padded_gemm_desc(ta, tb, m, n, k, 1, alpha, beta);
          EXPECT_EQ(gemm_desc_problem(d), "");
          const auto a = test::random_vector(d.stride_a, ++seed);
          const auto b = test::random_vector(d.stride_b, ++seed);
          auto c0 = test::random_vector(d.stride_c, ++seed);
          const auto expected = reference_gemm(d, a, b, c0);  // (beta = 0: c0 does not count)
          if (beta == 0.0f)
            std::fill(c0.begin(), c0.end(), std::numeric_limits<float>::quiet_NaN());
          auto da = test::to_device(a), db = test::to_device(b), dc = test::to_device(c0);
          cpu().gemm(d, da.data(), db.data(), dc.data());
          const auto got = dc.download();
          float worst = 0.0f;
          for (int64_t col = 0; col < n; ++col)
            for (int64_t row = 0; row < m; ++row) {
              const int64_t e = col * d.ldc + row;
              worst = std::max(worst, std::isnan(got[e]) ? 1e30f : std::abs(got[e] - expected[e]));
            }
          EXPECT_LT(worst, 1e-4f) << m << "x" << n << "x" << k << " ta " << ta << " tb " << tb
                                  << " alpha " << alpha << " beta " << beta;
          ++checked;
        }
  return checked;
}

// A product with one column or one row of C runs as OpenBLAS's matrix-vector product on the CPU
// (a decode step's single row): every transpose, strided vectors (padded leading dimensions),
// alpha of either sign, and beta = 0 over a C full of NaN.
TEST(GemmDesc, VectorShapedProductsMatchTheReference) {
  EXPECT_EQ(
      expect_products_match_reference({{7, 1, 9}, {1, 5, 9}, {1, 1, 9}, {130, 1, 70}, {1, 130, 70}},
                                      {{1.0f, 0.0f}, {-1.0f, 1.0f}, {0.75f, 0.5f}}, 40),
      5 * 4 * 3);
}

// Products large enough for the CPU to cut into blocks of the output (strips of at least 64 of
// the longer side, kernels/cpu/openblas_blocks.h), with short last blocks: a last strip of one
// column or one row runs as a matrix-vector product at an offset into C.
TEST(GemmDesc, ProductsCutIntoBlocksMatchTheReference) {
  EXPECT_EQ(expect_products_match_reference(
                {{65, 200, 3}, {300, 330, 20}, {200, 65, 5}, {70, 129, 3}, {129, 70, 3}},
                {{0.75f, 0.0f}, {0.75f, 0.5f}}, 90),
            5 * 4 * 2);
}

// The OpenBLAS cut (kernels/cpu/openblas_blocks.h): 4 blocks on machines of up to 4 CPUs, 8 up to
// 8, 16 beyond or when the count is unknown; widths are multiples of 64 that cover the extent in
// at most that many blocks (the reference model's 1,024 rows in 4 blocks of 256 on two cores).
TEST(OpenblasBlocks, TheCutDependsOnTheShapeAndTheMachinesCpuCountOnly) {
  EXPECT_EQ(cpu::openblas_block_count(1), 4);
  EXPECT_EQ(cpu::openblas_block_count(2), 4);
  EXPECT_EQ(cpu::openblas_block_count(4), 4);
  EXPECT_EQ(cpu::openblas_block_count(5), 8);
  EXPECT_EQ(cpu::openblas_block_count(8), 8);
  EXPECT_EQ(cpu::openblas_block_count(9), 16);
  EXPECT_EQ(cpu::openblas_block_count(192), 16);
  EXPECT_EQ(cpu::openblas_block_count(0), 16);
  EXPECT_EQ(cpu::openblas_block_count(-1), 16);  // (sysconf's failure)
  EXPECT_EQ(cpu::openblas_block_width(1024, 4), 256);
  EXPECT_EQ(cpu::openblas_block_width(1024, 16), 64);
  EXPECT_EQ(cpu::openblas_block_width(4096, 4), 1024);
  EXPECT_EQ(cpu::openblas_block_width(4096, 16), 256);
  EXPECT_EQ(cpu::openblas_block_width(330, 4), 128);
  EXPECT_EQ(cpu::openblas_block_width(200, 4), 64);
  EXPECT_EQ(cpu::openblas_block_width(1, 4), 64);
  for (int64_t count : {4, 8, 16})
    for (int64_t extent = 1; extent <= 5000; ++extent) {
      const int64_t width = cpu::openblas_block_width(extent, count);
      ASSERT_TRUE(width >= 64 && width % 64 == 0 && (extent + width - 1) / width <= count)
          << "extent " << extent << ", " << count << " blocks: width " << width;
      // (No narrower multiple of 64 would do: the blocks are as wide as they need to be.)
      if (width > 64) {
        ASSERT_GT((extent + width - 65) / (width - 64), count) << extent;
      }
    }
}

}  // namespace
}  // namespace rf
