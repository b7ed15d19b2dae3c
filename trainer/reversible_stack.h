// The stack of reversible layers (paper eq. 9):  y1 = x1 + F(x2),  y2 = x2 + G(y1), with
// F = dropout(Attention(LN(.))) and G the chunked feed-forward. The forward pass overwrites the
// two streams in place and keeps nothing per layer but LSH bucket ids; the backward pass rebuilds
// each layer's inputs from its outputs (x2 = y2 - G(y1), x1 = y1 - F(x2)) while it back-propagates,
// so activation memory does not grow with depth. With model.reversible = false the stack instead
// stores every layer's inputs (the classical memory cost), which tests compare against, and
// (model.recompute: none, its default) what the backward reads of each layer's activations: the
// feed-forward's normalised input, activation and derivative, the attention's projections,
// output and per-slot outputs and statistics, so the backward does not run the layers' forward
// again. A reversible stack may store its top layers so (model.stored_top_layers): the backward
// starts from their kept inputs and activations and rebuilds only the layers below.
// With model.residual = single (stored inputs only) the layers are the classic pre-norm block
// over one stream h: h += dropout(F(h)), then h += G(h) (Transformer-XL's); x1 and x2 are then
// the same stream (the same pointer), and so are dx1 and dx2.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "kernels/residual.h"
#include "trainer/attention_layer.h"
#include "trainer/feed_forward.h"
#include "trainer/segment_memory.h"

namespace rf {

class ReversibleStack {
 public:
  ReversibleStack(ParamStore& store, const Config& cfg);

  int64_t n_layers() const { return static_cast<int64_t>(layers_.size()); }
  void set_n_hashes(int64_t n_hashes) {
    for (Layer& layer : layers_) layer.attention->set_n_hashes(n_hashes);
  }
  int group_of_layer(int64_t layer) const { return layers_[layer].group; }

  // x1, x2 [rows, d_model]: the layer inputs on entry, the last layer's outputs on return.
  // With `for_backward`, stores what the backward needs (bucket ids; inputs if not reversible,
  // and activations if not recomputed).
  // With `memory` (Transformer-XL's recurrence; local and LSH layers in whole chunks), each
  // layer's attention also sees that layer's memory of the positions before the segment (LSH
  // layers hash it with the segment), except LSH layers with lsh.sees_memory false, which see the
  // segment alone and keep no memory (their entries stay empty). The memory
  // for the next segment replaces it in place, or with `for_backward` goes to memory->next (the
  // backward still reads the current one; SegmentMemory::advance adopts it).
  void forward(Kit& kit, ParamStore& p, const StepContext& step, float* x1, float* x2,
               bool for_backward, SegmentMemory* memory = nullptr);
  // On entry x1, x2 hold the outputs and dx1, dx2 their gradients; on return the stack's inputs
  // and input gradients. Parameter gradients accumulate; after each layer, layer_done(layer).
  // `memory`: the one the forward pass saw (no gradient flows into it).
  void backward(Kit& kit, ParamStore& p, const StepContext& step, float* x1, float* x2, float* dx1,
                float* dx2, const std::function<void(int64_t)>& layer_done,
                const SegmentMemory* memory = nullptr);

  // Cached generation and evaluation (no LSH layer, or with approximate_lsh LSH layers whose
  // windows are fixed as each position arrives: AttentionLayer::prepare_cache): prepare_cache()
  // sizes `cache` for `capacity` rows, empty; forward_cached() runs the evaluation forward of
  // `rows` new positions of one sequence (x1, x2 [rows, d_model], as forward()) after the
  // context the cache holds (the caller made room: GenerationCache::make_room), their attention
  // reading its earlier positions from the cache, which then holds them too.
  bool supports_cached_generation(bool approximate_lsh = false) const;
  void prepare_cache(Kit& kit, ParamStore& p, int64_t capacity, GenerationCache& cache,
                     bool approximate_lsh = false) const;
  void forward_cached(Kit& kit, ParamStore& p, float* x1, float* x2, int64_t rows,
                      GenerationCache& cache);

  // Bucket ids stored by the last forward for `layer` (null unless LSH); for tests.
  const DeviceBuffer<int32_t>& stored_buckets(int64_t layer) const { return buckets_[layer]; }
  // Replaces them (with freeze_buckets, the next passes use these): comparing two executors on
  // the same buckets, since a projection that ties within rounding may hash differently.
  void set_stored_buckets(Executor& ex, int64_t layer, const std::vector<int32_t>& buckets);
  // Test hooks: each layer's inputs (x1, x2) as the forward pass sees them, and as the backward
  // pass rebuilds them.
  std::function<void(int64_t, const float*, const float*)> on_forward_inputs;
  std::function<void(int64_t, const float*, const float*)> on_rebuilt_inputs;
  // Test hook: reuse the stored LSH bucket ids instead of hashing (finite differences need the
  // buckets held fixed, since hashing is piecewise constant).
  bool freeze_buckets = false;

 private:
  struct Layer {
    // Whether the forward keeps this layer's inputs for the backward (which then does not rebuild
    // them), and its activations too (then the backward runs none of its forward again):
    // Config::stores_layer and keeps_layer_activations.
    bool stores_inputs = false;
    bool keeps_activations = false;
    // Whether its attention sees the memory when there is one (Config::layer_sees_memory: not an
    // LSH layer without lsh.sees_memory, which runs on the segment alone and whose memory stays
    // empty).
    bool sees_memory = true;
    int group;
    LayerNormLayer attention_norm;
    std::unique_ptr<AttentionLayer> attention;
    std::unique_ptr<FeedForwardLayer> feed_forward;
    // What the forward keeps for the backward when keeps_activations.
    DeviceBuffer<float> kept_attention;
    FeedForwardKept kept_feed_forward;
  };
  // Sizes every layer's kept activations for this step's forward; out of memory, says so and
  // what keeps less.
  void size_kept_activations(Kit& kit, const StepContext& step, int64_t memory_len);
  // Layer l's kept attention slots for this step (sized by size_kept_activations), or null when
  // the layers are recomputed; checks they were sized for this step.
  float* kept_attention(int64_t l, const StepContext& step, int64_t memory_len);
  DropoutMask attention_output_mask(const StepContext& step, int64_t layer) const;
  // x1 += sign * dropout(out): the attention half's residual add (sign -1 undoes it).
  ResidualAddArgs attention_residual(float* x1, const float* out, int64_t rows, float sign,
                                     const DropoutMask& mask) const;
  int32_t* buckets_for(Kit& kit, int64_t layer, const StepContext& step, bool for_backward,
                       int64_t memory_len = 0);
  // The segment's step as the attention over [memory; segment] sees it: same_length's span.
  StepContext memory_context(const StepContext& step, const SegmentMemory& memory) const;
  // The layer norm of layer i's attention over its memory and the segment x2, in the layout
  // AttentionLayer takes with a memory ([segment rows; memory rows]); `cat` gets the joined rows.
  ProductOperand normalised_with_memory(Kit& kit, ParamStore& p, const StepContext& step, int64_t i,
                                        const float* x2, const SegmentMemory& memory, float** cat);
  // y1 = x1 + dropout(F([memory; x2])) for layer i, keeping the next memory (see forward()).
  void attention_forward_with_memory(Kit& kit, ParamStore& p, const StepContext& step, int64_t i,
                                     float* x1, const float* x2, bool for_backward,
                                     SegmentMemory& memory);
  // The attention half of layer i's backward with memory: dx2 += F'^T g on the segment's rows,
  // and x1 = y1 - dropout(F) rebuilt unless `saved` holds the layer's inputs.
  void attention_backward_with_memory(Kit& kit, ParamStore& p, const StepContext& step, int64_t i,
                                      float* x1, const float* x2, const float* g, float* dx2,
                                      const float* saved, const SegmentMemory& memory);

  std::vector<Layer> layers_;
  std::vector<DeviceBuffer<int32_t>> buckets_;
  // Non-reversible mode: [2, rows, d_model], the inputs of the layer's halves: x1 and x2, or with
  // one stream h before the attention and h before the feed-forward.
  std::vector<DeviceBuffer<float>> saved_inputs_;
  int64_t d_model_;
  double dropout_;
  bool reversible_;
  bool single_stream_;
  bool same_length_;  // with memory: every query sees the memory's length of keys
};

}  // namespace rf
