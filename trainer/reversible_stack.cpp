#include "trainer/reversible_stack.h"

#include <algorithm>
#include <string>

#include "kernels/elementwise.h"
#include "kernels/residual.h"

namespace rf {

ReversibleStack::ReversibleStack(ParamStore& store, const Config& cfg)
    : d_model_(cfg.model.d_model),
      dropout_(cfg.model.dropout),
      reversible_(cfg.model.reversible),
      single_stream_(cfg.model.residual == ResidualMode::kSingle),
      same_length_(cfg.model.same_length) {
  for (int64_t i = 0; i < cfg.model.n_layers; ++i) {
    const std::string prefix = "layer" + std::to_string(i);
    Layer layer;
    layer.stores_inputs = cfg.stores_layer(i);
    layer.keeps_activations = cfg.keeps_layer_activations(i);
    layer.sees_memory = cfg.layer_sees_memory(i);
    layer.group = store.begin_group(prefix);
    layer.attention_norm = LayerNormLayer(store, prefix + ".attention.norm", d_model_);
    layer.attention =
        std::make_unique<AttentionLayer>(store, cfg, static_cast<int>(i), prefix + ".attention");
    layer.feed_forward = std::make_unique<FeedForwardLayer>(store, cfg, static_cast<int>(i),
                                                            prefix + ".feed_forward");
    layers_.push_back(std::move(layer));
  }
  buckets_.resize(layers_.size());
  saved_inputs_.resize(layers_.size());
}

DropoutMask ReversibleStack::attention_output_mask(const StepContext& step, int64_t layer) const {
  return step.dropout(RngPurpose::kAttentionOutputDropout, static_cast<uint32_t>(layer), dropout_,
                      d_model_);
}

void ReversibleStack::set_stored_buckets(Executor& ex, int64_t layer,
                                         const std::vector<int32_t>& buckets) {
  if (buckets_[layer].size() != buckets.size())
    buckets_[layer] = DeviceBuffer<int32_t>(ex, buckets.size());
  if (!buckets.empty()) buckets_[layer].upload(buckets);
}

ResidualAddArgs ReversibleStack::attention_residual(float* x1, const float* out, int64_t rows,
                                                    float sign, const DropoutMask& mask) const {
  ResidualAddArgs a;
  a.residual = x1;
  a.t = out;
  a.rows = rows;
  a.cols = d_model_;
  a.sign = sign;
  a.dropout = mask;
  return a;
}

void ReversibleStack::size_kept_activations(Kit& kit, const StepContext& step, int64_t memory_len) {
  try {
    for (Layer& layer : layers_) {
      if (!layer.keeps_activations) continue;
      const size_t n = static_cast<size_t>(
          layer.attention->kept_floats(step, layer.sees_memory ? memory_len : 0));
      if (layer.kept_attention.size() != n) {
        layer.kept_attention = DeviceBuffer<float>();  // (the old buffer goes first)
        layer.kept_attention = DeviceBuffer<float>(kit.ex, n);
      }
      layer.feed_forward->size_kept(kit, step.rows(), layer.kept_feed_forward);
    }
  } catch (const Error& e) {
    fail(e.what(), " (while allocating the activations that stored layers keep for the backward: ",
         "model.recompute: layers keeps only their inputs, reversible layers keep neither, and ",
         "model.stored_top_layers says how many of a reversible stack's are stored)");
  }
}

float* ReversibleStack::kept_attention(int64_t l, const StepContext& step, int64_t memory_len) {
  if (!layers_[l].keeps_activations) return nullptr;
  DeviceBuffer<float>& kept = layers_[l].kept_attention;
  RF_CHECK(kept.size() == static_cast<size_t>(layers_[l].attention->kept_floats(step, memory_len)),
           "layer ", l, "'s kept attention is not this step's");
  return kept.data();
}

int32_t* ReversibleStack::buckets_for(Kit& kit, int64_t layer, const StepContext& step,
                                      bool for_backward, int64_t memory_len) {
  const int64_t n = layers_[layer].attention->bucket_count(step.batch, step.seq_len + memory_len);
  if (n == 0) return nullptr;
  if (freeze_buckets) {
    RF_CHECK(buckets_[layer].size() == static_cast<size_t>(n), "no stored buckets to freeze");
    return buckets_[layer].data();
  }
  if (!for_backward) return kit.ws.ints("stack.eval_buckets", n);
  if (buckets_[layer].size() != static_cast<size_t>(n))
    buckets_[layer] = DeviceBuffer<int32_t>(kit.ex, n);
  return buckets_[layer].data();
}

void ReversibleStack::forward(Kit& kit, ParamStore& p, const StepContext& step, float* x1,
                              float* x2, bool for_backward, SegmentMemory* memory) {
  const int64_t rows = step.rows(), D = d_model_;
  RF_CHECK(!single_stream_ || (x1 == x2 && !reversible_), "one residual stream: x1 is x2, stored");
  const ProductOperand xn = product_operand(kit.ex, kit.ws, "stack.xn", "stack.xn16", rows * D);
  if (memory) {
    memory->layers.resize(layers_.size());
    if (for_backward) memory->next.resize(layers_.size());
  }
  // (All at once before any work: running out of memory there says what keeps less.)
  const bool any_kept = std::any_of(layers_.begin(), layers_.end(),
                                    [](const Layer& layer) { return layer.keeps_activations; });
  if (for_backward && any_kept) size_kept_activations(kit, step, memory ? memory->len : 0);
  for (int64_t i = 0; i < n_layers(); ++i) {
    Layer& layer = layers_[i];
    if (for_backward && layer.stores_inputs) {
      if (saved_inputs_[i].size() != static_cast<size_t>(2 * rows * D))
        saved_inputs_[i] = DeviceBuffer<float>(kit.ex, 2 * rows * D);
      kit.ex.copy(saved_inputs_[i].data(), x1, rows * D * sizeof(float));
      if (!single_stream_)
        kit.ex.copy(saved_inputs_[i].data() + rows * D, x2, rows * D * sizeof(float));
    }
    if (on_forward_inputs) on_forward_inputs(i, x1, x2);
    // y1 = x1 + F(x2), over [memory; x2] where the layer sees the memory
    if (memory && layer.sees_memory) {
      attention_forward_with_memory(kit, p, step, i, x1, x2, for_backward, *memory);
    } else {
      layer.attention_norm.forward(kit, p, x2, xn, rows);
      int32_t* buckets = buckets_for(kit, i, step, for_backward);
      float* kept = for_backward ? kept_attention(i, step, 0) : nullptr;
      const DropoutMask mask = attention_output_mask(step, i);
      if (mask.active()) {  // through a buffer, for the dropout
        float* out = kit.ws.floats("stack.out", rows * D);
        layer.attention->forward(kit, p, step, xn.view(rows, D), out, Write::kOverwrite, buckets,
                                 freeze_buckets, 0, kept);
        residual_add(kit.ex, attention_residual(x1, out, rows, 1.0f, mask));
      } else {  // straight into the residual stream
        layer.attention->forward(kit, p, step, xn.view(rows, D), x1, Write::kAccumulate, buckets,
                                 freeze_buckets, 0, kept);
      }
    }
    // y2 = x2 + G(y1); with one stream h += G(h), in place (each chunk of rows is read before
    // it is written)
    if (for_backward && single_stream_)
      kit.ex.copy(saved_inputs_[i].data() + rows * D, x1, rows * D * sizeof(float));
    layer.feed_forward->forward_add(
        kit, p, step, x1, x2, 1.0f,
        for_backward && layer.keeps_activations ? &layer.kept_feed_forward : nullptr);
  }
  if (memory) {
    const int64_t kept = std::min(memory->max_len, memory->len + step.seq_len);
    (for_backward ? memory->next_len : memory->len) = kept;
  }
}

bool ReversibleStack::supports_cached_generation(bool approximate_lsh) const {
  return approximate_lsh || std::none_of(layers_.begin(), layers_.end(), [](const Layer& layer) {
           return layer.attention->kind() == AttentionKind::kLsh;
         });
}

void ReversibleStack::prepare_cache(Kit& kit, ParamStore& p, int64_t capacity,
                                    GenerationCache& cache, bool approximate_lsh) const {
  RF_CHECK(supports_cached_generation(approximate_lsh) && capacity >= 1);
  cache.capacity = capacity;
  cache.clear();
  cache.layers.resize(layers_.size());
  for (size_t i = 0; i < layers_.size(); ++i)
    layers_[i].attention->prepare_cache(kit, p, capacity, cache.layers[i]);
}

void ReversibleStack::forward_cached(Kit& kit, ParamStore& p, float* x1, float* x2, int64_t rows,
                                     GenerationCache& cache) {
  RF_CHECK(cache.layers.size() == layers_.size());
  RF_CHECK(cache.start + cache.len + rows <= cache.capacity, "generation cache of ", cache.capacity,
           " positions cannot take ", rows, " more after ", cache.len);
  const int64_t D = d_model_;
  RF_CHECK(!single_stream_ || x1 == x2, "one residual stream: x1 is x2");
  StepContext step;  // evaluation: no dropout; the feed-forward's chunks over the new rows
  step.step = kEvalStep;
  step.training = false;
  step.batch = 1;
  step.seq_len = rows;
  const ProductOperand xn = product_operand(kit.ex, kit.ws, "stack.xn", "stack.xn16", rows * D);
  for (int64_t i = 0; i < n_layers(); ++i) {
    Layer& layer = layers_[i];
    if (on_forward_inputs) on_forward_inputs(i, x1, x2);
    // y1 = x1 + F(x2), F over the cached positions and these; y2 = x2 + G(y1)
    layer.attention_norm.forward(kit, p, x2, xn, rows);
    layer.attention->forward_cached(kit, p, xn.view(rows, D), cache, cache.layers[i], x1);
    layer.feed_forward->forward_add(kit, p, step, x1, x2, 1.0f);
  }
  cache.len += rows;
}

StepContext ReversibleStack::memory_context(const StepContext& step,
                                            const SegmentMemory& memory) const {
  StepContext context = step;
  if (same_length_ && memory.max_len > 0) context.max_distance = memory.max_len - 1;
  return context;
}

ProductOperand ReversibleStack::normalised_with_memory(Kit& kit, ParamStore& p,
                                                       const StepContext& step, int64_t i,
                                                       const float* x2, const SegmentMemory& memory,
                                                       float** cat) {
  const int64_t segment_rows = step.rows(), memory_rows = step.batch * memory.len;
  const int64_t rows = segment_rows + memory_rows, D = d_model_;
  *cat = kit.ws.floats("stack.memory_cat", rows * D);
  kit.ex.copy(*cat, x2, static_cast<size_t>(segment_rows * D) * sizeof(float));
  if (memory_rows > 0)  // (the memory is [batch, len, d_model]: its rows in example order)
    kit.ex.copy(*cat + segment_rows * D, memory.layers[i].data(),
                static_cast<size_t>(memory_rows * D) * sizeof(float));
  const ProductOperand xn =
      product_operand(kit.ex, kit.ws, "stack.memory_xn", "stack.memory_xn16", rows * D);
  layers_[i].attention_norm.forward(kit, p, *cat, xn, rows);
  return xn;
}

void ReversibleStack::attention_forward_with_memory(Kit& kit, ParamStore& p,
                                                    const StepContext& step, int64_t i, float* x1,
                                                    const float* x2, bool for_backward,
                                                    SegmentMemory& memory) {
  Layer& layer = layers_[i];
  RF_CHECK(layer.sees_memory, "layer ", i, " takes no memory");
  const int64_t B = step.batch, S = step.seq_len, M = memory.len, D = d_model_;
  float* cat = nullptr;
  const ProductOperand xn = normalised_with_memory(kit, p, step, i, x2, memory, &cat);
  const StepContext context = memory_context(step, memory);
  const MatrixView keys_xn = xn.view(B * (S + M), D);
  const DropoutMask mask = attention_output_mask(step, i);
  float* kept_slots = for_backward ? kept_attention(i, step, M) : nullptr;
  // (LSH: the buckets of the memory's positions and the segment's, for the backward)
  int32_t* buckets = buckets_for(kit, i, step, for_backward, M);
  if (mask.active()) {  // through a buffer, for the dropout
    float* out = kit.ws.floats("stack.out", B * S * D);
    layer.attention->forward(kit, p, context, keys_xn, out, Write::kOverwrite, buckets,
                             freeze_buckets, M, kept_slots);
    residual_add(kit.ex, attention_residual(x1, out, B * S, 1.0f, mask));
  } else {  // straight into the residual stream
    layer.attention->forward(kit, p, context, keys_xn, x1, Write::kAccumulate, buckets,
                             freeze_buckets, M, kept_slots);
  }
  // The next memory: each example's last `kept` positions of [memory; segment], from `cat` (a
  // copy, so in evaluation it overwrites the old memory in place); buffers are reallocated only
  // while the memory still grows.
  const int64_t kept = std::min(memory.max_len, M + S);
  const int64_t from_memory = std::max<int64_t>(0, kept - S), from_segment = kept - from_memory;
  DeviceBuffer<float>& target = for_backward ? memory.next[i] : memory.layers[i];
  const size_t held = static_cast<size_t>(std::max<int64_t>(1, B * kept * D));
  if (target.size() != held) target = DeviceBuffer<float>(kit.ex, held);
  const size_t row_bytes = static_cast<size_t>(D) * sizeof(float);
  if (from_segment == S && from_memory == 0) {  // (memory_len = seq_len: the segment, one copy)
    kit.ex.copy(target.data(), cat, B * S * row_bytes);
    return;
  }
  for (int64_t b = 0; b < B; ++b) {
    float* to = target.data() + b * kept * D;
    if (from_memory > 0)
      kit.ex.copy(to, cat + (B * S + b * M + M - from_memory) * D, from_memory * row_bytes);
    kit.ex.copy(to + from_memory * D, cat + (b * S + S - from_segment) * D,
                from_segment * row_bytes);
  }
}

void ReversibleStack::attention_backward_with_memory(Kit& kit, ParamStore& p,
                                                     const StepContext& step, int64_t i, float* x1,
                                                     const float* x2, const float* g, float* dx2,
                                                     const float* saved,
                                                     const SegmentMemory& memory) {
  Layer& layer = layers_[i];
  const int64_t B = step.batch, S = step.seq_len, M = memory.len, C = M + S, D = d_model_;
  float* cat = nullptr;
  const ProductOperand xn = normalised_with_memory(kit, p, step, i, x2, memory, &cat);
  // The rebuild x1 = y1 - dropout(F) takes the recomputed output away from x1 directly when
  // there is no dropout (as the backward without memory does).
  const DropoutMask mask = attention_output_mask(step, i);
  float* out = nullptr;
  if (!saved) out = mask.active() ? kit.ws.floats("stack.out", B * S * D) : x1;
  float* dxn = kit.ws.floats("stack.memory_dxn", B * C * D);
  layer.attention->backward(
      kit, p, memory_context(step, memory), xn.view(B * C, D), g, dxn, buckets_[i].data(), out,
      mask.active() ? Write::kOverwrite : Write::kSubtract, M, kept_attention(i, step, M));
  float* dcat = kit.ws.floats("stack.memory_dcat", B * C * D);
  layer.attention_norm.backward(kit, p, cat, dxn, dcat, B * C, false);
  add_scaled(kit.ex, dx2, dcat, 1.0f, B * S * D);  // (the memory's rows, after, take none)
  if (saved) {
    kit.ex.copy(x1, saved, static_cast<size_t>(B * S * D) * sizeof(float));
  } else if (mask.active()) {
    residual_add(kit.ex, attention_residual(x1, out, B * S, -1.0f, mask));
  }
}

void ReversibleStack::backward(Kit& kit, ParamStore& p, const StepContext& step, float* x1,
                               float* x2, float* dx1, float* dx2,
                               const std::function<void(int64_t)>& layer_done,
                               const SegmentMemory* memory) {
  const int64_t rows = step.rows(), D = d_model_;
  RF_CHECK(!single_stream_ || (x1 == x2 && dx1 == dx2), "one residual stream: x1 is x2");
  const ProductOperand xn = product_operand(kit.ex, kit.ws, "stack.xn", "stack.xn16", rows * D);
  float* dxn = kit.ws.floats("stack.dxn", rows * D);
  // Where the products take bf16 operands, the layer norms' backward passes also write the
  // gradient they leave in the stream rounded to bf16, for the next block's output-projection
  // products (the same bits as those products rounding the fp32 rows themselves), unless that
  // block's output has dropout (its products read the dropped gradient) or there is a memory.
  // One buffer serves both streams: a block's products read it before its layer norm writes
  // it again (the feed-forward's chunk by chunk, as it reads and writes its rows).
  uint16_t* grad_bf16 = kit.ex.gemm_takes_bf16_operands() && !memory
                            ? kit.ws.get<uint16_t>("stack.grad_bf16", static_cast<size_t>(rows * D))
                            : nullptr;
  uint16_t* dx2_bf16 = nullptr;  // dx2 rounded, when the block above wrote it so
  for (int64_t i = n_layers() - 1; i >= 0; --i) {
    Layer& layer = layers_[i];
    const float* saved = layer.stores_inputs ? saved_inputs_[i].data() : nullptr;
    FeedForwardKept* kept_ff = layer.keeps_activations ? &layer.kept_feed_forward : nullptr;
    const DropoutMask mask = attention_output_mask(step, i);
    uint16_t* dx1_bf16 = mask.active() ? nullptr : grad_bf16;
    if (single_stream_) {
      RF_CHECK(saved != nullptr, "one residual stream stores every layer's input");
      // dh += G'(h1)^T dh, h1 the stored input of the feed-forward (dout and dx may alias).
      layer.feed_forward->backward(kit, p, step, saved + rows * D, dx1, dx1, nullptr, kept_ff,
                                   dx2_bf16, dx1_bf16);
    } else {
      // G: dy1 += G'(y1)^T dy2, and x2 = y2 - G(y1) (or the stored x2).
      layer.feed_forward->backward(kit, p, step, x1, dx2, dx1, saved ? nullptr : x2, kept_ff,
                                   dx2_bf16, dx1_bf16);
      if (saved) kit.ex.copy(x2, saved + rows * D, rows * D * sizeof(float));
    }
    // F: dx2 += F'(x2)^T dy1, and x1 = y1 - F(x2) (or the stored x1). g = dy1 through the
    // output dropout (dy1 itself when there is none). With one stream the attention's input is
    // the stored h0 (x2 would be the feed-forward's), and dh += F'(h0)^T dh.
    const float* attention_input = single_stream_ ? saved : x2;
    const float* g = dropout_backward(kit.ex, kit.ws, dx1, rows, D, mask, "stack.dropped");
    if (memory && layer.sees_memory) {
      attention_backward_with_memory(kit, p, step, i, x1, attention_input, g, dx2, saved, *memory);
      if (on_rebuilt_inputs) on_rebuilt_inputs(i, x1, x2);
      if (layer_done) layer_done(i);
      continue;
    }
    layer.attention_norm.forward(kit, p, attention_input, xn, rows);
    // The rebuild x1 = y1 - dropout(F(x2)) takes the recomputed output away from x1 directly when
    // there is no dropout (the attention backward does not read x1).
    float* out = nullptr;
    if (!saved) out = mask.active() ? kit.ws.floats("stack.out", rows * D) : x1;
    layer.attention->backward(kit, p, step, xn.view(rows, D), g, dxn, buckets_[i].data(), out,
                              mask.active() ? Write::kOverwrite : Write::kSubtract, 0,
                              kept_attention(i, step, 0), dx1_bf16);
    dx2_bf16 = i > 0 && !layers_[i - 1].feed_forward->drops_output(step) ? grad_bf16 : nullptr;
    layer.attention_norm.backward(kit, p, attention_input, dxn, dx2, rows, true, dx2_bf16);
    if (saved) {
      kit.ex.copy(x1, saved, rows * D * sizeof(float));
    } else if (mask.active()) {
      residual_add(kit.ex, attention_residual(x1, out, rows, -1.0f, mask));
    }
    if (on_rebuilt_inputs) on_rebuilt_inputs(i, x1, x2);
    if (layer_done) layer_done(i);
  }
}

}  // namespace rf
