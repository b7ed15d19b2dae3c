// Block- and warp-level CUDA kernels for the deterministic reductions of kernels/ops/reduce.h,
// used for KernelVariant::kTuned. Each adds in the 32-lane order of row_sum
// (kernels/ops/row_reduce.h): lane l adds elements l, l + 32, l + 64, ... in order, then the tree
// lane l += lane l + 16, + 8, + 4, + 2, + 1. So they equal the CPU's functors bit for bit: they
// only add (the squares of floats are exact in double, fused or not). The functors' per-index
// form runs one thread per column or block on a GPU, a long serial loop with little parallelism
// (the column sums took 46 ms of a 64K-token step on an H100). Included by tuned_backend.cuh only.
//
// STATUS: ran on an H200 (2026-12-04), where `reformer selftest --device cuda` passes them; they
// also run on the CPU in the tests' emulation of the CUDA thread model
// (tests/emulated_cuda_test.cpp). A training run checks them at start-up.
#pragma once

#include "kernels/cuda/emulation_checks.cuh"
#include "kernels/cuda/row_kernels.cuh"
#include "kernels/cuda/thread_index.cuh"
#include "kernels/kernel_ops.h"

namespace rf::cuda {

constexpr int kStripColumns = 32;

// The total of each lane's partial sum in double, in the tree order of reduce_lanes, on lane 0.
__device__ __forceinline__ double warp_total_double(double partial) {
#pragma unroll
  for (int width = 16; width >= 1; width /= 2)
    partial += __shfl_down_sync(0xffffffffu, partial, width);
  return partial;
}

// ColumnSumPartials for a strip of 32 columns per block of 32 x 32 threads: thread (x, y) adds
// partials y, y + 32, ... of column x of the strip (each warp reads 32 neighbouring columns of
// one row of partials), then the 32 sums of each column meet in the tree, in shared memory.
static __global__ void __launch_bounds__(kStripColumns* kRowLanes)
    column_sum_partials_strips(ColumnSumPartials op) {
  __shared__ float lanes[kRowLanes][kStripColumns + 1];  // (+1: no bank conflicts)
  RF_SHARED_UNDEFINED_AT_BLOCK_START(lanes);
  const int x = thread_x(), y = thread_y();
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kStripColumns + x;
  float sum = 0.0f;
  if (c < op.cols)
    for (int64_t b = y; b < op.blocks; b += kRowLanes) sum += op.partial[b * op.cols + c];
  lanes[y][x] = sum;
  __syncthreads();
  for (int width = kRowLanes / 2; width >= 1; width /= 2) {
    if (y < width) lanes[y][x] += lanes[y + width][x];
    __syncthreads();
  }
  if (y == 0 && c < op.cols) op.out[c] = op.accumulate ? op.out[c] + lanes[0][x] : lanes[0][x];
}

// SumSquaresPartial with a warp per block of op.block elements (coalesced reads).
static __global__ void sum_squares_blocks(SumSquaresPartial op, int64_t blocks) {
  const int64_t b = warp_row();
  const int lane = lane_in_warp();
  if (b >= blocks) return;  // the whole warp
  const int64_t begin = b * op.block;
  const int64_t end = begin + op.block < op.n ? begin + op.block : op.n;
  double sum = 0.0;
  for (int64_t i = begin + lane; i < end; i += 32) {
    const double v = op.x[i];
    sum += v * v;
  }
  sum = warp_total_double(sum);
  if (lane == 0) op.partial[b] = sum;
}

// GradientNormFinalize as one warp.
static __global__ void gradient_norm_finalize_warp(GradientNormFinalize op) {
  const int lane = thread_x();
  double sum = 0.0;
  for (int64_t b = lane; b < op.blocks; b += 32) sum += op.partial[b];
  sum = warp_total_double(sum);
  if (lane == 0) op.finish(sum);
}

}  // namespace rf::cuda
