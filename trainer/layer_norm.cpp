#include "trainer/layer_norm.h"

#include "kernels/layer_norm.h"

namespace rf {

LayerNormLayer::LayerNormLayer(ParamStore& store, const std::string& name, int64_t cols)
    : cols_(cols) {
  gamma_ = store.add(name + ".gamma", {cols}, {InitKind::kOnes}, false);
  beta_ = store.add(name + ".beta", {cols}, {InitKind::kZeros}, false);
}

void LayerNormLayer::forward(Kit& kit, ParamStore& p, const float* x, float* y,
                             int64_t rows) const {
  forward(kit, p, x, ProductOperand{y, nullptr}, rows);
}

void LayerNormLayer::forward(Kit& kit, ParamStore& p, const float* x, const ProductOperand& y,
                             int64_t rows) const {
  LayerNormArgs a;
  a.x = x;
  a.gamma = p.param(gamma_);
  a.beta = p.param(beta_);
  a.y = y.fp32;
  a.y_bf16 = y.bf16;
  a.rows = rows;
  a.cols = cols_;
  a.eps = kLayerNormEps;
  layer_norm_forward(kit.ex, kit.ws, a);
}

void LayerNormLayer::backward(Kit& kit, ParamStore& p, const float* x, const float* dy, float* dx,
                              int64_t rows, bool accumulate, uint16_t* dx_bf16) const {
  LayerNormBackwardArgs a;
  a.x = x;
  a.gamma = p.param(gamma_);
  a.dy = dy;
  a.dx = dx;
  a.dx_bf16 = dx_bf16;
  a.dgamma = p.grad(gamma_);
  a.dbeta = p.grad(beta_);
  a.rows = rows;
  a.cols = cols_;
  a.eps = kLayerNormEps;
  a.write_dx = accumulate ? Write::kAccumulate : Write::kOverwrite;
  layer_norm_backward(kit.ex, kit.ws, a);
}

}  // namespace rf
