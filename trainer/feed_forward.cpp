#include "trainer/feed_forward.h"

#include <algorithm>

#include "kernels/reductions.h"

namespace rf {

FeedForwardLayer::FeedForwardLayer(ParamStore& store, const Config& cfg, int layer,
                                   const std::string& prefix)
    : norm_(store, prefix + ".norm", cfg.model.d_model),
      layer_(layer),
      d_model_(cfg.model.d_model),
      d_ff_(cfg.model.d_ff),
      chunk_(cfg.model.ff_chunk),
      activation_(cfg.model.activation),
      dropout_(cfg.model.dropout) {
  w1_ = store.add(prefix + ".w1", {d_model_, d_ff_}, {InitKind::kGlorotUniform, 1, d_model_, d_ff_},
                  true);
  b1_ = store.add(prefix + ".b1", {d_ff_}, {InitKind::kZeros}, false);
  w2_ = store.add(prefix + ".w2", {d_ff_, d_model_}, {InitKind::kGlorotUniform, 1, d_ff_, d_model_},
                  true);
  b2_ = store.add(prefix + ".b2", {d_model_}, {InitKind::kZeros}, false);
}

DropoutMask FeedForwardLayer::hidden_mask(const StepContext& step, int64_t row0) const {
  DropoutMask m =
      step.dropout(RngPurpose::kFeedForwardDropout, static_cast<uint32_t>(layer_), dropout_, d_ff_);
  m.row_offset = row0;
  return m;
}

DropoutMask FeedForwardLayer::output_mask(const StepContext& step, int64_t row0) const {
  DropoutMask m = step.dropout(RngPurpose::kFeedForwardOutputDropout, static_cast<uint32_t>(layer_),
                               dropout_, d_model_);
  m.row_offset = row0;
  return m;
}

void FeedForwardLayer::chunk_forward(Kit& kit, ParamStore& p, const StepContext& step,
                                     const float* x, int64_t row0, int64_t rows, float* z, float* h,
                                     float* a) const {
  norm_.forward(kit, p, x + row0 * d_model_, z, rows);
  matmul(kit.ex, {false, false, rows, d_ff_, d_model_, d_model_, d_ff_, d_ff_}, z, p.param(w1_), h);
  const RowSplit split = row_split(kit.ex, d_ff_);
  kit.ex.run(split.indices(rows), BiasActivationForward{h, a, p.param(b1_), split, activation_,
                                                        hidden_mask(step, row0)});
}

void FeedForwardLayer::forward_add(Kit& kit, ParamStore& p, const StepContext& step, const float* x,
                                   float* residual, float sign) const {
  const int64_t total = step.rows(), chunk = chunk_rows(total);
  float* z = kit.ws.floats("ff.z", chunk * d_model_);
  float* h = kit.ws.floats("ff.h", chunk * d_ff_);
  float* a = kit.ws.floats("ff.a", chunk * d_ff_);
  float* t = kit.ws.floats("ff.t", chunk * d_model_);
  for (int64_t row0 = 0; row0 < total; row0 += chunk) {
    const int64_t rows = std::min(chunk, total - row0);
    chunk_forward(kit, p, step, x, row0, rows, z, h, a);
    add_chunk_output(kit, p, step, a, t, row0, rows, residual, sign);
  }
}

void FeedForwardLayer::add_chunk_output(Kit& kit, ParamStore& p, const StepContext& step,
                                        const float* a, float* t, int64_t row0, int64_t rows,
                                        float* residual, float sign) const {
  matmul(kit.ex, {false, false, rows, d_model_, d_ff_, d_ff_, d_model_, d_model_}, a, p.param(w2_),
         t);
  const RowSplit split = row_split(kit.ex, d_model_);
  kit.ex.run(split.indices(rows),
             BiasDropoutResidualAdd{residual + row0 * d_model_, t, p.param(b2_), split, sign,
                                    output_mask(step, row0)});
}

void FeedForwardLayer::backward(Kit& kit, ParamStore& p, const StepContext& step, const float* x,
                                const float* dout, float* dx, float* reconstruct) const {
  const int64_t total = step.rows(), chunk = chunk_rows(total), D = d_model_, F = d_ff_;
  float* z = kit.ws.floats("ff.z", chunk * D);
  float* h = kit.ws.floats("ff.h", chunk * F);
  float* a = kit.ws.floats("ff.a", chunk * F);
  float* t = kit.ws.floats("ff.t", chunk * D);
  float* dz = kit.ws.floats("ff.dz", chunk * D);
  for (int64_t row0 = 0; row0 < total; row0 += chunk) {
    const int64_t rows = std::min(chunk, total - row0);
    chunk_forward(kit, p, step, x, row0, rows, z, h, a);
    if (reconstruct) add_chunk_output(kit, p, step, a, t, row0, rows, reconstruct, -1.0f);
    const float* g =
        through_dropout(kit, dout + row0 * D, rows, D, output_mask(step, row0), "ff.g");
    add_column_sums(kit.ex, kit.ws, g, rows, D, p.grad(b2_));
    // dw2 += a^T g;  da = g w2^T (into h's gradient buffer `a` after use)
    matmul(kit.ex, {true, false, F, D, rows, F, D, D, 0, 0, 0, 1, 1.0f, 1.0f}, a, g, p.grad(w2_));
    matmul(kit.ex, {false, true, rows, F, D, D, D, F}, g, p.param(w2_), a);
    const RowSplit split = row_split(kit.ex, F);
    kit.ex.run(split.indices(rows),
               ActivationBackward{a, h, split, activation_, hidden_mask(step, row0)});
    add_column_sums(kit.ex, kit.ws, a, rows, F, p.grad(b1_));
    // dw1 += z^T dh;  dz = dh w1^T
    matmul(kit.ex, {true, false, D, F, rows, D, F, F, 0, 0, 0, 1, 1.0f, 1.0f}, z, a, p.grad(w1_));
    matmul(kit.ex, {false, true, rows, D, F, F, F, D}, a, p.param(w1_), dz);
    norm_.backward(kit, p, x + row0 * D, dz, dx + row0 * D, rows, true);
  }
}

}  // namespace rf
