// exp and tanh for kernels: a branch-free range reduction and polynomial (relative error below
// 3e-7 over the float range) that the compiler vectorises, unlike glibc's expf/tanhf calls, which
// took a third of a training step. The GPU runs the same arithmetic (no kernel math exists only on
// one executor; docs/architecture.md), so the CPU tests cover it.
#pragma once

#include "base/hd.h"

namespace rf {

RF_HD float float_from_bits(int32_t bits) {
#if defined(__CUDA_ARCH__)
  return __int_as_float(bits);
#else
  return __builtin_bit_cast(float, bits);  // (std::memcpy here stops GCC from vectorising)
#endif
}

// The integer nearest x / ln2 (|x| < 2^22 ln2), by adding and removing 1.5 * 2^23: no floorf
// call, so loops vectorise.
RF_HD float nearest_exponent(float x) {
  return (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
}

// e^x = 2^n e^r with r = x - n ln2, for x in [-87.3, 88.7] and n nearest_exponent(x), or 127
// above it (2^n must be a normal float).
RF_HD float exp_with_exponent(float x, float n) {
  const float r = x - n * 0.693145751953125f - n * 1.428606765330187e-06f;
  // Taylor polynomial of e^r to degree 7 (Horner).
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const float scale = float_from_bits((static_cast<int32_t>(n) + 127) << 23);
  return p * scale;
}

// e^x; exactly 0 below -87.3 (as expf underflows), clamped above 88.7.
RF_HD float exp_approx(float x) {
  const bool underflow = x < -87.3f;
  x = fmin_hd(fmax_hd(x, -87.3f), 88.7f);
  // n stops at 127, the largest exponent of a float: from x = 88.38 to the clamp r grows to
  // 0.67 and e^x stays finite (2^128 would be infinite); below, nothing changes.
  const float n = fmin_hd(nearest_exponent(x), 127.0f);
  const float e = exp_with_exponent(x, n);
  return underflow ? 0.0f : e;
}

// exp_approx for x <= 88 (a score less its row's maximum, and the like): the same bits (every
// float up to 88.37 compared), as its clamps that this leaves out act only from 88.376 up. GCC
// vectorises a loop of it as one path, twice as fast as exp_approx's (GCC 12, AVX-512). Larger
// x (from non-finite inputs: a NaN score hides the row's maximum) stop at 88.37, where 2^n is
// still a float.
RF_HD float exp_up_to_88(float x) {
  const bool underflow = x < -87.3f;
  x = fmin_hd(fmax_hd(x, -87.3f), 88.37f);
  const float e = exp_with_exponent(x, nearest_exponent(x));
  return underflow ? 0.0f : e;
}

// tanh(x) = 1 - 2 / (e^{2x} + 1), saturating correctly at both ends.
// |2x| <= 30 after the clamp, so exp_approx's clamps and underflow test would never act: the
// same bits without them (every float compared), and without them GCC vectorises a loop of tanh
// as one path, where with them it split the loop into masked paths that ran 2.2 times slower
// (GCC 12, AVX-512).
RF_HD float tanh_approx(float x) {
  const float two_x = 2.0f * fmin_hd(fmax_hd(x, -15.0f), 15.0f);
  return 1.0f - 2.0f / (exp_with_exponent(two_x, nearest_exponent(two_x)) + 1.0f);
}

}  // namespace rf
