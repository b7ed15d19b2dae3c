// AVX-512 intrinsics for the CPU kernels that use them directly, and a guard for a GCC 12 false
// positive: its max/min/unpack intrinsics pass an undefined vector as the masked-off source,
// which -Wmaybe-uninitialized reports once they are inlined. Code between
// RF_AVX512_INTRINSICS_BEGIN and RF_AVX512_INTRINSICS_END is compiled without that warning.
#pragma once

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#if defined(__GNUC__) && !defined(__clang__)
#define RF_AVX512_INTRINSICS_BEGIN \
  _Pragma("GCC diagnostic push") _Pragma("GCC diagnostic ignored \"-Wmaybe-uninitialized\"")
#define RF_AVX512_INTRINSICS_END _Pragma("GCC diagnostic pop")
#else
#define RF_AVX512_INTRINSICS_BEGIN
#define RF_AVX512_INTRINSICS_END
#endif
