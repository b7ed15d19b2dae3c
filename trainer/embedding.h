// Input embedding: token table plus position embedding (axial, learned, or none), with
// embedding dropout. Positions enter before the first layer, so LSH hashing sees them.
#pragma once

#include <vector>

#include "kernels/embedding.h"
#include "trainer/config.h"
#include "trainer/params.h"
#include "trainer/step_context.h"

namespace rf {

class EmbeddingLayer {
 public:
  EmbeddingLayer(ParamStore& store, const Config& cfg);

  // x [rows, d_model] = embedding of tokens (device array [rows]), each sequence's first token at
  // position first_position (cached generation embeds new tokens after a context).
  void forward(Kit& kit, ParamStore& p, const StepContext& step, const int32_t* tokens, float* x,
               int64_t first_position = 0) const;
  // The batch's rows grouped by token for backward() (uploads: done when the batch is staged).
  TokenGroups group_tokens(Kit& kit, const std::vector<int32_t>& host_tokens) const;
  // Parameter gradients += from dx [rows, d_model] (dx is modified: dropout is applied to it).
  // `groups` are the same tokens grouped by group_tokens().
  void backward(Kit& kit, ParamStore& p, const StepContext& step, const TokenGroups& groups,
                float* dx) const;

 private:
  PositionTable position_table(ParamStore& p) const;
  DropoutMask mask(const StepContext& step) const;

  int64_t vocab_, d_model_, max_len_;
  PositionKind position_;
  int64_t n1_ = 1, n2_ = 1, d1_ = 0, d2_ = 0;
  double dropout_;
  int table_ = -1, axial_a_ = -1, axial_b_ = -1, learned_ = -1;
};

}  // namespace rf
