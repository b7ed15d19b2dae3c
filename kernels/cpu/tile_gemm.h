// A small row-major GEMM for tiles that stay in the L1/L2 cache (attention blocks of up to 64 x 64
// x 256), C (+)= A B with A [m, k] (or stored transposed, [k, m]), B [k, n], C [m, n]. Register
// blocks of 4 rows by up to four 16-float vectors, written with GCC vector extensions so the
// compiler emits AVX-512 (or pairs of AVX2 registers) without intrinsics. n must be a multiple of
// 16 (callers pad their tiles); m and k are arbitrary. Measured on one core of an AVX-512 Xeon
// (2026-12-01): 161-180 GFLOP/s for [64, 64] x [64|128, 32|64], against 174-181 for OpenBLAS
// 0.3.21's small-matrix kernels and about 180 for its large SGEMM; it is inlined into the attention
// loops, with no call or packing.
#pragma once

#include <cstdint>
#include <cstring>

namespace rf::cpu {

constexpr int64_t kTileVector = 16;  // floats per vector; tile widths are multiples of it

using Vec16 = float __attribute__((vector_size(64)));

inline Vec16 load16(const float* p) {
  Vec16 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline void store16(float* p, Vec16 v) {
  std::memcpy(p, &v, sizeof(v));
}

// C[rows, 16 * vectors] block at (A, B, C) over the full depth k. A's element (r, p) is at
// a[r * lda + p], or at a[p * lda + r] when kTransposedA (A stored as [k, m]).
template <int kRows, int kVectors, bool kTransposedA>
inline void tile_block(int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
                       float* c, int64_t ldc, bool accumulate) {
  Vec16 acc[kRows][kVectors];
  for (int r = 0; r < kRows; ++r)
    for (int v = 0; v < kVectors; ++v)
      acc[r][v] = accumulate ? load16(c + r * ldc + v * kTileVector) : Vec16{};
  for (int64_t p = 0; p < k; ++p) {
    Vec16 bv[kVectors];
    for (int v = 0; v < kVectors; ++v) bv[v] = load16(b + p * ldb + v * kTileVector);
    for (int r = 0; r < kRows; ++r) {
      const float x = kTransposedA ? a[p * lda + r] : a[r * lda + p];
      for (int v = 0; v < kVectors; ++v) acc[r][v] += x * bv[v];
    }
  }
  for (int r = 0; r < kRows; ++r)
    for (int v = 0; v < kVectors; ++v) store16(c + r * ldc + v * kTileVector, acc[r][v]);
}

#if defined(__AVX512F__)
constexpr int kWidestBlock = 4;  // 16 accumulators of 32 registers
#else
constexpr int kWidestBlock = 2;  // AVX2: each vector is two of 16 registers
#endif

template <int kRows, bool kTransposedA>
inline void tile_rows(int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
                      int64_t ldb, float* c, int64_t ldc, bool accumulate) {
  int64_t j = 0;
  for (; j + kWidestBlock * kTileVector <= n; j += kWidestBlock * kTileVector)
    tile_block<kRows, kWidestBlock, kTransposedA>(k, a, lda, b + j, ldb, c + j, ldc, accumulate);
  if (kWidestBlock > 2 && j + 2 * kTileVector <= n) {
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

// C (+)= A B with A [m, k] stored row by row; n % 16 == 0.
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
