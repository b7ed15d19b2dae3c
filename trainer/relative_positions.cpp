#include "trainer/relative_positions.h"

#include <cmath>

#include "kernels/elementwise.h"
#include "kernels/linear.h"
#include "kernels/reductions.h"
#include "kernels/relative_positions.h"

namespace rf {
namespace {

RelativeScoresArgs scores_args(int64_t batch, int64_t seq_len, int64_t heads, int64_t d,
                               int64_t distances) {
  RelativeScoresArgs a;
  a.batch = batch;
  a.heads = heads;
  a.seq_len = seq_len;
  a.d = d;
  a.distances = distances;
  a.scale = 1.0f / std::sqrt(static_cast<float>(d));  // as the content term's keys
  return a;
}

}  // namespace

RelativePositionTerm::RelativePositionTerm(ParamStore& store, const Config& cfg,
                                           const std::string& prefix)
    : d_model_(cfg.model.d_model),
      n_heads_(cfg.model.n_heads),
      d_head_(cfg.model.d_head),
      clamp_len_(cfg.model.clamp_len) {
  const int64_t hd = n_heads_ * d_head_;
  w_r_ = store.add(prefix + ".w_r", {d_model_, hd}, {InitKind::kGlorotUniform, 1.0f, d_model_, hd},
                   true);
  // The official code draws both biases from N(0, 0.02).
  u_ = store.add(prefix + ".r_w_bias", {hd}, {InitKind::kNormal, 0.02f}, false);
  v_ = store.add(prefix + ".r_r_bias", {hd}, {InitKind::kNormal, 0.02f}, false);
}

void RelativePositionTerm::project_distances(Kit& kit, ParamStore& p, int64_t distances,
                                             float* r) const {
  float* table = kit.ws.floats("rel.table", distances * d_model_);
  relative_sinusoids(kit.ex, table, distances, d_model_, clamp_len_);
  linear_forward(kit.ex, matrix(table, distances, d_model_), p.weight(w_r_),
                 matrix(r, distances, n_heads_ * d_head_));
}

RelativePositionTerm::Prepared RelativePositionTerm::forward_with_distances(
    Kit& kit, ParamStore& p, int64_t rows, const float* q, const float* r,
    int64_t distances) const {
  const int64_t hd = n_heads_ * d_head_;
  float* qu = kit.ws.floats("rel.qu", rows * hd);
  float* qv = kit.ws.floats("rel.qv", rows * hd);
  float* scores = kit.ws.floats("rel.scores", rows * n_heads_ * distances);
  kit.ex.copy(qu, q, static_cast<size_t>(rows * hd) * sizeof(float));
  add_row_bias(kit.ex, qu, p.param(u_), rows, hd);
  kit.ex.copy(qv, q, static_cast<size_t>(rows * hd) * sizeof(float));
  add_row_bias(kit.ex, qv, p.param(v_), rows, hd);
  // (The products see the rows only: batch * seq_len of a micro-batch, or the new positions.)
  RelativeScoresArgs a = scores_args(1, rows, n_heads_, d_head_, distances);
  a.qv = qv;
  a.r = r;
  relative_scores(kit.ex, a, scores);
  return {qu, scores, distances};
}

RelativePositionTerm::Prepared RelativePositionTerm::forward(Kit& kit, ParamStore& p,
                                                             const StepContext& step,
                                                             const float* q,
                                                             int64_t distances) const {
  float* r = kit.ws.floats("rel.r", distances * n_heads_ * d_head_);
  project_distances(kit, p, distances, r);
  return forward_with_distances(kit, p, step.rows(), q, r, distances);
}

float* RelativePositionTerm::score_gradient_buffer(Kit& kit, const StepContext& step,
                                                   int64_t distances) const {
  return kit.ws.floats("rel.dscores", step.batch * n_heads_ * step.seq_len * distances);
}

void RelativePositionTerm::backward(Kit& kit, ParamStore& p, const StepContext& step, float* dq,
                                    const float* dscores, int64_t distances) const {
  const int64_t hd = n_heads_ * d_head_, rows = step.rows();
  const float* table = kit.ws.floats("rel.table", distances * d_model_);
  RelativeScoresArgs a = scores_args(step.batch, step.seq_len, n_heads_, d_head_, distances);
  a.qv = kit.ws.floats("rel.qv", rows * hd);
  a.r = kit.ws.floats("rel.r", distances * hd);
  float* dqv = kit.ws.floats("rel.dqv", rows * hd);
  float* dr = kit.ws.floats("rel.dr", distances * hd);
  add_column_sums(kit.ex, kit.ws, dq, rows, hd, p.grad(u_));  // du: dq is d/d(q + u) here
  relative_scores_backward(kit.ex, a, dscores, dqv, dr);
  add_column_sums(kit.ex, kit.ws, dqv, rows, hd, p.grad(v_));
  add_scaled(kit.ex, dq, dqv, 1.0f, rows * hd);
  linear_weight_grad(kit.ex, matrix(table, distances, d_model_), matrix(dr, distances, hd),
                     p.weight_grad(w_r_));
}

}  // namespace rf
