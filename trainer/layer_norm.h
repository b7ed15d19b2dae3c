// Layer normalisation with learned scale and shift over the last axis (eps 1e-6, as trax).
#pragma once

#include <string>

#include "trainer/params.h"
#include "trainer/step_context.h"

namespace rf {

constexpr float kLayerNormEps = 1e-6f;

class LayerNormLayer {
 public:
  LayerNormLayer() = default;
  LayerNormLayer(ParamStore& store, const std::string& name, int64_t cols);

  // y = LN(x); x, y: [rows, cols]; y may alias x.
  void forward(Kit& kit, ParamStore& p, const float* x, float* y, int64_t rows) const;
  // The same for a y only products read, written in the type they take (the backward needs x,
  // not y).
  void forward(Kit& kit, ParamStore& p, const float* x, const ProductOperand& y,
               int64_t rows) const;
  // dx (+)= dL/dx and the parameter gradients accumulate, given the forward input x and dy. With
  // dx_bf16 (an executor whose products take bf16 operands), dx's new values also go there
  // rounded, for the products that read the gradient next.
  void backward(Kit& kit, ParamStore& p, const float* x, const float* dy, float* dx, int64_t rows,
                bool accumulate, uint16_t* dx_bf16 = nullptr) const;

 private:
  int gamma_ = -1, beta_ = -1;
  int64_t cols_ = 0;
};

}  // namespace rf
