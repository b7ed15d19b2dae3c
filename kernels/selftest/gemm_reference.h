// GEMM descriptions that catch a mapping which ignores a leading dimension or a batch stride, and
// the product a description defines, computed naively in double: shared by the selftest's GEMM
// checks and the unit tests of the GEMM mapping.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/gemm_desc.h"

namespace rf::selftest {

// Leading dimensions larger than the rows, and gaps between batch entries.
GemmDesc padded_gemm_desc(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                          int64_t batch, float alpha, float beta);

// Elements each operand spans, batch entries included.
int64_t extent_a(const GemmDesc& d);
int64_t extent_b(const GemmDesc& d);
int64_t extent_c(const GemmDesc& d);

// C = alpha op(A) op(B) + beta C as the description defines it, accumulated in double.
std::vector<float> reference_gemm(const GemmDesc& d, const std::vector<float>& a,
                                  const std::vector<float>& b, std::vector<float> c);

}  // namespace rf::selftest
