// RF_HD marks a function that is compiled for both executors: __host__ __device__ under nvcc,
// a plain inline function under the host compiler. Every kernel's arithmetic lives in such a
// function (docs/architecture.md, "one reference per op"), so CPU tests exercise GPU math.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define RF_HD __host__ __device__ __forceinline__
#else
#define RF_HD inline
#endif

namespace rf {

// Float helpers usable on host and device (std:: math is not available in device code).
RF_HD float fmax_hd(float a, float b) {
  return a > b ? a : b;
}
RF_HD float fmin_hd(float a, float b) {
  return a < b ? a : b;
}

}  // namespace rf
