// Which kernels OpenBLAS runs, and putting right its fallback on a CPU it does not know.
//
// OpenBLAS built with DYNAMIC_ARCH (Debian's) picks its kernels by CPU model when the library
// loads. A model newer than the build gets the Prescott (SSE3) kernels instead: OpenBLAS 0.3.21
// on an Emerald Rapids Xeon (family 6, model 207) ran its SGEMM at 39-59 GFLOP/s where its
// SkylakeX kernels reach 195-219 on the same VM (2026-12-06). The choice can be changed only by
// OPENBLAS_CORETYPE before the library loads, so a program that finds the fallback restarts
// itself with it set.
#pragma once

#include <string>

namespace rf {

// The vector instructions OpenBLAS's kernels need, as this CPU and its OS offer them.
struct CpuVectorFeatures {
  bool avx512 = false;    // AVX-512 F, CD, BW, DQ and VL: the SkylakeX kernels
  bool avx2_fma = false;  // AVX2 and FMA: the Haswell kernels
};
CpuVectorFeatures this_cpu_vector_features();

// The OpenBLAS core to ask for instead of `chosen` (OpenBLAS's own name for its kernels), or ""
// where `chosen` is not the fallback or the CPU offers nothing better.
std::string better_openblas_core(const std::string& chosen, CpuVectorFeatures cpu);

// Where OpenBLAS runs its fallback on a CPU that offers better, re-runs this process's command
// line (the same process) with OPENBLAS_CORETYPE set, unless it is already set (the user's
// choice, or this restart's). Returns where there is nothing to do or the restart failed. Call
// it first thing in main(), before threads, files or MPI exist.
void restart_without_openblas_fallback();

// "kernel SkylakeX", with how it was chosen where OPENBLAS_CORETYPE is set.
std::string openblas_kernel_report();

// The most threads that may call OpenBLAS at once (each a single-threaded product inside the
// executor's parallel loops): twice the MAX_THREADS it was built with; 0 where its configuration
// does not say.
int openblas_caller_limit();

}  // namespace rf
