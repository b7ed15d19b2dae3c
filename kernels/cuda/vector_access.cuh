// The alignment a kernel's multi-element access (a 32-bit pair of bf16, a float2, a float4) needs
// on a GPU, checked where the kernels run on the CPU. On a GPU such an access is one instruction
// that faults ("misaligned address") unless its address is a multiple of its size; x86 loads and
// stores anything. So in the tests' emulation of the CUDA thread model each of these accesses
// checks its address, and a misaligned one fails the emulated run (as a fault of its thread)
// instead of the first GPU run. On the GPU the check compiles to nothing.
#pragma once

#include <cstdint>

#include "base/error.h"

namespace rf::cuda {

template <int kBytes>
__device__ __forceinline__ void require_gpu_alignment(const void* at) {
#ifndef __CUDA_ARCH__
  if (reinterpret_cast<uintptr_t>(at) % kBytes != 0)
    fail("a ", kBytes, "-byte vector access at ", at, ", not a multiple of ", kBytes,
         " bytes: a GPU faults on it (misaligned address)");
#else
  (void)at;
#endif
}

}  // namespace rf::cuda
