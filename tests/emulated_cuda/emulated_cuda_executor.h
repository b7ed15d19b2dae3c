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

// With bf16_operands, as the CUDA executor at runtime.precision bf16: the kernels that produce a
// product's input write it in bf16, and the products multiply the bf16 values (here in fp32 on
// the CPU, exactly as cuBLAS's bf16 products with fp32 accumulation up to the order of the sums).
std::unique_ptr<Executor> make_emulated_cuda_executor(bool bf16_operands = false);
// The counts of an executor made by make_emulated_cuda_executor.
EmulatedLaunches emulated_launches(const Executor& ex);

}  // namespace rf::emulated_cuda
