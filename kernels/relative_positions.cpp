#include "kernels/relative_positions.h"

#include "base/error.h"
#include "kernels/executor.h"
#include "kernels/gemm_desc.h"
#include "kernels/kernel_ops.h"
#include "kernels/profile.h"

namespace rf {

void relative_sinusoids(Executor& ex, float* table, int64_t rows, int64_t width,
                        int64_t clamp_len) {
  RF_CHECK(width % 2 == 0, "sinusoid width ", width, " is odd");
  ex.run(rows * width, RelativeSinusoids{table, width, clamp_len});
}

namespace {

// The scores are head-major, [heads, batch * seq_len, distances]: every head's scores of all
// examples are one matrix, so each product below is one GEMM per head over all rows (or one
// batch of them).
struct HeadMatrices {
  const RelativeScoresArgs& a;
  int64_t rows() const { return a.batch * a.seq_len; }
  int64_t hd() const { return a.heads * a.d; }
  int64_t scores_offset(int64_t h) const { return h * rows() * a.distances; }
  int64_t column(int64_t h) const { return h * a.d; }  // head h's columns of [rows, heads * d]
  // g as a batch over the heads, each operand's entries the given strides apart.
  RowMajorGemm over_heads(RowMajorGemm g, int64_t stride_a, int64_t stride_b,
                          int64_t stride_c) const {
    g.batch = a.heads;
    g.stride_a = stride_a;
    g.stride_b = stride_b;
    g.stride_c = stride_c;
    return g;
  }
};

// Runs g (g.batch = heads, operands strides apart) as one batched product, or head by head.
// The CPU executor runs a batch as one single-threaded OpenBLAS product per thread, and each
// single product on all threads in oneDNN (kernels/cpu/cpu_executor.cpp). With --profile-ops on
// the Transformer-XL example (4 heads of 32, 2048 rows, 256 distances; 2026-12-04): the scores
// 3.33 ms a step head by head against 5.26 batched, the query gradients 2.40 against 3.02, and
// the distances' gradients, whose depth is every row, 4.00 against 2.82. On a GPU a batch is one
// launch instead of one per head.
void product_per_head(Executor& ex, RowMajorGemm g, bool batched, const float* a, const float* b,
                      float* c) {
  if (batched) {
    matmul(ex, g, a, b, c);
    return;
  }
  const int64_t heads = g.batch;
  g.batch = 1;
  for (int64_t h = 0; h < heads; ++h)
    matmul(ex, g, a + h * g.stride_a, b + h * g.stride_b, c + h * g.stride_c);
}

}  // namespace

void relative_scores(Executor& ex, const RelativeScoresArgs& a, float* scores) {
  const ScopedLauncherTimer timer(ex, "relative scores");
  const HeadMatrices m{a};
  // scores_h [rows, L] = scale * qv[:, h cols] [rows, d] r_h^T [d, L].
  RowMajorGemm g;
  g.trans_b = true;
  g.m = m.rows();
  g.n = a.distances;
  g.k = a.d;
  g.lda = m.hd();
  g.ldb = m.hd();
  g.ldc = a.distances;
  g.alpha = a.scale;
  product_per_head(ex, m.over_heads(g, m.column(1), m.column(1), m.scores_offset(1)),
                   ex.device() == Device::kCuda, a.qv, a.r, scores);
}

void relative_scores_backward(Executor& ex, const RelativeScoresArgs& a, const float* dscores,
                              float* dqv, float* dr) {
  const ScopedLauncherTimer timer(ex, "relative scores");
  const HeadMatrices m{a};
  // dqv[:, h cols] [rows, d] = scale * dscores_h [rows, L] r_h [L, d].
  RowMajorGemm g;
  g.m = m.rows();
  g.n = a.d;
  g.k = a.distances;
  g.lda = a.distances;
  g.ldb = m.hd();
  g.ldc = m.hd();
  g.alpha = a.scale;
  product_per_head(ex, m.over_heads(g, m.scores_offset(1), m.column(1), m.column(1)),
                   ex.device() == Device::kCuda, dscores, a.r, dqv);
  // dr_h [L, d] = scale * dscores_h^T [L, rows] qv[:, h cols] [rows, d]: every example's sum
  // inside one product, every head in one batch.
  RowMajorGemm w;
  w.trans_a = true;
  w.m = a.distances;
  w.n = a.d;
  w.k = m.rows();
  w.lda = a.distances;
  w.ldb = m.hd();
  w.ldc = m.hd();
  w.alpha = a.scale;
  product_per_head(ex, m.over_heads(w, m.scores_offset(1), m.column(1), m.column(1)), true, dscores,
                   a.qv, dr);
}

}  // namespace rf
