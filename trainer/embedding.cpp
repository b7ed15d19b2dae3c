#include "trainer/embedding.h"

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
                             const int32_t* tokens, float* x) const {
  RF_CHECK(step.seq_len <= max_len_, "sequence longer than the position table");
  kit.ex.run(step.rows() * d_model_, EmbedForward{tokens, p.param(table_), position_table(p), x,
                                                  step.seq_len, d_model_, mask(step)});
}

void EmbeddingLayer::backward(Kit& kit, ParamStore& p, const StepContext& step,
                              const std::vector<int32_t>& host_tokens, float* dx) const {
  const int64_t rows = step.rows();
  const DropoutMask m = mask(step);
  if (m.active()) kit.ex.run(rows, ApplyDropout{dx, d_model_, m});
  // Group rows by token (counting sort on the host) so each table row sums its rows in order.
  // Host scratch kept between steps (no allocation per step).
  std::vector<int32_t>& offsets = group_offsets_;
  std::vector<int32_t>& order = group_order_;
  std::vector<int32_t>& next = group_next_;
  offsets.assign(vocab_ + 1, 0);
  order.resize(rows);
  for (int32_t t : host_tokens) ++offsets[t + 1];
  for (int64_t v = 0; v < vocab_; ++v) offsets[v + 1] += offsets[v];
  next.assign(offsets.begin(), offsets.end() - 1);
  for (int64_t r = 0; r < rows; ++r) order[next[host_tokens[r]]++] = static_cast<int32_t>(r);
  int32_t* dev_offsets = kit.ws.ints("emb.offsets", vocab_ + 1);
  int32_t* dev_order = kit.ws.ints("emb.order", rows);
  kit.ex.upload(dev_offsets, offsets.data(), offsets.size() * sizeof(int32_t));
  kit.ex.upload(dev_order, order.data(), order.size() * sizeof(int32_t));
  kit.ex.run(vocab_ * d_model_,
             EmbedTokenBackward{dev_offsets, dev_order, dx, p.grad(table_), d_model_});
  if (position_ == PositionKind::kAxial) {
    kit.ex.run(n1_ * d1_ + n2_ * d2_,
               AxialPositionBackward{dx, p.grad(axial_a_), p.grad(axial_b_), step.batch,
                                     step.seq_len, d_model_, n1_, n2_, d1_, d2_});
  } else if (position_ == PositionKind::kLearned) {
    kit.ex.run(step.seq_len * d_model_,
               LearnedPositionBackward{dx, p.grad(learned_), step.batch, step.seq_len, d_model_});
  }
}

}  // namespace rf
