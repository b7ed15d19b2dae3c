#include "trainer/loss_head.h"

#include <algorithm>

#include "kernels/reductions.h"

namespace rf {

LossHead::LossHead(ParamStore& store, const Config& cfg)
    : norm_(store, "head.norm", 2 * cfg.model.d_model),
      d_model_(cfg.model.d_model),
      vocab_(cfg.model.vocab_size),
      chunk_(cfg.model.head_chunk) {
  const int64_t width = 2 * d_model_;
  w_out_ =
      store.add("head.w_out", {width, vocab_}, {InitKind::kGlorotUniform, 1, width, vocab_}, true);
  b_out_ = store.add("head.b_out", {vocab_}, {InitKind::kZeros}, false);
}

HeadOutput LossHead::run(Kit& kit, ParamStore& p, int64_t rows, const float* x1, const float* x2,
                         const int32_t* targets, float grad_scale, float* dx1, float* dx2) const {
  const bool backward = dx1 != nullptr;
  const int64_t width = 2 * d_model_, V = vocab_;
  const int64_t chunk = chunk_ > 0 && chunk_ < rows ? chunk_ : rows;
  float* cat = kit.ws.floats("head.cat", chunk * width);
  float* z = kit.ws.floats("head.z", chunk * width);
  float* logits = kit.ws.floats("head.logits", chunk * V);
  float* loss = kit.ws.floats("head.loss", chunk);
  int32_t* prediction = kit.ws.ints("head.prediction", chunk);
  HeadOutput out;
  out.row_loss.resize(rows);
  out.row_prediction.resize(rows);
  for (int64_t row0 = 0; row0 < rows; row0 += chunk) {
    const int64_t n = std::min(chunk, rows - row0);
    kit.ex.run(n,
               ConcatColumns{cat, x1 + row0 * d_model_, x2 + row0 * d_model_, d_model_, d_model_});
    norm_.forward(kit, p, cat, z, n);
    matmul(kit.ex, {false, false, n, V, width, width, V, V}, z, p.param(w_out_), logits);
    kit.ex.run(n, AddBias{logits, p.param(b_out_), V});
    kit.ex.run(n,
               CrossEntropyRow{logits, targets + row0, loss, prediction, V, grad_scale, backward});
    kit.ex.download(out.row_loss.data() + row0, loss, n * sizeof(float));
    kit.ex.download(out.row_prediction.data() + row0, prediction, n * sizeof(int32_t));
    if (!backward) continue;
    add_column_sums(kit.ex, kit.ws, logits, n, V, p.grad(b_out_));
    matmul(kit.ex, {true, false, width, V, n, width, V, V, 0, 0, 0, 1, 1.0f, 1.0f}, z, logits,
           p.grad(w_out_));
    matmul(kit.ex, {false, true, n, width, V, V, V, width}, logits, p.param(w_out_), z);
    // z now holds dL/d(normalised cat); cat's gradient goes to the two streams.
    float* dcat = kit.ws.floats("head.dcat", chunk * width);
    norm_.backward(kit, p, cat, z, dcat, n, false);
    kit.ex.run(
        n, SplitColumnsAdd{dx1 + row0 * d_model_, dx2 + row0 * d_model_, dcat, d_model_, d_model_});
  }
  return out;
}

std::vector<float> LossHead::logits(Kit& kit, ParamStore& p, const float* x1, const float* x2,
                                    int64_t row) const {
  const int64_t width = 2 * d_model_, V = vocab_;
  float* cat = kit.ws.floats("head.cat", width);
  float* z = kit.ws.floats("head.z", width);
  float* out = kit.ws.floats("head.logits", V);
  kit.ex.run(1, ConcatColumns{cat, x1 + row * d_model_, x2 + row * d_model_, d_model_, d_model_});
  norm_.forward(kit, p, cat, z, 1);
  matmul(kit.ex, {false, false, 1, V, width, width, V, V}, z, p.param(w_out_), out);
  kit.ex.run(1, AddBias{out, p.param(b_out_), V});
  std::vector<float> host(V);
  kit.ex.download(host.data(), out, V * sizeof(float));
  return host;
}

}  // namespace rf
