#include "trainer/layer_norm.h"

#include "kernels/reductions.h"

namespace rf {

LayerNormLayer::LayerNormLayer(ParamStore& store, const std::string& name, int64_t cols)
    : cols_(cols) {
  gamma_ = store.add(name + ".gamma", {cols}, {InitKind::kOnes}, false);
  beta_ = store.add(name + ".beta", {cols}, {InitKind::kZeros}, false);
}

void LayerNormLayer::forward(Kit& kit, ParamStore& p, const float* x, float* y,
                             int64_t rows) const {
  const RowSplit split = row_split(kit.ex, cols_);
  float* mean = nullptr;
  float* rstd = nullptr;
  if (split.pieces() > 1) {  // statistics first, then one index per piece of a row
    mean = kit.ws.floats("ln.mean", rows);
    rstd = kit.ws.floats("ln.rstd", rows);
    kit.ex.run(rows, LayerNormRowStats{x, nullptr, nullptr, mean, rstd, nullptr, nullptr, cols_,
                                       kLayerNormEps});
  }
  kit.ex.run(split.indices(rows), LayerNormForward{x, p.param(gamma_), p.param(beta_), y, mean,
                                                   rstd, split, kLayerNormEps});
}

void LayerNormLayer::backward(Kit& kit, ParamStore& p, const float* x, const float* dy, float* dx,
                              int64_t rows, bool accumulate) const {
  float* mean = kit.ws.floats("ln.mean", rows);
  float* rstd = kit.ws.floats("ln.rstd", rows);
  const RowSplit split = row_split(kit.ex, cols_);
  const bool stats_first = split.pieces() > 1;
  float* mean_g = stats_first ? kit.ws.floats("ln.mean_g", rows) : nullptr;
  float* mean_gx = stats_first ? kit.ws.floats("ln.mean_gx", rows) : nullptr;
  if (stats_first)
    kit.ex.run(rows, LayerNormRowStats{x, p.param(gamma_), dy, mean, rstd, mean_g, mean_gx, cols_,
                                       kLayerNormEps});
  kit.ex.run(split.indices(rows),
             LayerNormBackward{x, p.param(gamma_), dy, dx, mean, rstd, mean_g, mean_gx, split,
                               kLayerNormEps, stats_first, accumulate});
  const int64_t blocks = (rows + kReduceBlockRows - 1) / kReduceBlockRows;
  float* pg = kit.ws.floats("ln.partial_gamma", blocks * cols_);
  float* pb = kit.ws.floats("ln.partial_beta", blocks * cols_);
  kit.ex.run(split.indices(blocks),
             LayerNormParamGradPartial{x, dy, mean, rstd, pg, pb, rows, kReduceBlockRows, split});
  kit.ex.run(cols_, ColumnSumPartials{pg, p.grad(gamma_), blocks, cols_, true});
  kit.ex.run(cols_, ColumnSumPartials{pb, p.grad(beta_), blocks, cols_, true});
}

}  // namespace rf
