// Small fp32 products of attention tiles through libxsmm's JIT-generated kernels (C (+)= A B,
// row-major), with kernels/cpu/tile_gemm.h's register-blocked loops where libxsmm has no kernel.
#pragma once

#include <cstdint>

#include "kernels/cpu/tile_gemm.h"

namespace rf::cpu {

// C (+)= A B by a libxsmm kernel for this shape and these strides (A [m, k] row-major, or stored
// transposed as [k, m] when transposed_a); false when libxsmm made none (nothing written), and
// always in builds without libxsmm (CPUs other than x86).
bool libxsmm_product(bool transposed_a, int64_t m, int64_t n, int64_t k, const float* a,
                     int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc,
                     bool accumulate);

// C (+)= A B with A [m, k] stored row by row; n % kTileVector == 0.
inline void small_gemm(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
                       int64_t ldb, float* c, int64_t ldc, bool accumulate) {
  if (!libxsmm_product(false, m, n, k, a, lda, b, ldb, c, ldc, accumulate))
    tile_gemm(m, n, k, a, lda, b, ldb, c, ldc, accumulate);
}

// C (+)= A B with A stored transposed, as at [k, m].
inline void small_gemm_at(int64_t m, int64_t n, int64_t k, const float* at, int64_t ldat,
                          const float* b, int64_t ldb, float* c, int64_t ldc, bool accumulate) {
  if (!libxsmm_product(true, m, n, k, at, ldat, b, ldb, c, ldc, accumulate))
    tile_gemm_at(m, n, k, at, ldat, b, ldb, c, ldc, accumulate);
}

}  // namespace rf::cpu
