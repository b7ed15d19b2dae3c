// A CUDA executor on the CPU: the CUDA executor's choice of kernel and grid for every functor
// (kernels/cuda/tuned_backend.cuh) and its tiled attention
// (kernels/cuda/chunk_attention_kernels.cuh), run by the emulation of the CUDA thread model
// (emulated_cuda.h) in host memory. GEMMs and the LSH sort, which are cuBLAS's and CUB's on a GPU,
// go to the CPU executor. So `reformer selftest`'s checks run the project's own CUDA kernels here,
// before any GPU has.
#pragma once

#include <memory>

#include "kernels/executor.h"

namespace rf::emulated_cuda {

// Counts of what the executor ran through the emulation.
struct EmulatedLaunches {
  int64_t attention_passes = 0;  // passes that ran the tiled CUDA attention kernels
};

std::unique_ptr<Executor> make_emulated_cuda_executor();
// The counts of an executor made by make_emulated_cuda_executor.
EmulatedLaunches emulated_launches(const Executor& ex);

}  // namespace rf::emulated_cuda
