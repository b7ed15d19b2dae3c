#include "kernels/layer_norm.h"

#include "base/error.h"
#include "kernels/reductions.h"

namespace rf {

namespace {

// Whole rows per index where the executor runs a warp per row, otherwise its usual split.
RowSplit layer_norm_split(const Executor& ex, int64_t cols) {
  return ex.warp_per_row() ? RowSplit{cols, cols > 0 ? cols : 1} : row_split(ex, cols);
}

}  // namespace

void layer_norm_forward(Executor& ex, Workspace& ws, const LayerNormArgs& a) {
  const RowSplit split = layer_norm_split(ex, a.cols);
  LayerNormForward op{};
  op.x = a.x;
  op.gamma = a.gamma;
  op.beta = a.beta;
  op.y = a.y;
  op.y_bf16 = a.y_bf16;
  op.split = split;
  op.eps = a.eps;
  if (split.pieces() > 1) {  // statistics first, then one index per piece of a row
    LayerNormRowStats stats{};
    stats.x = a.x;
    stats.mean = ws.floats("ln.mean", a.rows);
    stats.rstd = ws.floats("ln.rstd", a.rows);
    stats.cols = a.cols;
    stats.eps = a.eps;
    ex.run(a.rows, stats);
    op.mean = stats.mean;
    op.rstd = stats.rstd;
  }
  ex.run(split.indices(a.rows), op);
}

void layer_norm_backward(Executor& ex, Workspace& ws, const LayerNormBackwardArgs& a) {
  RF_CHECK(!a.dx_bf16 || ex.gemm_takes_bf16_operands(),
           "bf16 layer-norm gradient rows on an executor whose products do not take bf16 operands");
  const RowSplit split = layer_norm_split(ex, a.cols);
  LayerNormBackward op{};
  op.x = a.x;
  op.gamma = a.gamma;
  op.dy = a.dy;
  op.dx = a.dx;
  op.dx_bf16 = a.dx_bf16;
  op.mean = ws.floats("ln.mean", a.rows);
  op.rstd = ws.floats("ln.rstd", a.rows);
  op.split = split;
  op.eps = a.eps;
  op.stats_given = split.pieces() > 1;
  op.accumulate = a.write_dx == Write::kAccumulate;
  if (op.stats_given) {
    LayerNormRowStats stats{};
    stats.x = a.x;
    stats.gamma = a.gamma;
    stats.dy = a.dy;
    stats.mean = op.mean;
    stats.rstd = op.rstd;
    stats.mean_g = op.mean_g = ws.floats("ln.mean_g", a.rows);
    stats.mean_gx = op.mean_gx = ws.floats("ln.mean_gx", a.rows);
    stats.cols = a.cols;
    stats.eps = a.eps;
    ex.run(a.rows, stats);
  }
  ex.run(split.indices(a.rows), op);

  const int64_t blocks = (a.rows + kReduceBlockRows - 1) / kReduceBlockRows;
  LayerNormParamGradPartial partial{};
  partial.x = a.x;
  partial.dy = a.dy;
  partial.mean = op.mean;
  partial.rstd = op.rstd;
  partial.partial_gamma = ws.floats("ln.partial_gamma", blocks * a.cols);
  partial.partial_beta = ws.floats("ln.partial_beta", blocks * a.cols);
  partial.rows = a.rows;
  partial.block_rows = kReduceBlockRows;
  partial.split = row_split(ex, a.cols);  // a column per GPU thread: few rows per block
  ex.run(partial.split.indices(blocks), partial);
  ex.run(a.cols, ColumnSumPartials{partial.partial_gamma, a.dgamma, blocks, a.cols, true});
  ex.run(a.cols, ColumnSumPartials{partial.partial_beta, a.dbeta, blocks, a.cols, true});
}

}  // namespace rf
