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

// Head h's columns of a [rows, heads * d] matrix start at h * d.
int64_t head_offset(const RelativeScoresArgs& a, int64_t h) { return h * a.d; }

}  // namespace

void relative_scores(Executor& ex, const RelativeScoresArgs& a, float* scores) {
  const ScopedLauncherTimer timer(ex, "relative scores");
  const int64_t hd = a.heads * a.d, T = a.seq_len, L = a.distances;
  for (int64_t h = 0; h < a.heads; ++h) {
    // For every example b: scores[b, h] [T, L] = scale * qv[b rows, h cols] [T, d] r_h^T [d, L].
    RowMajorGemm g;
    g.trans_b = true;
    g.m = T;
    g.n = L;
    g.k = a.d;
    g.lda = hd;
    g.ldb = hd;
    g.ldc = L;
    g.stride_a = T * hd;
    g.stride_b = 0;
    g.stride_c = a.heads * T * L;
    g.batch = a.batch;
    g.alpha = a.scale;
    matmul(ex, g, a.qv + head_offset(a, h), a.r + head_offset(a, h),
            scores + h * T * L);
  }
}

void relative_scores_backward(Executor& ex, const RelativeScoresArgs& a, const float* dscores,
                              float* dqv, float* dr) {
  const ScopedLauncherTimer timer(ex, "relative scores");
  const int64_t hd = a.heads * a.d, T = a.seq_len, L = a.distances;
  for (int64_t h = 0; h < a.heads; ++h) {
    // dqv[b rows, h cols] [T, d] = scale * dscores[b, h] [T, L] r_h [L, d], every b at once.
    RowMajorGemm g;
    g.m = T;
    g.n = a.d;
    g.k = L;
    g.lda = L;
    g.ldb = hd;
    g.ldc = hd;
    g.stride_a = a.heads * T * L;
    g.stride_b = 0;
    g.stride_c = T * hd;
    g.batch = a.batch;
    g.alpha = a.scale;
    matmul(ex, g, dscores + h * T * L, a.r + head_offset(a, h),
            dqv + head_offset(a, h));
    // dr_h [L, d] = scale * sum_b dscores[b, h]^T [L, T] qv[b rows, h cols] [T, d]: one product
    // per example, accumulated in order (a batched product cannot sum over its batch).
    for (int64_t b = 0; b < a.batch; ++b) {
      RowMajorGemm w;
      w.trans_a = true;
      w.m = L;
      w.n = a.d;
      w.k = T;
      w.lda = L;
      w.ldb = hd;
      w.ldc = hd;
      w.alpha = a.scale;
      w.beta = b == 0 ? 0.0f : 1.0f;
      matmul(ex, w, dscores + (b * a.heads + h) * T * L,
              a.qv + b * T * hd + head_offset(a, h), dr + head_offset(a, h));
    }
  }
}

}  // namespace rf
