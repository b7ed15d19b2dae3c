#include "kernels/reductions.h"

namespace rf {

void add_column_sums(Executor& ex, Workspace& ws, const float* x, int64_t rows, int64_t cols,
                     float* out) {
  const int64_t blocks = (rows + kReduceBlockRows - 1) / kReduceBlockRows;
  float* partial = ws.floats("reduce.column_partial", static_cast<size_t>(blocks * cols));
  const RowSplit split = row_split(ex, cols);
  ex.run(split.indices(blocks), ColumnPartialSum{x, partial, rows, kReduceBlockRows, split});
  ex.run(cols, ColumnSumPartials{partial, out, blocks, cols, true});
}

void gradient_norm(Executor& ex, Workspace& ws, const float* x, int64_t n, double clip,
                   GradientNormResult* result) {
  constexpr int64_t kBlock = 1 << 14;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  double* partial = ws.get<double>("reduce.square_partial", static_cast<size_t>(blocks + 1));
  ex.run(blocks, SumSquaresPartial{x, partial, n, kBlock});
  ex.run(1, GradientNormFinalize{partial, blocks, clip, result});
}

}  // namespace rf
