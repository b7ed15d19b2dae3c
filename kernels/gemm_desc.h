// One description of a (strided, batched) GEMM in cuBLAS's column-major terms. The CUDA executor
// hands it to cublasGemmStridedBatchedEx unchanged; the CPU executor hands the same fields to
// column-major CBLAS (OpenBLAS). CPU tests of this description therefore check the exact
// arguments cuBLAS receives (docs/architecture.md, "one GEMM mapping, two executors").
#pragma once

#include <cstdint>
#include <string>

namespace rf {

// What a GEMM operand's memory holds: fp32 values, or bf16 values (the upper 16 bits of fp32,
// rounded to nearest even as kernels/ops/bf16_round.h does) that the kernel producing them wrote
// already rounded, so the product need not round them again. Only executors whose
// gemm_takes_bf16_operands() is true accept bf16 operands; C is always fp32.
enum class OperandType { kFp32, kBf16 };

struct GemmDesc {
  bool trans_a = false;                              // op(A) = A^T when set
  bool trans_b = false;                              // op(B) = B^T when set
  int64_t m = 0;                                     // rows of op(A) and C
  int64_t n = 0;                                     // columns of op(B) and C
  int64_t k = 0;                                     // columns of op(A) = rows of op(B)
  int64_t lda = 0, ldb = 0, ldc = 0;                 // leading dimensions (column-major)
  int64_t stride_a = 0, stride_b = 0, stride_c = 0;  // elements between batch entries
  int64_t batch = 1;
  float alpha = 1.0f;
  float beta = 0.0f;  // C = alpha * op(A) op(B) + beta * C
  OperandType a_type = OperandType::kFp32, b_type = OperandType::kFp32;
};

// Empty when the description is valid, otherwise what is wrong with it.
std::string gemm_desc_problem(const GemmDesc& d);

// What one product reads of an operand as stored: `cols` columns of `rows` values, `ld` apart
// (column-major). For executors that round an operand before multiplying (the CPU's and the GPU's
// bf16 products).
struct OperandLayout {
  int64_t rows = 0, cols = 0, ld = 0;
  // Values from the first to the last one read.
  int64_t span() const { return ld * (cols - 1) + rows; }
};
inline OperandLayout operand_layout_a(const GemmDesc& d) {
  return {d.trans_a ? d.k : d.m, d.trans_a ? d.m : d.k, d.lda};
}
inline OperandLayout operand_layout_b(const GemmDesc& d) {
  return {d.trans_b ? d.n : d.k, d.trans_b ? d.k : d.n, d.ldb};
}

// A part of one product: depth [k0, k0 + depth) (columns of op(A), rows of op(B)) and C's columns
// [first, first + count) when cut_columns, else its rows. `d` describes the part (the product's
// fields otherwise); the offsets, in elements, are where its A, B and C start within the
// product's. The CPU executor's output blocks and oneDNN's depth slices and blocks cut this way.
struct GemmPart {
  GemmDesc d;
  int64_t a_offset = 0, b_offset = 0, c_offset = 0;
};
GemmPart gemm_part(const GemmDesc& d, int64_t k0, int64_t depth, bool cut_columns, int64_t first,
                   int64_t count);

// A GEMM stated in row-major terms, the way the model code thinks of its tensors:
//   C[M, N] = alpha * op(A) op(B) + beta * C, with op(A) [M, K] and op(B) [K, N], all row-major.
struct RowMajorGemm {
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0;
  int64_t lda = 0, ldb = 0, ldc = 0;  // row strides (elements between rows)
  int64_t stride_a = 0, stride_b = 0, stride_c = 0;
  int64_t batch = 1;
  float alpha = 1.0f, beta = 0.0f;
  OperandType a_type = OperandType::kFp32, b_type = OperandType::kFp32;
};

// Column-major description of a row-major product. Row-major C is column-major C^T, and
// C^T = op(B)^T op(A)^T, so the operands swap: the returned description's A is the row-major B.
GemmDesc to_column_major(const RowMajorGemm& g);

}  // namespace rf
