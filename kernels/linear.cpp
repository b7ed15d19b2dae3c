#include "kernels/linear.h"

#include "base/error.h"
#include "kernels/device_buffer.h"

namespace rf {
namespace {

// c (+|-)= op(a) op(b) over the shapes the views carry: the one GEMM every helper below makes.
void product(Executor& ex, bool trans_a, MatrixView a, bool trans_b, MatrixView b,
             MutableMatrixView c, Write write) {
  RowMajorGemm g;
  g.trans_a = trans_a;
  g.trans_b = trans_b;
  g.m = c.rows;
  g.n = c.cols;
  g.k = trans_a ? a.rows : a.cols;
  g.lda = a.ld;
  g.ldb = b.ld;
  g.ldc = c.ld;
  g.alpha = write == Write::kSubtract ? -1.0f : 1.0f;
  g.beta = write == Write::kOverwrite ? 0.0f : 1.0f;
  g.a_type = a.type;
  g.b_type = b.type;
  matmul(ex, g, a.data, b.data, c.data);
}

}  // namespace

ProductOperand product_operand(Executor& ex, Workspace& ws, std::string_view fp32_name,
                               std::string_view bf16_name, int64_t values) {
  ProductOperand o;
  if (ex.gemm_takes_bf16_operands())
    o.bf16 = ws.get<uint16_t>(bf16_name, static_cast<size_t>(values));
  else
    o.fp32 = ws.floats(fp32_name, static_cast<size_t>(values));
  return o;
}

void linear_forward(Executor& ex, MatrixView x, MatrixView w, MutableMatrixView y, Write write) {
  RF_CHECK(x.cols == w.rows && y.rows == x.rows && y.cols == w.cols, "x [", x.rows, ", ", x.cols,
           "] w [", w.rows, ", ", w.cols, "] y [", y.rows, ", ", y.cols, "]");
  product(ex, false, x, false, w, y, write);
}

void linear_input_grad(Executor& ex, MatrixView dy, MatrixView w, MutableMatrixView dx,
                       Write write) {
  RF_CHECK(dy.cols == w.cols && dx.rows == dy.rows && dx.cols == w.rows, "dy [", dy.rows, ", ",
           dy.cols, "] w [", w.rows, ", ", w.cols, "] dx [", dx.rows, ", ", dx.cols, "]");
  product(ex, false, dy, true, w, dx, write);
}

void linear_weight_grad(Executor& ex, MatrixView x, MatrixView dy, MutableMatrixView dw) {
  RF_CHECK(x.rows == dy.rows && dw.rows == x.cols && dw.cols == dy.cols, "x [", x.rows, ", ",
           x.cols, "] dy [", dy.rows, ", ", dy.cols, "] dw [", dw.rows, ", ", dw.cols, "]");
  product(ex, true, x, false, dy, dw, Write::kAccumulate);
}

void linear_backward(Executor& ex, MatrixView x, MatrixView w, MatrixView dy, MutableMatrixView dx,
                     MutableMatrixView dw, Write dx_write) {
  const GemmOperandReuse reuse(ex);
  linear_weight_grad(ex, x, dy, dw);
  linear_input_grad(ex, dy, w, dx, dx_write);
}

}  // namespace rf
