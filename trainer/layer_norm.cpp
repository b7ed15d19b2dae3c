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
  kit.ex.run(rows, LayerNormForward{x, p.param(gamma_), p.param(beta_), y, cols_, kLayerNormEps});
}

void LayerNormLayer::backward(Kit& kit, ParamStore& p, const float* x, const float* dy, float* dx,
                              int64_t rows, bool accumulate) const {
  float* mean = kit.ws.floats("ln.mean", rows);
  float* rstd = kit.ws.floats("ln.rstd", rows);
  kit.ex.run(rows, LayerNormBackward{x, p.param(gamma_), dy, dx, mean, rstd, cols_, kLayerNormEps,
                                     accumulate});
  const int64_t blocks = (rows + kReduceBlockRows - 1) / kReduceBlockRows;
  float* pg = kit.ws.floats("ln.partial_gamma", blocks * cols_);
  float* pb = kit.ws.floats("ln.partial_beta", blocks * cols_);
  kit.ex.run(blocks,
             LayerNormParamGradPartial{x, dy, mean, rstd, pg, pb, rows, cols_, kReduceBlockRows});
  kit.ex.run(cols_, ColumnSumPartials{pg, p.grad(gamma_), blocks, cols_, true});
  kit.ex.run(cols_, ColumnSumPartials{pb, p.grad(beta_), blocks, cols_, true});
}

}  // namespace rf
