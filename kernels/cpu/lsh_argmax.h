// The CPU's LSH hash (LshHash in kernels/ops/lsh_hash.h) with each factor's argmax over
// [p ; -p] vectorised: the maximum and minimum of p in AVX-512 registers, then the first index
// holding the winner, which is exactly the functor's strict-greater scan (ties go to the first
// index, and to p over -p). Rows holding a NaN, and factors whose half is not a multiple of 16,
// take the functor's scalar scan.
#pragma once

#include <cstdint>

#include "kernels/cpu/avx512_intrinsics.h"
#include "kernels/ops/lsh_hash.h"

namespace rf::cpu {

RF_AVX512_INTRINSICS_BEGIN

// lsh_factor_argmax (kernels/ops/lsh_hash.h), vectorised.
inline int lsh_argmax(const float* p, int half) {
#if defined(__AVX512F__)
  if (half % 16 == 0) {
    __m512 hi = _mm512_loadu_ps(p), lo = hi;
    __mmask16 nan = _mm512_cmp_ps_mask(hi, hi, _CMP_UNORD_Q);
    for (int j = 16; j < half; j += 16) {
      const __m512 v = _mm512_loadu_ps(p + j);
      hi = _mm512_max_ps(hi, v);
      lo = _mm512_min_ps(lo, v);
      nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    }
    if (!nan) {
      const float largest = _mm512_reduce_max_ps(hi), smallest = _mm512_reduce_min_ps(lo);
      // -smallest wins only if strictly greater; the first index equal to the winner (as
      // values: +0 and -0 are one) is where the scan kept it.
      const bool negated = -smallest > largest;
      const __m512 target = _mm512_set1_ps(negated ? smallest : largest);
      for (int j = 0; j < half; j += 16) {
        const __mmask16 hit = _mm512_cmp_ps_mask(_mm512_loadu_ps(p + j), target, _CMP_EQ_OQ);
        if (hit) return (negated ? half : 0) + j + __builtin_ctz(hit);
      }
    }
  }
#endif
  return lsh_factor_argmax(p, half);
}

// LshHash::operator()(i) with the vectorised argmax.
inline void lsh_hash_row(const LshHash& op, int64_t i) {
  op.hash(i, [](const float* p, int half) { return lsh_argmax(p, half); });
}

RF_AVX512_INTRINSICS_END

}  // namespace rf::cpu
