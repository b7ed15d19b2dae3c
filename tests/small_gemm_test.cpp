// The attention tiles' fp32 products through libxsmm (kernels/cpu/small_gemm.h) against a
// double-precision product: the shapes, strides and layouts the CPU tiles use, including sizes
// that are not multiples of a tile, accumulation, and many threads asking for kernels at once.
#include "kernels/cpu/small_gemm.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace rf {
namespace {

struct Product {
  int64_t m, n, k;
  bool transposed_a, accumulate;
};

// Runs one product with strides wider than the operands and checks every element of C against
// the double-precision sum within fp32 rounding (k roundings of terms at most sum |a b|), and
// that C's columns past n are untouched. Returns the number of wrong elements.
int64_t check_product(const Product& pr, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  const int64_t lda = pr.transposed_a ? pr.m + 5 : pr.k + 3, ldb = pr.n + 16, ldc = pr.n + 32;
  std::vector<float> a((pr.transposed_a ? pr.k : pr.m) * lda), b(pr.k * ldb), c(pr.m * ldc);
  for (float& x : a) x = uniform(gen);
  for (float& x : b) x = uniform(gen);
  for (float& x : c) x = uniform(gen);
  const std::vector<float> c_before = c;
  if (pr.transposed_a)
    cpu::small_gemm_at(pr.m, pr.n, pr.k, a.data(), lda, b.data(), ldb, c.data(), ldc,
                       pr.accumulate);
  else
    cpu::small_gemm(pr.m, pr.n, pr.k, a.data(), lda, b.data(), ldb, c.data(), ldc, pr.accumulate);
  int64_t wrong = 0;
  for (int64_t r = 0; r < pr.m; ++r) {
    for (int64_t j = 0; j < ldc; ++j) {
      const float got = c[r * ldc + j];
      if (j >= pr.n) {
        wrong += got != c_before[r * ldc + j];
        continue;
      }
      double sum = pr.accumulate ? c_before[r * ldc + j] : 0.0;
      double magnitude = std::fabs(sum);
      for (int64_t p = 0; p < pr.k; ++p) {
        const double x = pr.transposed_a ? a[p * lda + r] : a[r * lda + p];
        sum += x * b[p * ldb + j];
        magnitude += std::fabs(x * b[p * ldb + j]);
      }
      const double bound = static_cast<double>(pr.k + 2) * 6e-8 * magnitude + 1e-30;
      wrong += !(std::fabs(got - sum) <= bound);
    }
  }
  return wrong;
}

TEST(SmallGemm, ProductsOfAttentionTilesEqualTheExactProductWithinRounding) {
  uint32_t seed = 1;
  for (int64_t m : {1, 7, 16, 37, 64})
    for (int64_t n : {16, 32, 48, 64, 128})
      for (int64_t k : {1, 9, 32, 64, 72})
        for (bool transposed_a : {false, true})
          for (bool accumulate : {false, true}) {
            const Product pr{m, n, k, transposed_a, accumulate};
            EXPECT_EQ(check_product(pr, seed++), 0)
                << "m " << m << " n " << n << " k " << k << " transposed A " << transposed_a
                << " accumulate " << accumulate;
          }
}

// The tiles' usual shapes get a libxsmm kernel (the speed this path exists for); a CPU where
// libxsmm's JIT made none would fall back to kernels/cpu/tile_gemm.h silently without this.
TEST(SmallGemm, LibxsmmMakesKernelsForTheTilesShapes) {
#if !RF_WITH_LIBXSMM
  GTEST_SKIP() << "built without libxsmm (not an x86 CPU): the tiles run their own loops";
#endif
  const size_t tile = size_t{64} * 64;
  std::vector<float> a(tile, 1.0f), b(tile, 1.0f), c(tile, 0.0f);
  for (bool transposed_a : {false, true})
    for (int64_t n : {16, 32, 64})
      EXPECT_TRUE(cpu::libxsmm_product(transposed_a, 64, n, 64, a.data(), 64, b.data(), 64,
                                       c.data(), 64, false))
          << "n " << n << " transposed A " << transposed_a;
  EXPECT_EQ(c[0], 64.0f);
}

// Threads ask for kernels (each keeps its own cache, libxsmm's registry is shared) while others
// run theirs.
TEST(SmallGemm, ThreadsMakingAndRunningKernelsAtOnceGetRightProducts) {
  int64_t wrong = 0;
#pragma omp parallel for schedule(dynamic, 1) num_threads(4) reduction(+ : wrong)
  for (int64_t i = 0; i < 64; ++i) {
    const Product pr{1 + i % 13, 16 * (1 + i % 5), 1 + (i * 7) % 70, i % 2 == 1, i % 3 == 0};
    wrong += check_product(pr, 1000u + static_cast<uint32_t>(i));
  }
  EXPECT_EQ(wrong, 0);
}

}  // namespace
}  // namespace rf
