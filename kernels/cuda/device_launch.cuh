// The launch policy of the CUDA executor's kernels (tuned_backend.cuh,
// chunk_attention_kernels.cuh):
// <<<grid, block>>> on the calling thread's default stream, in issue order, each launch checked.
// nvcc only; the tests' CPU emulation has its own policy (tests/emulated_cuda/).
#pragma once

#include <cuda_runtime.h>

#include "base/cuda_check.h"

namespace rf::cuda {

struct DeviceLaunch {
  template <class... Params, class... Args>
  static void kernel(void (*k)(Params...), dim3 grid, dim3 block, const Args&... args) {
    k<<<grid, block, 0, cudaStreamPerThread>>>(args...);
    RF_CUDA_CHECK(cudaGetLastError());
  }
  // Of the device current on the calling thread, asked once.
  static int multiprocessors() {
    static const int count = [] {
      int device = 0, n = 0;
      RF_CUDA_CHECK(cudaGetDevice(&device));
      RF_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device));
      return n;
    }();
    return count;
  }
};

}  // namespace rf::cuda
