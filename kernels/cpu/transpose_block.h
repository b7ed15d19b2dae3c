// A 16 x 16 block of floats gathered from 16 rows and stored transposed, the step that builds a
// query tile's columns for the attention tiles. With AVX-512 (or AVX, as four 8 x 8 blocks) the
// block is transposed in registers (unpacks and lane shuffles) instead of 256 scalar loads and
// strided stores (the scalar loop had 7% of the attention passes' perf samples on an AVX2 EPYC).
#pragma once

#include <cstdint>

#include "kernels/cpu/avx512_intrinsics.h"

#if defined(__AVX__) && !defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace rf::cpu {

#if defined(__AVX__) && !defined(__AVX512F__)
// out[c * ld_out + r] = rows[r][x0 + c] for r, c in [0, 8).
inline void transpose_8x8(const float* const* rows, int64_t x0, float* out, int64_t ld_out) {
  __m256 t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    const __m256 a = _mm256_loadu_ps(rows[i] + x0), b = _mm256_loadu_ps(rows[i + 1] + x0);
    t[i] = _mm256_unpacklo_ps(a, b);  // per 128-bit lane L: a[4L], b[4L], a[4L+1], b[4L+1]
    t[i + 1] = _mm256_unpackhi_ps(a, b);
  }
  // u[4g + k], lane L: element 4L + k of rows 4g .. 4g + 3.
  for (int64_t g = 0; g < 2; ++g) {
    const __m256 *lo = &t[4 * g], *hi = &t[4 * g + 2];
    u[4 * g + 0] = _mm256_shuffle_ps(lo[0], hi[0], _MM_SHUFFLE(1, 0, 1, 0));
    u[4 * g + 1] = _mm256_shuffle_ps(lo[0], hi[0], _MM_SHUFFLE(3, 2, 3, 2));
    u[4 * g + 2] = _mm256_shuffle_ps(lo[1], hi[1], _MM_SHUFFLE(1, 0, 1, 0));
    u[4 * g + 3] = _mm256_shuffle_ps(lo[1], hi[1], _MM_SHUFFLE(3, 2, 3, 2));
  }
  // Column 4L + k: lane L of u[k] (rows 0-3), then lane L of u[4 + k] (rows 4-7).
  for (int k = 0; k < 4; ++k) {
    _mm256_storeu_ps(out + k * ld_out, _mm256_permute2f128_ps(u[k], u[4 + k], 0x20));
    _mm256_storeu_ps(out + (4 + k) * ld_out, _mm256_permute2f128_ps(u[k], u[4 + k], 0x31));
  }
}
#endif

RF_AVX512_INTRINSICS_BEGIN

// out[c * ld_out + r] = rows[r][x0 + c] for r, c in [0, 16).
inline void transpose_16x16(const float* const* rows, int64_t x0, float* out, int64_t ld_out) {
#if defined(__AVX512F__)
  __m512 t[16], u[16];
  for (int i = 0; i < 16; i += 2) {
    const __m512 a = _mm512_loadu_ps(rows[i] + x0), b = _mm512_loadu_ps(rows[i + 1] + x0);
    t[i] = _mm512_unpacklo_ps(a, b);  // per 128-bit lane L: a[4L], b[4L], a[4L+1], b[4L+1]
    t[i + 1] = _mm512_unpackhi_ps(a, b);
  }
  // u[4g + k], lane L: element 4L + k of rows 4g .. 4g + 3.
  for (int64_t g = 0; g < 4; ++g) {
    const __m512 *lo = &t[4 * g], *hi = &t[4 * g + 2];
    u[4 * g + 0] = _mm512_shuffle_ps(lo[0], hi[0], _MM_SHUFFLE(1, 0, 1, 0));
    u[4 * g + 1] = _mm512_shuffle_ps(lo[0], hi[0], _MM_SHUFFLE(3, 2, 3, 2));
    u[4 * g + 2] = _mm512_shuffle_ps(lo[1], hi[1], _MM_SHUFFLE(1, 0, 1, 0));
    u[4 * g + 3] = _mm512_shuffle_ps(lo[1], hi[1], _MM_SHUFFLE(3, 2, 3, 2));
  }
  // Column 4L + k is lane L of u[k], u[4 + k], u[8 + k], u[12 + k], in that order.
  for (int k = 0; k < 4; ++k) {
    const __m512 v0 = _mm512_shuffle_f32x4(u[k], u[4 + k], 0x44);
    const __m512 v1 = _mm512_shuffle_f32x4(u[k], u[4 + k], 0xEE);
    const __m512 w0 = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0x44);
    const __m512 w1 = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0xEE);
    _mm512_storeu_ps(out + (0 + k) * ld_out, _mm512_shuffle_f32x4(v0, w0, 0x88));
    _mm512_storeu_ps(out + (4 + k) * ld_out, _mm512_shuffle_f32x4(v0, w0, 0xDD));
    _mm512_storeu_ps(out + (8 + k) * ld_out, _mm512_shuffle_f32x4(v1, w1, 0x88));
    _mm512_storeu_ps(out + (12 + k) * ld_out, _mm512_shuffle_f32x4(v1, w1, 0xDD));
  }
#elif defined(__AVX__)
  for (int r = 0; r < 16; r += 8)
    for (int c = 0; c < 16; c += 8) transpose_8x8(rows + r, x0 + c, out + c * ld_out + r, ld_out);
#else
  for (int64_t c = 0; c < 16; ++c)
    for (int64_t r = 0; r < 16; ++r) out[c * ld_out + r] = rows[r][x0 + c];
#endif
}

RF_AVX512_INTRINSICS_END

}  // namespace rf::cpu
