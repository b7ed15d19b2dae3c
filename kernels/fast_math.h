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

RF_HD uint32_t bits_of_float(float x) {
#if defined(__CUDA_ARCH__)
  return static_cast<uint32_t>(__float_as_int(x));
#else
  return __builtin_bit_cast(uint32_t, x);  // (std::memcpy here stops GCC from vectorising)
#endif
}

// x / ln2 rounded to the nearest integer n (|x| < 2^22 ln2), held as t = n + 1.5 * 2^23: adding
// 1.5 * 2^23 rounds, with no floorf call, so loops vectorise. t's low mantissa bits are then
// 2^22 + n, which exp_from_rounded reads as an integer.
constexpr float kRoundingShift = 12582912.0f;  // 1.5 * 2^23
RF_HD float rounded_exponent(float x) {
  return x * 1.44269504088896341f + kRoundingShift;
}

// e^x = 2^n e^r with r = x - n ln2, for x in [-87.3, 88.7], t = rounded_exponent(x) (or less:
// exp_approx stops n at 127, where 2^n is still a normal float).
RF_HD float exp_from_rounded(float x, float t) {
  const float n = t - kRoundingShift;
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
  // 2^n's bits are (n + 127) << 23. t's bits are 0x4B400000 + n, and 0x4B400000 << 23 wraps to
  // 0, so they are (bits(t) + 127) << 23: two integer operations where converting n to an
  // integer would take a conversion, which the GPU issues at a quarter of the rate of an add.
  // The same bits as that conversion (every float compared: FastMath tests).
  const uint32_t scale_bits = (bits_of_float(t) + 127u) << 23;
  return p * float_from_bits(static_cast<int32_t>(scale_bits));
}

// e^x; exactly 0 below -87.3 (as expf underflows), clamped above 88.7.
RF_HD float exp_approx(float x) {
  const bool underflow = x < -87.3f;
  x = fmin_hd(fmax_hd(x, -87.3f), 88.7f);
  // n stops at 127, the largest exponent of a float: from x = 88.38 to the clamp r grows to
  // 0.67 and e^x stays finite (2^128 would be infinite); below, nothing changes.
  const float t = fmin_hd(rounded_exponent(x), kRoundingShift + 127.0f);
  const float e = exp_from_rounded(x, t);
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
  const float e = exp_from_rounded(x, rounded_exponent(x));
  return underflow ? 0.0f : e;
}

// tanh(x) = 1 - 2 / (e^{2x} + 1), saturating correctly at both ends.
// |2x| <= 30 after the clamp, so exp_approx's clamps and underflow test would never act: the
// same bits without them (every float compared), and without them GCC vectorises a loop of tanh
// as one path, where with them it split the loop into masked paths that ran 2.2 times slower
// (GCC 12, AVX-512).
RF_HD float tanh_approx(float x) {
  const float two_x = 2.0f * fmin_hd(fmax_hd(x, -15.0f), 15.0f);
  return 1.0f - 2.0f / (exp_from_rounded(two_x, rounded_exponent(two_x)) + 1.0f);
}

}  // namespace rf
