// The Reformer language model: embedding -> reversible stack -> loss head, over one flat
// parameter buffer. forward_backward() runs one micro-batch and accumulates gradients, calling
// group_done(group) as each parameter group's gradients become final (head first, then the layers
// from last to first, then the embedding), which is where the all-reduce of that group may start.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "trainer/embedding.h"
#include "trainer/loss_head.h"
#include "trainer/reversible_stack.h"

namespace rf {

// One micro-batch of token windows, on the host.
struct TokenBatch {
  int64_t batch = 0, seq_len = 0;
  std::vector<int32_t> inputs;   // [batch * seq_len]
  std::vector<int32_t> targets;  // [batch * seq_len]
  // Training in streams (recurrence): this batch's segments start their lanes' streams, so the
  // memory of the segments before them is cleared.
  bool starts_stream = false;
};

struct BatchStats {
  double loss_sum = 0.0;  // sum of -log p(target) over all target positions
  int64_t tokens = 0;
  int64_t correct = 0;
  std::vector<float> row_loss;          // per position
  std::vector<int32_t> row_prediction;  // per position: the model's most likely next token
};

class ReformerModel {
 public:
  ReformerModel(const Config& cfg, Executor& ex);

  const Config& config() const { return cfg_; }
  // A resumed run continues under its checkpoint's train.seed: evaluation and generation with
  // this model (and the config text its checkpoints store) use it from now on.
  void adopt_seed(int64_t seed) { cfg_ = with_seed(cfg_, seed); }
  Executor& executor() { return ex_; }
  ParamStore& params() { return params_; }
  ReversibleStack& stack() { return stack_; }
  Workspace& workspace() { return ws_; }

  // Forward and backward of one micro-batch: gradients += grad_scale * d(sum of token losses).
  // The same as stage(), compute_forward_backward(), collect().
  // With `memory` (Transformer-XL's recurrence), the attention also sees each layer's memory of
  // the batch's lanes, which then advances by this segment.
  BatchStats forward_backward(const TokenBatch& batch, const StepContext& step, float grad_scale,
                              const std::function<void(int)>& group_done = {},
                              SegmentMemory* memory = nullptr);

  // forward_backward in three parts, so the device work can be captured once and replayed (a
  // CUDA graph; trainer/step_graphs.h). stage() hands the batch, its tokens grouped for the
  // embedding's gradient, and the step's number to the executor (uploads) and returns `step`
  // reading its number from there. compute_forward_backward() is device work only: no transfer,
  // no wait, and launch arguments that do not change from step to step for a batch of the same
  // shape. collect() waits for the device and fetches the losses.
  StepContext stage(const TokenBatch& batch, const StepContext& step);
  void compute_forward_backward(const StepContext& staged, float grad_scale,
                                const std::function<void(int)>& group_done = {},
                                SegmentMemory* memory = nullptr);
  BatchStats collect(const TokenBatch& batch);
  // Forward only (evaluation): losses and predictions per position.
  BatchStats forward(const TokenBatch& batch, const StepContext& step);
  // forward() of the next segment of each example's stream, its attention also seeing `memory`
  // (the earlier segments' layer inputs), which it then advances: Transformer-XL's evaluation.
  BatchStats forward_with_memory(const TokenBatch& batch, const StepContext& step,
                                 SegmentMemory& memory);
  // Forward of one sequence (batch 1); the logits of its position `position`. With `memory`, the
  // attention also sees it and it advances, as in forward_with_memory().
  std::vector<float> next_token_logits(const TokenBatch& sequence, const StepContext& step,
                                       int64_t position, SegmentMemory* memory = nullptr);

  // Cached generation (every layer dense or local; trainer/generation_cache.h): a cache for a
  // context of up to `capacity` positions, and the logits of the last of `tokens`, the context's
  // next positions (cache.len ..), which the cache then holds. The same logits as
  // next_token_logits over the whole context, at the cost of the new positions only. With
  // approximate_lsh, LSH layers too, their windows fixed as each position arrives
  // (trainer/lsh_generation_windows.h): no longer the uncached pass's logits past bucket_size.
  bool supports_cached_generation(bool approximate_lsh = false) const {
    return stack_.supports_cached_generation(approximate_lsh);
  }
  GenerationCache make_generation_cache(int64_t capacity, bool approximate_lsh = false);
  std::vector<float> cached_next_token_logits(const std::vector<int32_t>& tokens,
                                              GenerationCache& cache);
  // Transformer-XL's evaluation through the same cache: one stream (batch 1) segment by segment,
  // each segment's attention seeing the last `memory_len` positions before it (model.same_length
  // as in training), the keys and values of those positions kept rather than recomputed from
  // their layer inputs. forward_cached() gives what forward_with_memory() gives for the segment.
  // `text`: positions the whole stream holds, when known (a memory longer than that keeps the
  // same positions, so the cache is sized for no more: whole local chunks of it).
  GenerationCache make_memory_cache(int64_t memory_len, int64_t segment, int64_t text = -1);
  BatchStats forward_cached(const TokenBatch& segment, GenerationCache& cache);

  // LSH hash rounds used from now on (the paper evaluates with more rounds than it trains with).
  void set_n_hashes(int64_t n_hashes) {
    RF_CHECK(n_hashes >= 1 && n_hashes <= kMaxHashRounds);
    stack_.set_n_hashes(n_hashes);
  }

  int embedding_group() const { return embedding_group_; }
  int head_group() const { return head_group_; }

 private:
  // forward() and forward_with_memory(): the stack's forward with or without memory.
  BatchStats forward_pass(const TokenBatch& batch, const StepContext& step, SegmentMemory* memory);
  // x1 = x2 = the embedding of the staged batch, each sequence's first token at position
  // first_position; with one residual stream x2 is x1.
  void embed(const StepContext& staged, int64_t first_position, float** x1, float** x2);
  bool single_stream() const;
  // Stages `batch` (one sequence of new positions) and runs it through the stack after the
  // context `cache` holds; x1, x2 [rows, d_model] the last layer's outputs.
  void cached_pass(const TokenBatch& batch, GenerationCache& cache, float** x1, float** x2);
  static BatchStats summarize(HeadOutput&& out, const std::vector<int32_t>& targets);

  Config cfg_;
  Executor& ex_;
  Workspace ws_;
  ParamStore params_;
  int embedding_group_;
  EmbeddingLayer embedding_;
  ReversibleStack stack_;
  int head_group_;
  LossHead head_;
  DeviceBuffer<uint32_t> step_word_;  // the staged step's number (StepContext::step_on_device)
  TokenGroups token_groups_;          // of the staged batch, for the embedding's gradient
};

}  // namespace rf
