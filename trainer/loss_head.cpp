#include "trainer/loss_head.h"

#include <algorithm>

#include "kernels/cross_entropy.h"
#include "kernels/elementwise.h"
#include "kernels/linear.h"
#include "kernels/reductions.h"

namespace rf {

LossHead::LossHead(ParamStore& store, const Config& cfg)
    : norm_(store, "head.norm", cfg.head_width()),
      single_stream_(cfg.model.residual == ResidualMode::kSingle),
      d_model_(cfg.model.d_model),
      width_(cfg.head_width()),
      vocab_(cfg.model.vocab_size),
      chunking_(cfg.head_chunking()) {
  w_out_ = store.add("head.w_out", {width_, vocab_}, {InitKind::kGlorotUniform, 1, width_, vocab_},
                     true);
  b_out_ = store.add("head.b_out", {vocab_}, {InitKind::kZeros}, false);
}

const float* LossHead::input_rows(Kit& kit, const float* x1, const float* x2, int64_t row0,
                                  int64_t n, float* cat) const {
  const int64_t D = d_model_;
  if (single_stream_) return x1 + row0 * D;
  concat_columns(kit.ex, cat, x1 + row0 * D, x2 + row0 * D, n, D, D);
  return cat;
}

void LossHead::run(Kit& kit, ParamStore& p, int64_t rows, const float* x1, const float* x2,
                   const int32_t* targets, float grad_scale, float* dx1, float* dx2) const {
  const bool backward = dx1 != nullptr;
  const int64_t width = width_, V = vocab_, D = d_model_;
  const int64_t chunk = chunking_.rows(rows);
  float* cat = single_stream_ ? nullptr : kit.ws.floats("head.cat", chunk * width);
  float* z = kit.ws.floats("head.z", chunk * width);
  float* logits = kit.ws.floats("head.logits", chunk * V);
  // Per-row results stay on the device until results() is called.
  float* loss = kit.ws.floats("head.loss", rows);
  int32_t* prediction = kit.ws.ints("head.prediction", rows);
  for (int64_t row0 = 0; row0 < rows; row0 += chunk) {
    const int64_t n = std::min(chunk, rows - row0);
    // z and the weight are operands of the forward and both backward products (rounded once at
    // bf16); z is written again only by the last product, in the next chunk by the norm.
    const GemmOperandReuse reuse(kit.ex);
    const float* input = input_rows(kit, x1, x2, row0, n, cat);
    norm_.forward(kit, p, input, z, n);
    linear_forward(kit.ex, matrix(z, n, width), p.weight(w_out_), matrix(logits, n, V));
    CrossEntropyArgs ce;
    ce.logits = logits;
    ce.bias = p.param(b_out_);
    ce.targets = targets + row0;
    ce.loss = loss + row0;
    ce.prediction = prediction + row0;
    ce.rows = n;
    ce.vocab = V;
    ce.grad_scale = grad_scale;
    ce.want_grad = backward;
    cross_entropy(kit.ex, ce);
    if (!backward) continue;
    add_column_sums(kit.ex, kit.ws, logits, n, V, p.grad(b_out_));
    linear_backward(kit.ex, matrix(z, n, width), p.weight(w_out_), matrix(logits, n, V),
                    matrix(z, n, width), p.weight_grad(w_out_));
    // z now holds dL/d(normalised input); the input's gradient goes to the stream(s).
    if (single_stream_) {
      norm_.backward(kit, p, input, z, dx1 + row0 * D, n, true);
      continue;
    }
    float* dcat = kit.ws.floats("head.dcat", chunk * width);
    norm_.backward(kit, p, input, z, dcat, n, false);
    split_columns_add(kit.ex, dx1 + row0 * D, dx2 + row0 * D, dcat, n, D, D);
  }
}

HeadOutput LossHead::results(Kit& kit, int64_t rows) const {
  HeadOutput out;
  out.row_loss.resize(rows);
  out.row_prediction.resize(rows);
  kit.ex.download(out.row_loss.data(), kit.ws.floats("head.loss", rows), rows * sizeof(float));
  kit.ex.download(out.row_prediction.data(), kit.ws.ints("head.prediction", rows),
                  rows * sizeof(int32_t));
  return out;
}

std::vector<float> LossHead::logits(Kit& kit, ParamStore& p, const float* x1, const float* x2,
                                    int64_t row) const {
  const int64_t width = width_, V = vocab_;
  float* cat = single_stream_ ? nullptr : kit.ws.floats("head.cat", width);
  float* z = kit.ws.floats("head.z", width);
  float* out = kit.ws.floats("head.logits", V);
  norm_.forward(kit, p, input_rows(kit, x1, x2, row, 1, cat), z, 1);
  linear_forward(kit.ex, matrix(z, 1, width), p.weight(w_out_), matrix(out, 1, V));
  add_row_bias(kit.ex, out, p.param(b_out_), 1, V);
  std::vector<float> host(V);
  kit.ex.download(host.data(), out, V * sizeof(float));
  return host;
}

}  // namespace rf
