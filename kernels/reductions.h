// Host-side drivers of the deterministic reductions in kernels/ops/reduce.h.
#pragma once

#include <cstdint>

#include "kernels/device_buffer.h"
#include "kernels/ops/adamw.h"

namespace rf {

// Rows per block of the two-stage column sums; fixed so results never depend on thread count.
constexpr int64_t kReduceBlockRows = 64;

// out[c] += sum over rows of x[r, c].
void add_column_sums(Executor& ex, Workspace& ws, const float* x, int64_t rows, int64_t cols,
                     float* out);

// The L2 norm of x[0..n) (squares accumulated in double in a fixed order) and the clip factor
// for `clip` (<= 0: none), written to *result on the device; nothing waits for the device.
void gradient_norm(Executor& ex, Workspace& ws, const float* x, int64_t n, double clip,
                   GradientNormResult* result);

}  // namespace rf
