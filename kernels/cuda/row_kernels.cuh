// Warp-per-row CUDA kernels for the whole-row functors (layer norm forward and backward,
// cross-entropy), used for KernelVariant::kTuned. A warp owns a row: lane l adds elements l,
// l + 32, ... and the lanes combine in the tree of kernels/ops/row_reduce.h (lane l += lane
// l + 16, + 8, + 4, + 2, + 1, read from lane 0), so the sums are added in the order the CPU adds
// them (results agree to rounding; nvcc and GCC may contract different products into FMAs, so
// selftest compares by NMSE, not bits). Included by tuned_backend.cuh only.
//
// STATUS: ran on an H200 (2026-12-04), where `reformer selftest --device cuda` passes them; they
// also run on the CPU in the tests' emulation of the CUDA thread model
// (tests/emulated_cuda_test.cpp). A training run checks them at start-up.
#pragma once

#include "kernels/cuda/thread_index.cuh"
#include "kernels/kernel_ops.h"

namespace rf::cuda {

constexpr int kRowsPerBlock = 8;  // warps per block

// The total of each lane's partial sum, in the tree order of reduce_lanes, on every lane.
__device__ __forceinline__ float warp_total(float partial) {
#pragma unroll
  for (int width = 16; width >= 1; width /= 2)
    partial += __shfl_down_sync(0xffffffffu, partial, width);
  return __shfl_sync(0xffffffffu, partial, 0);
}

__device__ __forceinline__ int64_t warp_row() {
  return static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + warp_in_block();
}

// A row's mean and 1 / standard deviation (layer_norm_row_stats of kernels/ops/layer_norm.h), on
// every lane of the warp.
__device__ __forceinline__ void warp_row_stats(const float* x, int64_t cols, float eps, int lane,
                                               float* mean_out, float* rstd_out) {
  float sum = 0.0f;
  for (int64_t c = lane; c < cols; c += 32) sum += x[c];
  const float mean = warp_total(sum) / static_cast<float>(cols);
  float squares = 0.0f;
  for (int64_t c = lane; c < cols; c += 32) {
    const float d = x[c] - mean;
    squares += d * d;
  }
  *mean_out = mean;
  *rstd_out = 1.0f / sqrtf(warp_total(squares) / static_cast<float>(cols) + eps);
}

static __global__ void layer_norm_forward_rows(LayerNormForward op, int64_t rows) {
  const int64_t row = warp_row();
  const int lane = lane_in_warp();
  if (row >= rows) return;  // the whole warp
  const int64_t cols = op.split.cols;
  const float* x = op.x + row * cols;
  float mean, rstd;
  warp_row_stats(x, cols, op.eps, lane, &mean, &rstd);
  if (op.y_bf16) {  // for the products of an executor that takes bf16 operands
    uint16_t* y = op.y_bf16 + row * cols;
    for (int64_t c = lane; c < cols; c += 32)
      y[c] = bf16_bits((x[c] - mean) * rstd * op.gamma[c] + op.beta[c]);
    return;
  }
  float* y = op.y + row * cols;
  for (int64_t c = lane; c < cols; c += 32) y[c] = (x[c] - mean) * rstd * op.gamma[c] + op.beta[c];
}

static __global__ void layer_norm_backward_rows(LayerNormBackward op, int64_t rows) {
  const int64_t row = warp_row();
  const int lane = lane_in_warp();
  if (row >= rows) return;
  const int64_t cols = op.split.cols;
  const float* x = op.x + row * cols;
  const float* dy = op.dy + row * cols;
  float mean, rstd;
  warp_row_stats(x, cols, op.eps, lane, &mean, &rstd);
  float sum_g = 0.0f, sum_gx = 0.0f;
  for (int64_t c = lane; c < cols; c += 32) {
    const float g = dy[c] * op.gamma[c];
    sum_g += g;
    sum_gx += g * (x[c] - mean) * rstd;
  }
  const float mean_g = warp_total(sum_g) / static_cast<float>(cols);
  const float mean_gx = warp_total(sum_gx) / static_cast<float>(cols);
  float* dx = op.dx + row * cols;
  for (int64_t c = lane; c < cols; c += 32) {
    const float xhat = (x[c] - mean) * rstd;
    const float value = rstd * (dy[c] * op.gamma[c] - mean_g - xhat * mean_gx);
    const float total = op.accumulate ? dx[c] + value : value;
    dx[c] = total;
    if (op.dx_bf16) op.dx_bf16[row * cols + c] = bf16_bits(total);
  }
  if (lane == 0) {
    op.mean[row] = mean;
    op.rstd[row] = rstd;
  }
}

// Cross-entropy of a row of logits (the CPU's CrossEntropyRow): the first largest logit, the sum
// of exponentials in the row order, the loss, and the gradient over the logits.
static __global__ void cross_entropy_rows(CrossEntropyRow op, int64_t rows) {
  const int64_t row = warp_row();
  const int lane = lane_in_warp();
  if (row >= rows) return;
  float* z = op.logits + row * op.vocab;
  // Each lane's first largest (from its first element, as the CPU starts from z[0]). A lane
  // without columns (vocab < 32) holds z[0] itself, so it can neither win over the CPU's answer
  // nor give an index past the vocabulary (a sentinel value would, for logits all below it).
  float best = lane < op.vocab ? z[lane] : z[0];
  int64_t arg = lane < op.vocab ? lane : 0;
  for (int64_t v = lane + 32; v < op.vocab; v += 32)
    if (z[v] > best) best = z[v], arg = v;
#pragma unroll
  for (int offset = 16; offset >= 1; offset /= 2) {  // the largest, the first of equals
    const float other = __shfl_xor_sync(0xffffffffu, best, offset);
    const int64_t other_arg = __shfl_xor_sync(0xffffffffu, arg, offset);
    if (other > best || (other == best && other_arg < arg)) best = other, arg = other_arg;
  }
  float sum = 0.0f;
  for (int64_t v = lane; v < op.vocab; v += 32) sum += exp_approx(z[v] - best);
  const float log_sum = logf(warp_total(sum)) + best;
  const int32_t target = op.targets[row];
  if (lane == 0) {
    op.loss[row] = log_sum - z[target];
    op.prediction[row] = static_cast<int32_t>(arg);
  }
  if (!op.want_grad) return;
  __syncwarp();  // z[target] is read before it is overwritten
  for (int64_t v = lane; v < op.vocab; v += 32) {
    const float p = exp_approx(z[v] - log_sum);
    z[v] = op.grad_scale * (p - (v == target ? 1.0f : 0.0f));
  }
}

}  // namespace rf::cuda
