// A CUDA executor on the CPU: the CUDA executor's choice of kernel, row split and grid for every
// functor (kernels/cuda/tuned_backend.cuh) and its tiled attention
// (kernels/cuda/attention_tile_launch.cuh), run by the emulation of the CUDA thread model
// (emulated_cuda.h) in host memory. GEMMs and the LSH sort, which are cuBLAS's and CUB's on a GPU,
// go to the CPU executor. So `reformer selftest`'s checks run the project's own CUDA kernels here,
// before any GPU has.
#pragma once

#include <memory>

#include "kernels/executor.h"

namespace rf::emulated_cuda {

// Launches of the tuned CUDA kernels so far on this thread (by any emulated executor).
struct EmulatedLaunches {
  int64_t layer_norm_forward_rows = 0, layer_norm_backward_rows = 0, cross_entropy_rows = 0;
  int64_t column_strips = 0, sum_squares_blocks = 0, norm_finalize_warp = 0;
  int64_t activation_elements = 0, activation_backward_elements = 0;
  int64_t combine_rounds_rows = 0, combine_rounds_backward_rows = 0, ungather_rows = 0;
  // The tiled attention's kernels (forward, query gradients, key gradients) per variant: head
  // width 32, 64, 128 (index 0, 1, 2), scores without or with terms (relative positions, a
  // distance limit), and for the tensor-core ones (bf16 products) without or with dropout.
  int64_t attention_tiles[3][2] = {};
  int64_t mma_tiles[3][2][2] = {};
};

// With bf16_operands, as the CUDA executor at runtime.precision bf16: the kernels that produce a
// product's input write it in bf16, and the products multiply the bf16 values (here in fp32 on
// the CPU, exactly as cuBLAS's bf16 products with fp32 accumulation up to the order of the sums),
// and the attention passes run on (emulated) tensor cores.
std::unique_ptr<Executor> make_emulated_cuda_executor(bool bf16_operands = false);
EmulatedLaunches emulated_launches();

}  // namespace rf::emulated_cuda
