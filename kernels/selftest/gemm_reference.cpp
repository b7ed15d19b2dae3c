#include "kernels/selftest/gemm_reference.h"

#include <vector>

namespace rf::selftest {

GemmDesc padded_gemm_desc(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                          int64_t batch, float alpha, float beta) {
  GemmDesc d;
  d.trans_a = trans_a;
  d.trans_b = trans_b;
  d.m = m;
  d.n = n;
  d.k = k;
  d.lda = (trans_a ? k : m) + 3;
  d.ldb = (trans_b ? n : k) + 2;
  d.ldc = m + 1;
  d.stride_a = d.lda * (trans_a ? m : k) + 5;
  d.stride_b = d.ldb * (trans_b ? k : n) + 4;
  d.stride_c = d.ldc * n + 6;
  d.batch = batch;
  d.alpha = alpha;
  d.beta = beta;
  return d;
}

int64_t extent_a(const GemmDesc& d) {
  return d.stride_a * (d.batch - 1) + d.lda * (d.trans_a ? d.m : d.k);
}
int64_t extent_b(const GemmDesc& d) {
  return d.stride_b * (d.batch - 1) + d.ldb * (d.trans_b ? d.k : d.n);
}
int64_t extent_c(const GemmDesc& d) {
  return d.stride_c * (d.batch - 1) + d.ldc * d.n;
}

std::vector<float> reference_gemm(const GemmDesc& d, const std::vector<float>& a,
                                  const std::vector<float>& b, std::vector<float> c) {
  // Row i of op(A) and column j of op(B) are copied out first, so that each dot product reads
  // two contiguous arrays: the same sums in the same order as indexing the operands in the loop,
  // which read them a leading dimension apart with a branch per element and was a third of the
  // bf16 selftest sweep's time under ASan.
  std::vector<float> a_rows(static_cast<size_t>(d.m * d.k)),
      b_columns(static_cast<size_t>(d.n * d.k));
  for (int64_t bi = 0; bi < d.batch; ++bi) {
    const float* ab = a.data() + bi * d.stride_a;
    const float* bb = b.data() + bi * d.stride_b;
    for (int64_t i = 0; i < d.m; ++i)
      for (int64_t p = 0; p < d.k; ++p)
        a_rows[i * d.k + p] = d.trans_a ? ab[p + i * d.lda] : ab[i + p * d.lda];
    for (int64_t j = 0; j < d.n; ++j)
      for (int64_t p = 0; p < d.k; ++p)
        b_columns[j * d.k + p] = d.trans_b ? bb[j + p * d.ldb] : bb[p + j * d.ldb];
    for (int64_t j = 0; j < d.n; ++j) {
      const float* column = b_columns.data() + j * d.k;
      for (int64_t i = 0; i < d.m; ++i) {
        const float* row = a_rows.data() + i * d.k;
        double s = 0.0;
        for (int64_t p = 0; p < d.k; ++p) s += static_cast<double>(row[p]) * column[p];
        float& out = c[bi * d.stride_c + i + j * d.ldc];
        out = static_cast<float>(d.alpha * s + d.beta * out);
      }
    }
  }
  return c;
}

}  // namespace rf::selftest
