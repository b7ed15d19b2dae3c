// Transformer-XL's relative position term of one attention layer (model.position = relative): its
// parameters, the projection W_R [d_model, heads * d_head] of the sinusoid of each distance and the
// biases u and v [heads * d_head], and what runs around the fused attention
// (kernels/relative_positions.h has the arithmetic): before it, the attention's queries q + u and
// its relative scores (q + v) . W_R R_dist / sqrt(d_head); after its backward, their gradients.
#pragma once

#include "trainer/config.h"
#include "trainer/params.h"
#include "trainer/step_context.h"

namespace rf {

class RelativePositionTerm {
 public:
  RelativePositionTerm(ParamStore& store, const Config& cfg, const std::string& prefix);

  struct Prepared {
    const float* queries = nullptr;  // q + u [rows, heads * d_head], the attention's queries
    const float* scores = nullptr;   // [heads, batch * seq_len, distances], its rel_scores
    int64_t distances = 0;
  };
  // For the projections' queries q [rows, heads * d_head] of a micro-batch, when the attention's
  // windows hold keys up to distances - 1 back.
  Prepared forward(Kit& kit, ParamStore& p, const StepContext& step, const float* q,
                   int64_t distances) const;
  // After the attention's backward, with dq = dL/d(q + u) and dscores = dL/d(rel_scores) from
  // it, and the workspace still holding forward()'s buffers: adds the relative scores' part to dq
  // (then dL/dq) and accumulates the gradients of W_R, u and v.
  void backward(Kit& kit, ParamStore& p, const StepContext& step, float* dq, const float* dscores,
                int64_t distances) const;
  // The workspace buffer the attention's backward writes dL/d(rel_scores) to.
  float* score_gradient_buffer(Kit& kit, const StepContext& step, int64_t distances) const;

  // forward() in its two parts, for cached generation, which computes r once per cache (it
  // depends on the weights only): r [distances, heads * d_head] = W_R R_dist, then for the
  // projections q [rows, heads * d_head] the queries q + u and the scores (q + v) . r
  // ([heads, rows, distances]).
  void project_distances(Kit& kit, ParamStore& p, int64_t distances, float* r) const;
  Prepared forward_with_distances(Kit& kit, ParamStore& p, int64_t rows, const float* q,
                                  const float* r, int64_t distances) const;

 private:
  int64_t d_model_, n_heads_, d_head_, clamp_len_;
  int w_r_ = -1, u_ = -1, v_ = -1;
};

}  // namespace rf
