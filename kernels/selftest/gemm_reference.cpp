#include "kernels/selftest/gemm_reference.h"

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
  for (int64_t bi = 0; bi < d.batch; ++bi)
    for (int64_t j = 0; j < d.n; ++j)
      for (int64_t i = 0; i < d.m; ++i) {
        double s = 0.0;
        for (int64_t p = 0; p < d.k; ++p) {
          const float av =
              d.trans_a ? a[bi * d.stride_a + p + i * d.lda] : a[bi * d.stride_a + i + p * d.lda];
          const float bv =
              d.trans_b ? b[bi * d.stride_b + j + p * d.ldb] : b[bi * d.stride_b + p + j * d.ldb];
          s += static_cast<double>(av) * bv;
        }
        float& out = c[bi * d.stride_c + i + j * d.ldc];
        out = static_cast<float>(d.alpha * s + d.beta * out);
      }
  return c;
}

}  // namespace rf::selftest
