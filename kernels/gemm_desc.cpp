#include "kernels/gemm_desc.h"

#include <algorithm>
#include <sstream>

namespace rf {

GemmPart gemm_part(const GemmDesc& d, int64_t k0, int64_t depth, bool cut_columns, int64_t first,
                   int64_t count) {
  GemmPart p{d};
  p.d.k = depth;
  // Column k0 of op(A) and row k0 of op(B) in their stored (column-major) layouts.
  p.a_offset = d.trans_a ? k0 : k0 * d.lda;
  p.b_offset = d.trans_b ? k0 * d.ldb : k0;
  if (cut_columns) {  // columns of op(B) and C
    p.b_offset += d.trans_b ? first : first * d.ldb;
    p.c_offset = first * d.ldc;
    p.d.n = count;
  } else {  // rows of op(A) and C
    p.a_offset += d.trans_a ? first * d.lda : first;
    p.c_offset = first;
    p.d.m = count;
  }
  return p;
}

std::string gemm_desc_problem(const GemmDesc& d) {
  std::ostringstream why;
  const int64_t rows_a = d.trans_a ? d.k : d.m;
  const int64_t rows_b = d.trans_b ? d.n : d.k;
  if (d.m < 0 || d.n < 0 || d.k < 0)
    why << "negative size m=" << d.m << " n=" << d.n << " k=" << d.k;
  else if (d.batch < 1)
    why << "batch " << d.batch << " < 1";
  else if (d.lda < std::max<int64_t>(1, rows_a))
    why << "lda " << d.lda << " < " << rows_a;
  else if (d.ldb < std::max<int64_t>(1, rows_b))
    why << "ldb " << d.ldb << " < " << rows_b;
  else if (d.ldc < std::max<int64_t>(1, d.m))
    why << "ldc " << d.ldc << " < " << d.m;
  else if (d.m > INT32_MAX || d.n > INT32_MAX || d.k > INT32_MAX || d.lda > INT32_MAX ||
           d.ldb > INT32_MAX || d.ldc > INT32_MAX || d.batch > INT32_MAX)
    why << "a size or leading dimension exceeds the 32-bit range of BLAS";
  else if ((d.a_type == OperandType::kBf16 || d.b_type == OperandType::kBf16) && d.batch != 1)
    why << "bf16 operands are taken by single products only (batch " << d.batch << ")";
  return why.str();
}

GemmDesc to_column_major(const RowMajorGemm& g) {
  GemmDesc d;
  d.trans_a = g.trans_b;
  d.trans_b = g.trans_a;
  d.m = g.n;
  d.n = g.m;
  d.k = g.k;
  d.lda = g.ldb;
  d.ldb = g.lda;
  d.ldc = g.ldc;
  d.stride_a = g.stride_b;
  d.stride_b = g.stride_a;
  d.stride_c = g.stride_c;
  d.batch = g.batch;
  d.alpha = g.alpha;
  d.beta = g.beta;
  d.a_type = g.b_type;
  d.b_type = g.a_type;
  return d;
}

}  // namespace rf
