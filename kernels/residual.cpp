#include "kernels/residual.h"

namespace rf {

void residual_add(Executor& ex, const ResidualAddArgs& a) {
  BiasDropoutResidualAdd op{};
  op.residual = a.residual;
  op.t = a.t;
  op.bias = a.bias;
  op.split = row_split(ex, a.cols);
  op.sign = a.sign;
  op.mask = a.dropout;
  ex.run(op.split.indices(a.rows), op);
}

void apply_dropout(Executor& ex, float* x, int64_t rows, int64_t cols, const DropoutMask& mask) {
  if (mask.active()) ex.run(rows, ApplyDropout{x, cols, mask});
}

const float* dropout_backward(Executor& ex, Workspace& ws, const float* dy, int64_t rows,
                              int64_t cols, const DropoutMask& mask, std::string_view scratch) {
  if (!mask.active()) return dy;
  float* out = ws.floats(scratch, static_cast<size_t>(rows * cols));
  ex.copy(out, dy, static_cast<size_t>(rows * cols) * sizeof(float));
  apply_dropout(ex, out, rows, cols, mask);
  return out;
}

}  // namespace rf
