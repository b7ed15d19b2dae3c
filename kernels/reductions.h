// Host-side drivers of the deterministic reductions in kernels/ops/reduce.h.
#pragma once

#include <cstdint>

#include "kernels/device_buffer.h"

namespace rf {

// Rows per block of the two-stage column sums; fixed so results never depend on thread count.
constexpr int64_t kReduceBlockRows = 64;

// out[c] += sum over rows of x[r, c].
void add_column_sums(Executor& ex, Workspace& ws, const float* x, int64_t rows, int64_t cols,
                     float* out);

// sum of x[i]^2 over n elements, accumulated in double in a fixed order.
double sum_of_squares(Executor& ex, Workspace& ws, const float* x, int64_t n);

}  // namespace rf
