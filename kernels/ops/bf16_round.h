// Rounding fp32 to bf16 (its upper 16 bits), nearest with ties to even; a NaN stays a (quiet)
// NaN. One definition for the CPU's bf16 GEMM operands (kernels/cpu/bf16_gemm.cpp), the bf16 copy
// of the weights (trainer/params.h) and the reference functors' emulation of bf16 tile products
// (kernels/ops/chunk_attention.h).
#pragma once

#include <cstdint>

#include "kernels/fast_math.h"

namespace rf {

RF_HD uint16_t bf16_bits(float x) {
  const uint32_t u = bits_of_float(x);
  const bool nan = (u & 0x7F800000u) == 0x7F800000u && (u & 0x007FFFFFu) != 0;
  // Adding 0x7FFF plus the lowest kept bit rounds to nearest with ties to even; a NaN keeps a
  // mantissa bit so it cannot round into an infinity.
  return nan ? static_cast<uint16_t>((u >> 16) | 0x40u)
             : static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

RF_HD float bf16_value(uint16_t bits) {
  return float_from_bits(static_cast<int32_t>(static_cast<uint32_t>(bits) << 16));
}

// x rounded to bf16, as a float.
RF_HD float bf16_rounded(float x) {
  return bf16_value(bf16_bits(x));
}

// y[i] = bf16_bits(x[i]): a bf16 copy of an fp32 array. Index = element.
struct RoundToBf16 {
  const float* x;
  uint16_t* y;
  RF_HD void operator()(int64_t i) const { y[i] = bf16_bits(x[i]); }
};

}  // namespace rf
