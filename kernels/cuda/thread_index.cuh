// A thread's place in its block and warp, as int. CUDA's threadIdx and blockDim are unsigned; the
// kernels' loop counters and tile indices are int on purpose (32-bit index arithmetic keeps their
// register counts down: kernels/cuda/mma_attention_kernels.cuh), and every value here is below
// 1024. Converting once here, where the conversion costs no instruction, keeps each kernel free of
// implicit unsigned-to-int conversions (clang-tidy's bugprone-narrowing-conversions, which checks
// these headers as the tests' emulation compiles them).
#pragma once

namespace rf::cuda {

__device__ __forceinline__ int thread_x() {
  return static_cast<int>(threadIdx.x);
}
__device__ __forceinline__ int thread_y() {
  return static_cast<int>(threadIdx.y);
}
__device__ __forceinline__ int threads_x() {
  return static_cast<int>(blockDim.x);
}
__device__ __forceinline__ int lane_in_warp() {
  return static_cast<int>(threadIdx.x % 32);
}
__device__ __forceinline__ int warp_in_block() {
  return static_cast<int>(threadIdx.x / 32);
}

}  // namespace rf::cuda
