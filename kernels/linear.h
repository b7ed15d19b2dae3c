// Named GEMM helpers for the products a model makes: a linear layer's forward, input gradient and
// weight gradient, over row-major matrices that carry their shapes. Each builds the one GEMM
// description (kernels/gemm_desc.h) the executor hands to OpenBLAS or cuBLAS, and checks that the
// shapes agree, so a swapped dimension is an error with file:line rather than a wrong product.
#pragma once

#include <cstdint>
#include <string_view>

#include "kernels/executor.h"

namespace rf {
class Workspace;
}

namespace rf {

// A row-major matrix in executor memory: [rows, cols] with `ld` elements between rows, of fp32
// values or, as a product's input on an executor that takes them (gemm_takes_bf16_operands),
// bf16 values a kernel wrote already rounded.
struct MatrixView {
  const void* data = nullptr;
  int64_t rows = 0, cols = 0, ld = 0;
  OperandType type = OperandType::kFp32;
};
// An fp32 matrix a product writes.
struct MutableMatrixView {
  float* data = nullptr;
  int64_t rows = 0, cols = 0, ld = 0;
  operator MatrixView() const { return {data, rows, cols, ld, OperandType::kFp32}; }
};

// A packed [rows, cols] matrix (ld = cols).
inline MatrixView matrix(const float* data, int64_t rows, int64_t cols) {
  return {data, rows, cols, cols, OperandType::kFp32};
}
inline MutableMatrixView matrix(float* data, int64_t rows, int64_t cols) {
  return {data, rows, cols, cols};
}
// The first `rows` rows of m.
inline MatrixView top_rows(MatrixView m, int64_t rows) {
  m.rows = rows;
  return m;
}
// A packed [rows, cols] matrix of bf16 values (as kernels/ops/bf16_round.h's bits).
inline MatrixView bf16_matrix(const uint16_t* data, int64_t rows, int64_t cols) {
  return {data, rows, cols, cols, OperandType::kBf16};
}

// An activation that only products read: fp32, or, on an executor whose products take bf16
// operands (gemm_takes_bf16_operands), bf16 that the kernel making it writes already rounded, so
// that no product reads and rounds an fp32 copy (same bits).
struct ProductOperand {
  float* fp32 = nullptr;
  uint16_t* bf16 = nullptr;
  MatrixView view(int64_t rows, int64_t cols) const {
    return bf16 ? bf16_matrix(bf16, rows, cols) : matrix(fp32, rows, cols);
  }
};
// The workspace buffer for such an operand of `values` values, in the type the executor's products
// take: fp32_name or bf16_name (named by the caller, so no name is built per call).
ProductOperand product_operand(Executor& ex, Workspace& ws, std::string_view fp32_name,
                               std::string_view bf16_name, int64_t values);

// Whether a product overwrites its output, adds to it, or takes itself away from it.
enum class Write { kOverwrite, kAccumulate, kSubtract };

// y (+|-)= x w:  x [rows, n_in], w [n_in, n_out], y [rows, n_out].
void linear_forward(Executor& ex, MatrixView x, MatrixView w, MutableMatrixView y,
                    Write write = Write::kOverwrite);
// dx (+|-)= dy w^T:  dy [rows, n_out], w [n_in, n_out], dx [rows, n_in].
void linear_input_grad(Executor& ex, MatrixView dy, MatrixView w, MutableMatrixView dx,
                       Write write = Write::kOverwrite);
// dw += x^T dy:  x [rows, n_in], dy [rows, n_out], dw [n_in, n_out]. Gradients accumulate.
void linear_weight_grad(Executor& ex, MatrixView x, MatrixView dy, MutableMatrixView dw);

// A layer's backward through y = x w: dw += x^T dy, then dx (+|-)= dy w^T. dx may be x (it is
// written last) but must not overlap dy or w. Within a GemmOperandReuse scope the executor
// rounds dy (and x, w) once for both products where it rounds operands (the CPU at bf16).
void linear_backward(Executor& ex, MatrixView x, MatrixView w, MatrixView dy, MutableMatrixView dx,
                     MutableMatrixView dw, Write dx_write = Write::kOverwrite);

// Lets the executor reuse rounded GEMM operands (Executor::set_gemm_operand_reuse) while alive:
// inside, only the scope's products may write to their operands.
class GemmOperandReuse {
 public:
  explicit GemmOperandReuse(Executor& ex) : ex_(ex) { ex_.set_gemm_operand_reuse(true); }
  ~GemmOperandReuse() { ex_.set_gemm_operand_reuse(false); }
  GemmOperandReuse(const GemmOperandReuse&) = delete;
  GemmOperandReuse& operator=(const GemmOperandReuse&) = delete;

 private:
  Executor& ex_;
};

}  // namespace rf
