// A small row-major GEMM for tiles that stay in the L1/L2 cache (attention blocks of up to 64 x 64
// x 256), C (+)= A B with A [m, k] (or stored transposed, [k, m]), B [k, n], C [m, n]. Register
// blocks of 4 rows by up to four vectors, written with GCC vector extensions sized to the target
// (16 floats with AVX-512, 8 with AVX2) so the compiler emits its widest registers without
// intrinsics. n must be a multiple of kTileVector (callers pad their tiles); m and k are arbitrary.
// Measured on one core of an AVX-512 Xeon (2026-12-01): 161-180 GFLOP/s for [64, 64] x [64|128,
// 32|64], against 174-181 for OpenBLAS 0.3.21's small-matrix kernels and about 180 for its large
// SGEMM. libxsmm's JIT kernels measured faster still (kernels/cpu/small_gemm.h), so these loops
// are now what runs where libxsmm makes no kernel.
#pragma once

#include <cstdint>
#include <cstring>

namespace rf::cpu {

// Floats per vector register of the target; tile widths are multiples of it.
#if defined(__AVX512F__)
constexpr int64_t kTileVector = 16;
constexpr int kWidestBlock = 4;  // vectors per register block: 16 accumulators of 32 registers
#elif defined(__AVX__)
constexpr int64_t kTileVector = 8;
constexpr int kWidestBlock = 2;  // 8 accumulators of 16 registers
#else
constexpr int64_t kTileVector = 4;
constexpr int kWidestBlock = 2;
#endif

using VecF = float __attribute__((vector_size(kTileVector * sizeof(float))));

inline VecF load_vector(const float* p) {
  VecF v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline void store_vector(float* p, VecF v) {
  std::memcpy(p, &v, sizeof(v));
}

// C[rows, kTileVector * vectors] block at (A, B, C) over the full depth k. A's element (r, p) is at
// a[r * lda + p], or at a[p * lda + r] when kTransposedA (A stored as [k, m]).
template <int kRows, int kVectors, bool kTransposedA>
inline void tile_block(int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
                       float* c, int64_t ldc, bool accumulate) {
  VecF acc[kRows][kVectors];
  for (int r = 0; r < kRows; ++r)
    for (int v = 0; v < kVectors; ++v)
      acc[r][v] = accumulate ? load_vector(c + r * ldc + v * kTileVector) : VecF{};
  for (int64_t p = 0; p < k; ++p) {
    VecF bv[kVectors];
    for (int v = 0; v < kVectors; ++v) bv[v] = load_vector(b + p * ldb + v * kTileVector);
    for (int r = 0; r < kRows; ++r) {
      const float x = kTransposedA ? a[p * lda + r] : a[r * lda + p];
      for (int v = 0; v < kVectors; ++v) acc[r][v] += x * bv[v];
    }
  }
  for (int r = 0; r < kRows; ++r)
    for (int v = 0; v < kVectors; ++v) store_vector(c + r * ldc + v * kTileVector, acc[r][v]);
}

template <int kRows, bool kTransposedA>
inline void tile_rows(int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
                      int64_t ldb, float* c, int64_t ldc, bool accumulate) {
  int64_t j = 0;
  for (; j + kWidestBlock * kTileVector <= n; j += kWidestBlock * kTileVector)
    tile_block<kRows, kWidestBlock, kTransposedA>(k, a, lda, b + j, ldb, c + j, ldc, accumulate);
  if (kWidestBlock > 2 && j + 2 * kTileVector <= n) {  // (AVX-512: a 32-float remainder)
    tile_block<kRows, 2, kTransposedA>(k, a, lda, b + j, ldb, c + j, ldc, accumulate);
    j += 2 * kTileVector;
  }
  for (; j + kTileVector <= n; j += kTileVector)
    tile_block<kRows, 1, kTransposedA>(k, a, lda, b + j, ldb, c + j, ldc, accumulate);
}

template <bool kTransposedA>
inline void tile_gemm_impl(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                           const float* b, int64_t ldb, float* c, int64_t ldc, bool accumulate) {
  // Row r of A starts at a + r * lda, or (transposed) at column a + r.
  const int64_t row_step = kTransposedA ? 1 : lda;
  int64_t i = 0;
  for (; i + 4 <= m; i += 4)
    tile_rows<4, kTransposedA>(n, k, a + i * row_step, lda, b, ldb, c + i * ldc, ldc, accumulate);
  for (; i < m; ++i)
    tile_rows<1, kTransposedA>(n, k, a + i * row_step, lda, b, ldb, c + i * ldc, ldc, accumulate);
}

// C (+)= A B with A [m, k] stored row by row; n % kTileVector == 0.
inline void tile_gemm(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
                      int64_t ldb, float* c, int64_t ldc, bool accumulate) {
  tile_gemm_impl<false>(m, n, k, a, lda, b, ldb, c, ldc, accumulate);
}

// C (+)= A B with A stored transposed, as at [k, m] (row p of at holds column p of A).
inline void tile_gemm_at(int64_t m, int64_t n, int64_t k, const float* at, int64_t ldat,
                         const float* b, int64_t ldb, float* c, int64_t ldc, bool accumulate) {
  tile_gemm_impl<true>(m, n, k, at, ldat, b, ldb, c, ldc, accumulate);
}

}  // namespace rf::cpu
