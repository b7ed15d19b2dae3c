#include "trainer/embedding.h"

#include "kernels/embedding.h"

namespace rf {

EmbeddingLayer::EmbeddingLayer(ParamStore& store, const Config& cfg)
    : vocab_(cfg.model.vocab_size),
      d_model_(cfg.model.d_model),
      max_len_(cfg.train.seq_len),
      dropout_(cfg.model.dropout) {
  // trax and HF initialise token and axial tables with N(0, 1).
  table_ = store.add("embedding.tokens", {vocab_, d_model_}, {InitKind::kNormal, 1.0f}, true);
  switch (cfg.model.position) {
    case PositionMode::kAxial: {
      position_ = PositionKind::kAxial;
      const std::vector<int64_t> dims = cfg.axial_dims();
      n1_ = cfg.model.axial_shape[0];
      n2_ = cfg.model.axial_shape[1];
      d1_ = dims[0];
      d2_ = dims[1];
      axial_a_ = store.add("embedding.axial_a", {n1_, d1_}, {InitKind::kNormal, 1.0f}, false);
      axial_b_ = store.add("embedding.axial_b", {n2_, d2_}, {InitKind::kNormal, 1.0f}, false);
      break;
    }
    case PositionMode::kLearned:
      position_ = PositionKind::kLearned;
      learned_ =
          store.add("embedding.positions", {max_len_, d_model_}, {InitKind::kNormal, 1.0f}, false);
      break;
    case PositionMode::kNone:
    case PositionMode::kRelative:  // (positions enter through the attention scores)
      position_ = PositionKind::kNone;
      break;
  }
}

PositionTable EmbeddingLayer::position_table(ParamStore& p) const {
  PositionTable t;
  t.kind = position_;
  if (position_ == PositionKind::kAxial) {
    t.axial_a = p.param(axial_a_);
    t.axial_b = p.param(axial_b_);
    t.n2 = n2_;
    t.d1 = d1_;
    t.d2 = d2_;
  } else if (position_ == PositionKind::kLearned) {
    t.learned = p.param(learned_);
  }
  return t;
}

DropoutMask EmbeddingLayer::mask(const StepContext& step) const {
  return step.dropout(RngPurpose::kEmbeddingDropout, 0, dropout_, d_model_);
}

void EmbeddingLayer::forward(Kit& kit, ParamStore& p, const StepContext& step,
                             const int32_t* tokens, float* x, int64_t first_position) const {
  // (Without position embeddings any length embeds: relative positions enter in the attention.)
  RF_CHECK(position_ == PositionKind::kNone || first_position + step.seq_len <= max_len_,
           "sequence longer than the position table");
  EmbeddingArgs a;
  a.tokens = tokens;
  a.table = p.param(table_);
  a.positions = position_table(p);
  a.out = x;
  a.rows = step.rows();
  a.seq_len = step.seq_len;
  a.d_model = d_model_;
  a.first_position = first_position;
  a.dropout = mask(step);
  embedding_forward(kit.ex, a);
}

TokenGroups EmbeddingLayer::group_tokens(Kit& kit, const std::vector<int32_t>& host_tokens) const {
  return group_rows_by_token(kit.ex, kit.ws, host_tokens.data(),
                             static_cast<int64_t>(host_tokens.size()), vocab_);
}

void EmbeddingLayer::backward(Kit& kit, ParamStore& p, const StepContext& step,
                              const TokenGroups& groups, float* dx) const {
  EmbeddingBackwardArgs a;
  a.dx = dx;
  a.groups = groups;
  a.dtable = p.grad(table_);
  a.positions.kind = position_;
  if (position_ == PositionKind::kAxial) {
    a.positions.axial_a = p.grad(axial_a_);
    a.positions.axial_b = p.grad(axial_b_);
  } else if (position_ == PositionKind::kLearned) {
    a.positions.learned = p.grad(learned_);
  }
  a.positions.n1 = n1_;
  a.positions.n2 = n2_;
  a.positions.d1 = d1_;
  a.positions.d2 = d2_;
  a.batch = step.batch;
  a.seq_len = step.seq_len;
  a.d_model = d_model_;
  a.vocab = vocab_;
  a.dropout = mask(step);
  embedding_backward(kit.ex, a);
}

}  // namespace rf
