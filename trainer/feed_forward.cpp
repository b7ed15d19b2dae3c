#include "trainer/feed_forward.h"

#include <algorithm>

#include "base/error.h"
#include "kernels/feed_forward_ops.h"
#include "kernels/linear.h"
#include "kernels/reductions.h"
#include "kernels/residual.h"

namespace rf {

FeedForwardLayer::FeedForwardLayer(ParamStore& store, const Config& cfg, int layer,
                                   const std::string& prefix)
    : norm_(store, prefix + ".norm", cfg.model.d_model),
      layer_(layer),
      d_model_(cfg.model.d_model),
      d_ff_(cfg.model.d_ff),
      chunking_(cfg.ff_chunking()),
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
                                     const float* x, int64_t row0, int64_t rows,
                                     const ProductOperand& z, float* h, const ProductOperand& a,
                                     bool keep_derivative) const {
  norm_.forward(kit, p, x + row0 * d_model_, z, rows);
  linear_forward(kit.ex, z.view(rows, d_model_), p.weight(w1_), matrix(h, rows, d_ff_));
  BiasActivationArgs act;
  act.h = h;
  act.keep_derivative = keep_derivative;
  act.a = a.fp32;
  act.a_bf16 = a.bf16;
  act.bias = p.param(b1_);
  act.rows = rows;
  act.cols = d_ff_;
  act.activation = activation_;
  act.dropout = hidden_mask(step, row0);
  bias_activation_forward(kit.ex, act);
}

FeedForwardLayer::ChunkBuffers FeedForwardLayer::scratch_buffers(Kit& kit, int64_t chunk) const {
  ChunkBuffers b;
  b.z = product_operand(kit.ex, kit.ws, "ff.z", "ff.z16", chunk * d_model_);
  b.h = kit.ws.floats("ff.h", chunk * d_ff_);
  b.a = product_operand(kit.ex, kit.ws, "ff.a", "ff.a16", chunk * d_ff_);
  return b;
}

FeedForwardLayer::ChunkBuffers FeedForwardLayer::kept_buffers(FeedForwardKept& kept,
                                                              int64_t row0) const {
  auto at = [](auto& buffer, int64_t offset) {  // (null for the type not kept)
    return buffer.data() ? buffer.data() + offset : nullptr;
  };
  ChunkBuffers b;
  b.z = {at(kept.z, row0 * d_model_), at(kept.z16, row0 * d_model_)};
  b.a = {at(kept.a, row0 * d_ff_), at(kept.a16, row0 * d_ff_)};
  b.h = at(kept.derivative, row0 * d_ff_);
  return b;
}

void FeedForwardLayer::size_kept(Kit& kit, int64_t rows, FeedForwardKept& keep) const {
  const bool bf16 = kit.ex.gemm_takes_bf16_operands();
  if (keep.rows == rows && keep.bf16 == bf16) return;
  keep = FeedForwardKept();  // (the old buffers go first)
  const auto n = [&](int64_t width) { return static_cast<size_t>(rows * width); };
  if (bf16) {
    keep.z16 = DeviceBuffer<uint16_t>(kit.ex, n(d_model_));
    keep.a16 = DeviceBuffer<uint16_t>(kit.ex, n(d_ff_));
  } else {
    keep.z = DeviceBuffer<float>(kit.ex, n(d_model_));
    keep.a = DeviceBuffer<float>(kit.ex, n(d_ff_));
  }
  keep.derivative = DeviceBuffer<float>(kit.ex, n(d_ff_));
  keep.rows = rows;
  keep.bf16 = bf16;
}

void FeedForwardLayer::forward_add(Kit& kit, ParamStore& p, const StepContext& step, const float* x,
                                   float* residual, float sign, FeedForwardKept* keep) const {
  const int64_t total = step.rows(), chunk = chunking_.rows(total);
  if (keep) size_kept(kit, total, *keep);
  const ChunkBuffers scratch = keep ? ChunkBuffers{} : scratch_buffers(kit, chunk);
  float* t = kit.ws.floats("ff.t", chunk * d_model_);
  for (int64_t row0 = 0; row0 < total; row0 += chunk) {
    const int64_t rows = std::min(chunk, total - row0);
    const ChunkBuffers b = keep ? kept_buffers(*keep, row0) : scratch;
    chunk_forward(kit, p, step, x, row0, rows, b.z, b.h, b.a, keep != nullptr);
    add_chunk_output(kit, p, step, b.a.view(rows, d_ff_), t, row0, rows, residual, sign);
  }
}

void FeedForwardLayer::add_chunk_output(Kit& kit, ParamStore& p, const StepContext& step,
                                        MatrixView a, float* t, int64_t row0, int64_t rows,
                                        float* residual, float sign) const {
  linear_forward(kit.ex, a, p.weight(w2_), matrix(t, rows, d_model_));
  ResidualAddArgs add;
  add.residual = residual + row0 * d_model_;
  add.t = t;
  add.bias = p.param(b2_);
  add.rows = rows;
  add.cols = d_model_;
  add.sign = sign;
  add.dropout = output_mask(step, row0);
  residual_add(kit.ex, add);
}

void FeedForwardLayer::backward(Kit& kit, ParamStore& p, const StepContext& step, const float* x,
                                const float* dout, float* dx, float* reconstruct,
                                FeedForwardKept* kept, const uint16_t* dout_bf16,
                                uint16_t* dx_bf16) const {
  const int64_t total = step.rows(), chunk = chunking_.rows(total), D = d_model_, F = d_ff_;
  RF_CHECK(!kept || (kept->rows == total && kept->bf16 == kit.ex.gemm_takes_bf16_operands() &&
                     !reconstruct),
           "the feed-forward's kept activations are not this step's");
  const ChunkBuffers scratch = kept ? ChunkBuffers{} : scratch_buffers(kit, chunk);
  float* t = kit.ws.floats("ff.t", chunk * D);
  float* dz = kit.ws.floats("ff.dz", chunk * D);
  for (int64_t row0 = 0; row0 < total; row0 += chunk) {
    const int64_t rows = std::min(chunk, total - row0);
    const ChunkBuffers b = kept ? kept_buffers(*kept, row0) : scratch;
    const ProductOperand& z = b.z;
    const ProductOperand& a = b.a;
    // `da` receives the activation's gradient (fp32: the bias gradient sums it); with bf16
    // operands the activation and then the pre-activation's gradient are bf16 in `a`, otherwise
    // both are fp32 in `da` itself (the same buffer).
    float* da = a.fp32 ? a.fp32 : kit.ws.floats("ff.a", chunk * F);
    {
      // Within a chunk, z, the activation, its gradient and both weights are each read by two
      // products (rounded once at bf16, or written in bf16 by their kernels); the kernels between
      // write only what no product of the chunk has read yet.
      const GemmOperandReuse reuse(kit.ex);
      if (!kept) chunk_forward(kit, p, step, x, row0, rows, z, b.h, a, true);  // h: the derivative
      if (reconstruct)
        add_chunk_output(kit, p, step, a.view(rows, F), t, row0, rows, reconstruct, -1.0f);
      const DropoutMask drop = output_mask(step, row0);
      const float* g = dropout_backward(kit.ex, kit.ws, dout + row0 * D, rows, D, drop, "ff.g");
      add_column_sums(kit.ex, kit.ws, g, rows, D, p.grad(b2_));
      const MatrixView g_view = dout_bf16 && !drop.active()
                                    ? bf16_matrix(dout_bf16 + row0 * D, rows, D)
                                    : matrix(g, rows, D);
      // dw2 += a^T g;  da = g w2^T (the activations are no longer needed)
      linear_backward(kit.ex, a.view(rows, F), p.weight(w2_), g_view, matrix(da, rows, F),
                      p.weight_grad(w2_));
      ActivationBackwardArgs act;
      act.grad = da;
      act.grad_bf16 = a.bf16;
      act.derivative = b.h;
      act.rows = rows;
      act.cols = F;
      act.dropout = hidden_mask(step, row0);
      activation_backward(kit.ex, act);
      add_column_sums(kit.ex, kit.ws, da, rows, F, p.grad(b1_));
      // dw1 += z^T dh;  dz = dh w1^T
      linear_backward(kit.ex, z.view(rows, D), p.weight(w1_), a.view(rows, F), matrix(dz, rows, D),
                      p.weight_grad(w1_));
    }
    // After the products' operand-reuse scope: dx may be dout, which they read.
    norm_.backward(kit, p, x + row0 * D, dz, dx + row0 * D, rows, true,
                   dx_bf16 ? dx_bf16 + row0 * D : nullptr);
  }
}

}  // namespace rf
