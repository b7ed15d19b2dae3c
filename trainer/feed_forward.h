// The feed-forward half of a reversible layer, G(x) = dropout(W2 act(W1 LN(x) + b1) + b2),
// computed ff_chunk rows at a time in the forward pass, the backward pass and the reversible
// reconstruction, so the [rows, d_ff] activation exists for one chunk only (paper eq. 10) —
// unless the layers are not recomputed (model.recompute: none), when the forward keeps each
// chunk's normalised input, activation and derivative for the backward.
#pragma once

#include "kernels/device_buffer.h"
#include "kernels/linear.h"
#include "trainer/config.h"
#include "trainer/layer_norm.h"

namespace rf {

// What a feed-forward forward keeps for its backward (model.recompute: none), per row: the
// normalised input z [rows, d_model] and the activation a [rows, d_ff], each in the type the
// executor's products take, and the activation's derivative [rows, d_ff].
struct FeedForwardKept {
  DeviceBuffer<float> z, a, derivative;
  DeviceBuffer<uint16_t> z16, a16;
  int64_t rows = 0;   // rows held (0: nothing kept yet)
  bool bf16 = false;  // whether z and a are the bf16 operands
};

class FeedForwardLayer {
 public:
  FeedForwardLayer(ParamStore& store, const Config& cfg, int layer, const std::string& prefix);

  // Sizes `keep` for `rows` rows in the executor's operand type (nothing when it fits).
  void size_kept(Kit& kit, int64_t rows, FeedForwardKept& keep) const;
  // residual += sign * G(x); x, residual: [rows, d_model]. sign -1 undoes the forward's add.
  // With `keep`, what the backward reads is kept there (sized by size_kept() when it is not).
  void forward_add(Kit& kit, ParamStore& p, const StepContext& step, const float* x,
                   float* residual, float sign, FeedForwardKept* keep = nullptr) const;
  // dx += dL/dx and parameter gradients += for the output gradient dout. When `reconstruct` is
  // not null it also subtracts G(x) from it, chunk by chunk, reusing the recomputed activations
  // (the reversible backward: x2 = y2 - G(y1)). dx may be dout: each chunk's rows of dout are
  // read before that chunk's rows of dx are written (one residual stream: dh += G'(h)^T dh).
  // With `kept` (filled by this step's forward_add, and overwritten here) the activations are
  // read from it instead of recomputed; then `reconstruct` must be null.
  // On an executor whose products take bf16 operands: dout_bf16, when not null, holds dout
  // rounded to bf16 (by the kernel that wrote it), which the products read when the output has
  // no dropout; dx_bf16, when not null, receives dx's new values rounded, for the products that
  // read the gradient next.
  void backward(Kit& kit, ParamStore& p, const StepContext& step, const float* x, const float* dout,
                float* dx, float* reconstruct, FeedForwardKept* kept = nullptr,
                const uint16_t* dout_bf16 = nullptr, uint16_t* dx_bf16 = nullptr) const;
  // Whether this step drops some of the output (then the backward's products read the dropped
  // gradient, not dout).
  bool drops_output(const StepContext& step) const { return output_mask(step, 0).active(); }

 private:
  // (Re)computes one chunk's normalised input z and activation a; h gets the activation's
  // derivative when keep_derivative (the backward's pass), else serves as scratch.
  void chunk_forward(Kit& kit, ParamStore& p, const StepContext& step, const float* x, int64_t row0,
                     int64_t rows, const ProductOperand& z, float* h, const ProductOperand& a,
                     bool keep_derivative) const;
  // residual[row0 .. row0 + rows) += sign * dropout(a W2 + b2), with t as scratch.
  void add_chunk_output(Kit& kit, ParamStore& p, const StepContext& step, MatrixView a, float* t,
                        int64_t row0, int64_t rows, float* residual, float sign) const;
  // The operands of one chunk: z [rows, d_model], the pre-activation h (then the derivative) and
  // the activation a [rows, d_ff], as workspace scratch for `chunk` rows, or kept rows row0 ..
  struct ChunkBuffers {
    ProductOperand z, a;
    float* h = nullptr;
  };
  ChunkBuffers scratch_buffers(Kit& kit, int64_t chunk) const;
  ChunkBuffers kept_buffers(FeedForwardKept& kept, int64_t row0) const;
  DropoutMask hidden_mask(const StepContext& step, int64_t row0) const;
  DropoutMask output_mask(const StepContext& step, int64_t row0) const;

  LayerNormLayer norm_;
  int layer_;
  int64_t d_model_, d_ff_;
  ChunkSetting chunking_;
  Activation activation_;
  double dropout_;
  int w1_, b1_, w2_, b2_;
};

}  // namespace rf
