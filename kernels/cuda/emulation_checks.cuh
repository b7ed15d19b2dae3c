// What a GPU leaves undefined or faults on, but the host would quietly allow, marked in the kernels
// so that the tests' emulation of the CUDA thread model (tests/emulated_cuda/) reports it instead
// of the first GPU run. On the GPU both compile to nothing.
//
// - require_gpu_alignment: a multi-element access (a 32-bit pair of bf16, a float2, a float4) is
//   one GPU instruction, which faults ("misaligned address") unless its address is a multiple of
//   its size; x86 loads and stores anything. Where the kernels run on the host the address is
//   checked, and a misaligned one fails the emulated run as a fault of its thread.
// - RF_SHARED_UNDEFINED_AT_BLOCK_START(name), right after a __shared__ declaration: a block's
//   shared memory starts with whatever was there (another block's or another kernel's values), so
//   a read before the block's own write is a bug. The emulation keeps each __shared__ variable as
//   one static, which the blocks use in turn; with this mark it fills the variable with NaN bytes
//   (0xFF) when each block starts, so such a read spreads NaN (or a wild pointer) into what the
//   tests compare. Elsewhere the mark is empty.
#pragma once

#include <cstdint>

#include "base/error.h"

#ifndef RF_SHARED_UNDEFINED_AT_BLOCK_START
#define RF_SHARED_UNDEFINED_AT_BLOCK_START(name)
#endif

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
