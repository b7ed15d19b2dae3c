// Launchers of the flat element-wise ops: y += alpha x, joining and splitting column blocks, and
// fills (constant, or normal / uniform from a Philox stream, so initial parameters are the same on
// every executor).
#pragma once

#include <cstdint>

#include "kernels/executor.h"

namespace rf {

// y[i] += alpha * x[i] for i < n.
void add_scaled(Executor& ex, float* y, const float* x, float alpha, int64_t n);

// out [rows, cols_a + cols_b] = [a, b], with a [rows, cols_a] and b [rows, cols_b].
void concat_columns(Executor& ex, float* out, const float* a, const float* b, int64_t rows,
                    int64_t cols_a, int64_t cols_b);
// a += d[:, :cols_a], b += d[:, cols_a:]: the gradient of concat_columns.
void split_columns_add(Executor& ex, float* a, float* b, const float* d, int64_t rows,
                       int64_t cols_a, int64_t cols_b);

// x[r, :] += bias for r < rows.
void add_row_bias(Executor& ex, float* x, const float* bias, int64_t rows, int64_t cols);

// y[i] = x[i] rounded to bf16 (nearest, ties to even) for i < n.
void write_bf16_copy(Executor& ex, const float* x, uint16_t* y, int64_t n);

void fill(Executor& ex, float* x, int64_t n, float value);
// x[i] = stddev * normal(i) / low + (high - low) * uniform(i) of the stream.
void fill_normal(Executor& ex, float* x, int64_t n, const RngStream& stream, float stddev);
void fill_uniform(Executor& ex, float* x, int64_t n, const RngStream& stream, float low,
                  float high);

}  // namespace rf
