#include "kernels/reductions.h"

#include <vector>

namespace rf {

void add_column_sums(Executor& ex, Workspace& ws, const float* x, int64_t rows, int64_t cols,
                     float* out) {
  const int64_t blocks = (rows + kReduceBlockRows - 1) / kReduceBlockRows;
  float* partial = ws.floats("reduce.column_partial", static_cast<size_t>(blocks * cols));
  const RowSplit split = row_split(ex, cols);
  ex.run(split.indices(blocks), ColumnPartialSum{x, partial, rows, kReduceBlockRows, split});
  ex.run(cols, ColumnSumPartials{partial, out, blocks, cols, true});
}

double sum_of_squares(Executor& ex, Workspace& ws, const float* x, int64_t n) {
  constexpr int64_t kBlock = 1 << 14;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  if (blocks == 0) return 0.0;
  double* partial = ws.get<double>("reduce.square_partial", static_cast<size_t>(blocks));
  ex.run(blocks, SumSquaresPartial{x, partial, n, kBlock});
  std::vector<double> host(static_cast<size_t>(blocks));
  ex.download(host.data(), partial, host.size() * sizeof(double));
  double total = 0.0;
  for (double v : host) total += v;
  return total;
}

}  // namespace rf
