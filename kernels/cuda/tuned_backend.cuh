// Which CUDA kernel runs each kernel functor, and with what grid: the grid-stride kernel for every
// functor, or the warp-per-row and reduction kernels (row_kernels.cuh, round_kernels.cuh,
// reduce_kernels.cuh) and the element kernels below where the executor's variant is kTuned. Written
// once over a launch policy, so that the CUDA executor (kernels/cuda/device_launch.cuh: <<<grid,
// block>>> on the calling thread's stream) and the tests' CPU emulation of the CUDA thread model
// (tests/emulated_cuda/) run the same choices and the same geometry. A Launch policy has
//   template <class... P, class... A> static void kernel(void (*k)(P...), dim3 grid, dim3 block,
//                                                        const A&... args);
//   static int multiprocessors();
// Included by cuda_executor.cu and by the emulation's tests only.
#pragma once

#include <climits>

#include "base/error.h"
#include "kernels/cuda/reduce_kernels.cuh"
#include "kernels/cuda/round_kernels.cuh"
#include "kernels/cuda/row_kernels.cuh"
#include "kernels/executor.h"

namespace rf::cuda {

template <class Op>
__global__ void for_each_kernel(int64_t n, Op op) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    op(i);
}

// A functor with element(r, c) over rows x op.split.cols, one column per thread: block.x
// columns by grid.y rows at a time. (The grid-stride kernel's functor index costs three 64-bit
// divisions per element, and the activation's bf16 block sat on the stack: 0.75 ms per
// 65,536 x 1,024 activation on an H200, where moving its bytes takes about 0.2.)
template <class Op>
__global__ void row_elements(Op op, int64_t rows) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= op.split.cols) return;
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) op.element(r, c);
}

// Threads per block for n indices: 256, or fewer (down to one warp) when n is small, so that the
// blocks still cover about twice the multiprocessors. Per-row kernels have few indices and a
// serial loop each; packed into a handful of 256-thread blocks they would run on a handful of
// multiprocessors.
inline int threads_per_block(int64_t n, int multiprocessors) {
  const int64_t blocks_wanted = 2 * int64_t{multiprocessors};
  const int64_t per_block = (n + blocks_wanted - 1) / blocks_wanted;
  const int64_t warps = (per_block + 31) / 32;
  return static_cast<int>(warps < 1 ? 32 : warps > 8 ? 256 : warps * 32);
}

constexpr int64_t kElementRowBlocks = 4096;  // row_elements' grid.y at most (each loops)

template <class Launch>
struct TunedBackend {
  static bool tuned(const Executor& ex) { return ex.kernel_variant() == KernelVariant::kTuned; }

  // A warp per row for n rows (row_kernels.cuh).
  template <class Op>
  static void launch_rows(void (*kernel)(Op, int64_t), int64_t rows, const Op& op) {
    const int64_t blocks = (rows + kRowsPerBlock - 1) / kRowsPerBlock;
    RF_CHECK(blocks < INT_MAX, "too many rows: ", rows);
    Launch::kernel(kernel, dim3(static_cast<unsigned>(blocks)), dim3(32 * kRowsPerBlock), op, rows);
  }

  // Functors with element(r, c), when split a column per index (row_elements).
  template <class Op>
  static void launch_elements(const Executor& ex, int64_t n, const Op& op) {
    if (!tuned(ex) || op.split.span != 1 || op.split.cols <= 0) return for_each<Op>(ex, n, op);
    const int64_t cols = op.split.cols, rows = n / cols;
    if (rows <= 0) return;
    const int64_t threads = cols < 256 ? (cols + 31) / 32 * 32 : 256;
    const int64_t column_blocks = (cols + threads - 1) / threads;
    RF_CHECK(column_blocks < INT_MAX, "too many columns: ", cols);
    const dim3 grid(static_cast<unsigned>(column_blocks),
                    static_cast<unsigned>(rows < kElementRowBlocks ? rows : kElementRowBlocks));
    Launch::kernel(row_elements<Op>, grid, dim3(static_cast<unsigned>(threads)), op, rows);
  }
  static void for_each(const Executor& ex, int64_t n, const BiasActivationForward& op) {
    launch_elements(ex, n, op);
  }
  static void for_each(const Executor& ex, int64_t n, const ActivationBackward& op) {
    launch_elements(ex, n, op);
  }

  // A functor with a kernel of one warp per index where the variant is kTuned, else grid-stride.
  template <class Op>
  static void rows_if_tuned(const Executor& ex, int64_t n, const Op& op,
                            void (*kernel)(Op, int64_t)) {
    if (tuned(ex))
      launch_rows(kernel, n, op);
    else
      for_each<Op>(ex, n, op);
  }

  // Any functor: one thread per index, grid-stride.
  template <class Op>
  static void for_each(const Executor&, int64_t n, const Op& op) {
    if (n <= 0) return;
    const int threads = threads_per_block(n, Launch::multiprocessors());
    const int64_t blocks = (n + threads - 1) / threads;
    constexpr int64_t kMaxGrid = int64_t{65535} * 32;  // (grid-stride beyond it)
    const unsigned grid = static_cast<unsigned>(blocks < kMaxGrid ? blocks : kMaxGrid);
    Launch::kernel(for_each_kernel<Op>, dim3(grid), dim3(static_cast<unsigned>(threads)), n, op);
  }
  // Whole rows (the launchers hand them over when warp_per_row() says so) run a warp per row.
  static void for_each(const Executor& ex, int64_t n, const LayerNormForward& op) {
    if (tuned(ex) && op.split.pieces() == 1 && op.mean == nullptr)
      launch_rows(layer_norm_forward_rows, n, op);
    else
      for_each<LayerNormForward>(ex, n, op);
  }
  static void for_each(const Executor& ex, int64_t n, const LayerNormBackward& op) {
    if (tuned(ex) && op.split.pieces() == 1 && !op.stats_given)
      launch_rows(layer_norm_backward_rows, n, op);
    else
      for_each<LayerNormBackward>(ex, n, op);
  }
  static void for_each(const Executor& ex, int64_t n, const CrossEntropyRow& op) {
    rows_if_tuned(ex, n, op, cross_entropy_rows);
  }
  // The hash rounds' per-position functors: a warp per position (round_kernels.cuh).
  static void for_each(const Executor& ex, int64_t n, const CombineRounds& op) {
    rows_if_tuned(ex, n, op, combine_rounds_rows);
  }
  static void for_each(const Executor& ex, int64_t n, const CombineRoundsBackward& op) {
    rows_if_tuned(ex, n, op, combine_rounds_backward_rows);
  }
  static void for_each(const Executor& ex, int64_t n, const UngatherAttentionGrads& op) {
    rows_if_tuned(ex, n, op, ungather_attention_grads_rows);
  }
  // The reductions in the same order as the functors, with the parallelism a GPU needs
  // (reduce_kernels.cuh).
  static void for_each(const Executor& ex, int64_t n, const ColumnSumPartials& op) {
    if (!tuned(ex) || n != op.cols) return for_each<ColumnSumPartials>(ex, n, op);
    const int64_t strips = (op.cols + kStripColumns - 1) / kStripColumns;
    RF_CHECK(strips < INT_MAX, "too many columns: ", op.cols);
    Launch::kernel(column_sum_partials_strips, dim3(static_cast<unsigned>(strips)),
                   dim3(kStripColumns, kRowLanes), op);
  }
  static void for_each(const Executor& ex, int64_t n, const SumSquaresPartial& op) {
    rows_if_tuned(ex, n, op, sum_squares_blocks);
  }
  static void for_each(const Executor& ex, int64_t n, const GradientNormFinalize& op) {
    if (!tuned(ex) || n != 1) return for_each<GradientNormFinalize>(ex, n, op);
    Launch::kernel(gradient_norm_finalize_warp, dim3(1), dim3(32), op);
  }
};

}  // namespace rf::cuda
