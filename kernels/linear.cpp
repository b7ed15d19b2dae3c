#include "kernels/linear.h"

#include "base/error.h"

namespace rf {
namespace {

float alpha_of(Write write) {
  return write == Write::kSubtract ? -1.0f : 1.0f;
}
float beta_of(Write write) {
  return write == Write::kOverwrite ? 0.0f : 1.0f;
}

}  // namespace

void linear_forward(Executor& ex, MatrixView x, MatrixView w, MutableMatrixView y, Write write) {
  RF_CHECK(x.cols == w.rows && y.rows == x.rows && y.cols == w.cols, "x [", x.rows, ", ", x.cols,
           "] w [", w.rows, ", ", w.cols, "] y [", y.rows, ", ", y.cols, "]");
  RowMajorGemm g;
  g.m = x.rows;
  g.n = w.cols;
  g.k = x.cols;
  g.lda = x.ld;
  g.ldb = w.ld;
  g.ldc = y.ld;
  g.alpha = alpha_of(write);
  g.beta = beta_of(write);
  matmul(ex, g, x.data, w.data, y.data);
}

void linear_input_grad(Executor& ex, MatrixView dy, MatrixView w, MutableMatrixView dx,
                       Write write) {
  RF_CHECK(dy.cols == w.cols && dx.rows == dy.rows && dx.cols == w.rows, "dy [", dy.rows, ", ",
           dy.cols, "] w [", w.rows, ", ", w.cols, "] dx [", dx.rows, ", ", dx.cols, "]");
  RowMajorGemm g;
  g.trans_b = true;
  g.m = dy.rows;
  g.n = w.rows;
  g.k = dy.cols;
  g.lda = dy.ld;
  g.ldb = w.ld;
  g.ldc = dx.ld;
  g.alpha = alpha_of(write);
  g.beta = beta_of(write);
  matmul(ex, g, dy.data, w.data, dx.data);
}

void linear_weight_grad(Executor& ex, MatrixView x, MatrixView dy, MutableMatrixView dw) {
  RF_CHECK(x.rows == dy.rows && dw.rows == x.cols && dw.cols == dy.cols, "x [", x.rows, ", ",
           x.cols, "] dy [", dy.rows, ", ", dy.cols, "] dw [", dw.rows, ", ", dw.cols, "]");
  RowMajorGemm g;
  g.trans_a = true;
  g.m = x.cols;
  g.n = dy.cols;
  g.k = x.rows;
  g.lda = x.ld;
  g.ldb = dy.ld;
  g.ldc = dw.ld;
  g.beta = 1.0f;
  matmul(ex, g, x.data, dy.data, dw.data);
}

}  // namespace rf
