#include "kernels/cpu/small_gemm.h"

#if RF_WITH_LIBXSMM
#include <libxsmm.h>

#include <array>
#include <climits>

#include "base/error.h"
#endif

namespace rf::cpu {

#if RF_WITH_LIBXSMM
namespace {

// A product's shape, strides and kind: what a libxsmm kernel is generated for.
struct ProductKey {
  int64_t m = -1, n = 0, k = 0, lda = 0, ldb = 0, ldc = 0;
  bool transposed_a = false, accumulate = false;
  bool operator==(const ProductKey& o) const {
    return m == o.m && n == o.n && k == o.k && lda == o.lda && ldb == o.ldb && ldc == o.ldc &&
           transposed_a == o.transposed_a && accumulate == o.accumulate;
  }
};

// libxsmm's sizes are ints; a tile's are far smaller.
libxsmm_blasint blasint(int64_t v) {
  RF_CHECK(v >= 0 && v <= INT32_MAX, "a small product's size ", v, " is beyond libxsmm's int");
  return static_cast<libxsmm_blasint>(v);
}

// libxsmm_smmdispatch looks kernels up in a shared registry; a pass uses a handful of shapes, so
// each thread keeps the last few kernels it asked for.
struct KernelCache {
  static constexpr int kEntries = 16;
  std::array<ProductKey, kEntries> keys;
  std::array<libxsmm_smmfunction, kEntries> kernels{};
  int next = 0;
  libxsmm_smmfunction find(const ProductKey& key) {
    for (int e = 0; e < kEntries; ++e)
      if (keys[e] == key) return kernels[e];
    // Row-major C = A B is column-major C^T = B^T A^T: libxsmm's A is our B, its B our A (its
    // B transposed when ours is stored transposed).
    const libxsmm_blasint m = blasint(key.n), n = blasint(key.m), k = blasint(key.k);
    const libxsmm_blasint lda = blasint(key.ldb), ldb = blasint(key.lda), ldc = blasint(key.ldc);
    const float alpha = 1.0f, beta = key.accumulate ? 1.0f : 0.0f;
    const int flags = key.transposed_a ? LIBXSMM_GEMM_FLAG_TRANS_B : LIBXSMM_GEMM_FLAG_NONE;
    const int prefetch = LIBXSMM_GEMM_PREFETCH_NONE;
    const libxsmm_smmfunction kernel =
        libxsmm_smmdispatch(m, n, k, &lda, &ldb, &ldc, &alpha, &beta, &flags, &prefetch);
    keys[next] = key;
    kernels[next] = kernel;
    next = (next + 1) % kEntries;
    return kernel;
  }
};

}  // namespace

bool libxsmm_product(bool transposed_a, int64_t m, int64_t n, int64_t k, const float* a,
                     int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc,
                     bool accumulate) {
  static thread_local KernelCache cache;
  const libxsmm_smmfunction kernel =
      cache.find(ProductKey{m, n, k, lda, ldb, ldc, transposed_a, accumulate});
  if (!kernel) return false;
  kernel(b, a, c);
  return true;
}

#else  // (a CPU libxsmm does not generate code for: the loops run)

bool libxsmm_product(bool, int64_t, int64_t, int64_t, const float*, int64_t, const float*, int64_t,
                     float*, int64_t, bool) {
  return false;
}

#endif

}  // namespace rf::cpu
