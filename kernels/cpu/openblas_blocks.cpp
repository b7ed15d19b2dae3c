#include "kernels/cpu/openblas_blocks.h"

#include <cblas.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>

namespace rf::cpu {
namespace {

CBLAS_TRANSPOSE cblas_trans(bool t) {
  return t ? CblasTrans : CblasNoTrans;
}

int as_int(int64_t v) {
  return static_cast<int>(v);
}

// A block of a product whose C has one column (n == 1: a decode step's single row) or one row
// (m == 1), as OpenBLAS's matrix-vector product: sgemm would pack the whole matrix operand for
// one vector (sgemm_incopy took 23% of a 2K-context decode step), sgemv reads it once. Each
// output is one dot product, so the bits depend on the shape only, as in the blocks.
void matrix_vector(const GemmDesc& d, int64_t m, int64_t n, const float* a, const float* b,
                   float* c) {
  // (beta = 0 must ignore what C held, NaN included, whatever sgemv's scaling does with it.)
  if (d.beta == 0.0f) {
    for (int64_t e = 0; e < std::max(m, n); ++e) c[n == 1 ? e : e * d.ldc] = 0.0f;
  }
  if (n == 1) {  // C [m] = op(A) [m, k] x, x = op(B)'s column
    cblas_sgemv(CblasColMajor, cblas_trans(d.trans_a), as_int(d.trans_a ? d.k : m),
                as_int(d.trans_a ? m : d.k), d.alpha, a, as_int(d.lda), b,
                as_int(d.trans_b ? d.ldb : 1), d.beta, c, 1);
  } else {  // C's row [n] = op(B)^T x, x = op(A)'s row
    cblas_sgemv(CblasColMajor, cblas_trans(!d.trans_b), as_int(d.trans_b ? n : d.k),
                as_int(d.trans_b ? d.k : n), d.alpha, b, as_int(d.ldb), a,
                as_int(d.trans_a ? 1 : d.lda), d.beta, c, as_int(d.ldc));
  }
}

}  // namespace

int64_t openblas_block_count_here() {
  static const int64_t count = openblas_block_count(sysconf(_SC_NPROCESSORS_ONLN));
  return count;
}

// OpenBLAS 0.3.21's own threading splits a product so that some sums depend on the thread count
// (its Zen kernel on AMD EPYC: 1 to 8 threads gave different bits for every deep shape of
// tests/gemm_precision_test.cpp), hence blocks, each a single-threaded call (OpenBLAS runs
// single-threaded inside an OpenMP parallel region), spread over the threads.
// (A grid of squarer blocks packs less of A and B: 2026-12-03 on an AVX2 EPYC it made the
// 1024 x 1024 x 256 products 3-6% faster alone, nothing visible in a training step, and changed
// the bits; not kept. Fewer blocks along one side did better: the header.)
void multiply_in_openblas_blocks(const GemmDesc& d, const float* a, const float* b, float* c,
                                 int64_t block_count) {
  const bool cut_columns = d.n >= d.m;
  const int64_t extent = cut_columns ? d.n : d.m;
  const int64_t block = openblas_block_width(extent, block_count);
  const int64_t blocks = (extent + block - 1) / block;
  auto run_block = [&](int64_t i) {
    const int64_t first = i * block;
    const GemmPart part = gemm_part(d, 0, d.k, cut_columns, first, std::min(block, extent - first));
    const int64_t m = part.d.m, n = part.d.n;
    const float* ab = a + part.a_offset;
    const float* bb = b + part.b_offset;
    float* cb = c + part.c_offset;
    if ((n == 1 || m == 1) && d.k > 0) {  // (sgemv returns at once on a zero depth, unscaled)
      matrix_vector(d, m, n, ab, bb, cb);
      return;
    }
    cblas_sgemm(CblasColMajor, cblas_trans(d.trans_a), cblas_trans(d.trans_b), as_int(m), as_int(n),
                as_int(d.k), d.alpha, ab, as_int(d.lda), bb, as_int(d.ldb), d.beta, cb,
                as_int(d.ldc));
  };
  if (blocks == 1) {
    // A region of one thread is not "in parallel" for OpenBLAS, which then takes its thread
    // count from this region's setting: 1.
#pragma omp parallel num_threads(1)
    {
      omp_set_num_threads(1);
      run_block(0);
    }
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < blocks; ++i) run_block(i);
}

}  // namespace rf::cpu
