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
// examples are one matrix, so each product below is one GEMM per head over all rows.
struct HeadMatrices {
  const RelativeScoresArgs& a;
  int64_t rows() const { return a.batch * a.seq_len; }
  int64_t hd() const { return a.heads * a.d; }
  int64_t scores_offset(int64_t h) const { return h * rows() * a.distances; }
  int64_t column(int64_t h) const { return h * a.d; }  // head h's columns of [rows, heads * d]
};

}  // namespace

void relative_scores(Executor& ex, const RelativeScoresArgs& a, float* scores) {
  const ScopedLauncherTimer timer(ex, "relative scores");
  const HeadMatrices m{a};
  for (int64_t h = 0; h < a.heads; ++h) {
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
    matmul(ex, g, a.qv + m.column(h), a.r + m.column(h), scores + m.scores_offset(h));
  }
}

void relative_scores_backward(Executor& ex, const RelativeScoresArgs& a, const float* dscores,
                              float* dqv, float* dr) {
  const ScopedLauncherTimer timer(ex, "relative scores");
  const HeadMatrices m{a};
  for (int64_t h = 0; h < a.heads; ++h) {
    const float* ds = dscores + m.scores_offset(h);
    // dqv[:, h cols] [rows, d] = scale * dscores_h [rows, L] r_h [L, d].
    RowMajorGemm g;
    g.m = m.rows();
    g.n = a.d;
    g.k = a.distances;
    g.lda = a.distances;
    g.ldb = m.hd();
    g.ldc = m.hd();
    g.alpha = a.scale;
    matmul(ex, g, ds, a.r + m.column(h), dqv + m.column(h));
    // dr_h [L, d] = scale * dscores_h^T [L, rows] qv[:, h cols] [rows, d]: every example's sum
    // inside one product.
    RowMajorGemm w;
    w.trans_a = true;
    w.m = a.distances;
    w.n = a.d;
    w.k = m.rows();
    w.lda = a.distances;
    w.ldb = m.hd();
    w.ldc = m.hd();
    w.alpha = a.scale;
    matmul(ex, w, ds, a.qv + m.column(h), dr + m.column(h));
  }
}

}  // namespace rf
