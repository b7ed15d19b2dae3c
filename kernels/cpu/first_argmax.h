// The index of a row's first largest value, as a scan that keeps the first of equal values finds
// it (`if (z[v] > z[best]) best = v`), with AVX-512 vectors: the maximum in registers, then the
// first index holding it (as values: +0 and -0 are one, as for the scan). The cross-entropy's
// prediction at large vocabularies used the scan, a scalar loop the compiler cannot vectorise.
// Rows holding a NaN (which the scan passes over unless it comes first) and rows shorter than a
// vector take the scan.
#pragma once

#include <cstdint>

#include "kernels/cpu/avx512_intrinsics.h"

namespace rf::cpu {

RF_AVX512_INTRINSICS_BEGIN

// The scan itself.
inline int64_t first_argmax_scan(const float* z, int64_t n) {
  float best = z[0];
  int64_t arg = 0;
  for (int64_t v = 1; v < n; ++v)
    if (z[v] > best) best = z[v], arg = v;
  return arg;
}

inline int64_t first_argmax(const float* z, int64_t n) {
#if defined(__AVX512F__)
  if (n >= 16) {
    __m512 hi = _mm512_loadu_ps(z);
    __mmask16 nan = _mm512_cmp_ps_mask(hi, hi, _CMP_UNORD_Q);
    int64_t v = 16;
    for (; v + 16 <= n; v += 16) {
      const __m512 x = _mm512_loadu_ps(z + v);
      hi = _mm512_max_ps(hi, x);
      nan |= _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    }
    const __mmask16 tail = static_cast<__mmask16>((1u << (n - v)) - 1u);
    if (tail) {
      const __m512 x = _mm512_maskz_loadu_ps(tail, z + v);
      hi = _mm512_mask_max_ps(hi, tail, hi, x);
      nan |= _mm512_mask_cmp_ps_mask(tail, x, x, _CMP_UNORD_Q);
    }
    if (!nan) {
      const __m512 target = _mm512_set1_ps(_mm512_reduce_max_ps(hi));
      for (int64_t w = 0; w < n; w += 16) {
        const __mmask16 in =
            n - w >= 16 ? __mmask16{0xFFFF} : static_cast<__mmask16>((1u << (n - w)) - 1u);
        const __mmask16 hit =
            _mm512_mask_cmp_ps_mask(in, _mm512_maskz_loadu_ps(in, z + w), target, _CMP_EQ_OQ);
        if (hit) return w + __builtin_ctz(hit);
      }
    }
  }
#endif
  return first_argmax_scan(z, n);
}

RF_AVX512_INTRINSICS_END

}  // namespace rf::cpu
