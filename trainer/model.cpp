#include "trainer/model.h"

#include <algorithm>

#include "kernels/elementwise.h"

namespace rf {

ReformerModel::ReformerModel(const Config& cfg, Executor& ex)
    : cfg_(cfg),
      ex_(ex),
      ws_(ex),
      embedding_group_(params_.begin_group("embedding")),
      embedding_(params_, cfg),
      stack_(params_, cfg),
      head_group_(params_.begin_group("head")),
      head_(params_, cfg),
      step_word_(ex, 1) {
  params_.allocate(ex);
  params_.initialize(ex, static_cast<uint64_t>(cfg.train.seed));
}

StepContext ReformerModel::stage(const TokenBatch& batch, const StepContext& step) {
  const int64_t rows = step.rows();
  RF_CHECK(static_cast<int64_t>(batch.inputs.size()) == rows &&
           static_cast<int64_t>(batch.targets.size()) == rows);
  ex_.upload(ws_.ints("model.inputs", rows), batch.inputs.data(), rows * sizeof(int32_t));
  ex_.upload(ws_.ints("model.targets", rows), batch.targets.data(), rows * sizeof(int32_t));
  Kit kit{ex_, ws_};
  // Every pass starts here, after whatever changed the parameters (the optimizer, a checkpoint,
  // an import, a test): the products of this pass read the bf16 copy made now.
  params_.refresh_bf16_weights(ex_);
  if (step.training) token_groups_ = embedding_.group_tokens(kit, batch.inputs);
  ex_.upload(step_word_.data(), &step.step, sizeof(uint32_t));
  StepContext staged = step;
  staged.step_on_device = step_word_.data();
  return staged;
}

bool ReformerModel::single_stream() const {
  return cfg_.model.residual == ResidualMode::kSingle;
}

void ReformerModel::embed(const StepContext& staged, int64_t first_position, float** x1,
                          float** x2) {
  const int64_t rows = staged.rows(), D = cfg_.model.d_model;
  *x1 = ws_.floats("model.x1", rows * D);
  Kit kit{ex_, ws_};
  embedding_.forward(kit, params_, staged, ws_.ints("model.inputs", rows), *x1, first_position);
  if (single_stream()) {
    *x2 = *x1;
    return;
  }
  *x2 = ws_.floats("model.x2", rows * D);
  ex_.copy(*x2, *x1, rows * D * sizeof(float));
}

BatchStats ReformerModel::summarize(HeadOutput&& out, const std::vector<int32_t>& targets) {
  BatchStats s;
  s.tokens = static_cast<int64_t>(out.row_loss.size());
  for (float l : out.row_loss) s.loss_sum += l;
  for (size_t i = 0; i < targets.size(); ++i) s.correct += out.row_prediction[i] == targets[i];
  s.row_loss = std::move(out.row_loss);
  s.row_prediction = std::move(out.row_prediction);
  return s;
}

BatchStats ReformerModel::forward_backward(const TokenBatch& batch, const StepContext& step,
                                           float grad_scale,
                                           const std::function<void(int)>& group_done,
                                           SegmentMemory* memory) {
  compute_forward_backward(stage(batch, step), grad_scale, group_done, memory);
  return collect(batch);
}

void ReformerModel::compute_forward_backward(const StepContext& staged, float grad_scale,
                                             const std::function<void(int)>& group_done,
                                             SegmentMemory* memory) {
  RF_CHECK(staged.training && staged.step_on_device,
           "compute_forward_backward needs a batch staged for training");
  const int64_t rows = staged.rows(), D = cfg_.model.d_model;
  float *x1, *x2;
  embed(staged, 0, &x1, &x2);
  Kit kit{ex_, ws_};
  stack_.forward(kit, params_, staged, x1, x2, true, memory);

  float* dx1 = ws_.floats("model.dx1", rows * D);
  float* dx2 = single_stream() ? dx1 : ws_.floats("model.dx2", rows * D);
  ex_.zero(dx1, rows * D * sizeof(float));
  if (dx2 != dx1) ex_.zero(dx2, rows * D * sizeof(float));
  head_.run(kit, params_, rows, x1, x2, ws_.ints("model.targets", rows), grad_scale, dx1, dx2);
  if (group_done) group_done(head_group_);

  stack_.backward(
      kit, params_, staged, x1, x2, dx1, dx2,
      [&](int64_t layer) {
        if (group_done) group_done(stack_.group_of_layer(layer));
      },
      memory);
  if (memory) memory->advance(ex_);
  // Both streams started as copies of the embedding: its gradient is the sum.
  if (dx2 != dx1) add_scaled(ex_, dx1, dx2, 1.0f, rows * D);
  embedding_.backward(kit, params_, staged, token_groups_, dx1);
  if (group_done) group_done(embedding_group_);
}

BatchStats ReformerModel::collect(const TokenBatch& batch) {
  // The first wait for the device in the step: the losses are fetched after the whole backward
  // pass has been handed to it.
  Kit kit{ex_, ws_};
  return summarize(head_.results(kit, batch.batch * batch.seq_len), batch.targets);
}

BatchStats ReformerModel::forward(const TokenBatch& batch, const StepContext& step) {
  return forward_pass(batch, step, nullptr);
}

BatchStats ReformerModel::forward_with_memory(const TokenBatch& batch, const StepContext& step,
                                              SegmentMemory& memory) {
  return forward_pass(batch, step, &memory);
}

BatchStats ReformerModel::forward_pass(const TokenBatch& batch, const StepContext& step,
                                       SegmentMemory* memory) {
  const StepContext staged = stage(batch, step);
  float *x1, *x2;
  embed(staged, 0, &x1, &x2);
  Kit kit{ex_, ws_};
  stack_.forward(kit, params_, staged, x1, x2, false, memory);
  head_.run(kit, params_, staged.rows(), x1, x2, ws_.ints("model.targets", staged.rows()), 0.0f,
            nullptr, nullptr);
  return summarize(head_.results(kit, staged.rows()), batch.targets);
}

GenerationCache ReformerModel::make_generation_cache(int64_t capacity, bool approximate_lsh) {
  Kit kit{ex_, ws_};
  params_.refresh_bf16_weights(ex_);
  GenerationCache cache;
  cache.seed = static_cast<uint64_t>(cfg_.train.seed);
  stack_.prepare_cache(kit, params_, capacity, cache, approximate_lsh);
  return cache;
}

GenerationCache ReformerModel::make_memory_cache(int64_t memory_len, int64_t segment,
                                                 int64_t text) {
  RF_CHECK(memory_len >= 0 && segment >= 1);
  if (text >= 0) {  // (same_length's distance limit then masks nothing within the text either)
    const int64_t unit = cfg_.memory_unit();  // (no LSH layer in a cache: local chunks)
    memory_len = std::min(memory_len, (text + unit - 1) / unit * unit);
  }
  GenerationCache cache = make_generation_cache(2 * memory_len + segment);
  cache.memory_len = memory_len;
  if (cfg_.model.same_length && memory_len > 0) cache.max_distance = memory_len - 1;
  return cache;
}

void ReformerModel::cached_pass(const TokenBatch& batch, GenerationCache& cache, float** x1,
                                float** x2) {
  RF_CHECK(batch.batch == 1 && batch.seq_len >= 1);
  const int64_t rows = batch.seq_len;
  StepContext step;
  step.seed = static_cast<uint64_t>(cfg_.train.seed);
  step.step = kEvalStep;
  step.seq_len = rows;
  step.training = false;
  const StepContext staged = stage(batch, step);
  cache.make_room(ex_, rows);  // (before the embedding, which places the rows after the context)
  embed(staged, cache.len, x1, x2);
  Kit kit{ex_, ws_};
  stack_.forward_cached(kit, params_, *x1, *x2, rows, cache);
}

std::vector<float> ReformerModel::cached_next_token_logits(const std::vector<int32_t>& tokens,
                                                           GenerationCache& cache) {
  const int64_t rows = static_cast<int64_t>(tokens.size());
  TokenBatch batch;
  batch.batch = 1;
  batch.seq_len = rows;
  batch.inputs = tokens;
  batch.targets.assign(tokens.size(), 0);
  float *x1, *x2;
  cached_pass(batch, cache, &x1, &x2);
  Kit kit{ex_, ws_};
  return head_.logits(kit, params_, x1, x2, rows - 1);
}

BatchStats ReformerModel::forward_cached(const TokenBatch& segment, GenerationCache& cache) {
  float *x1, *x2;
  cached_pass(segment, cache, &x1, &x2);
  Kit kit{ex_, ws_};
  const int64_t rows = segment.seq_len;
  head_.run(kit, params_, rows, x1, x2, ws_.ints("model.targets", rows), 0.0f, nullptr, nullptr);
  return summarize(head_.results(kit, rows), segment.targets);
}

std::vector<float> ReformerModel::next_token_logits(const TokenBatch& sequence,
                                                    const StepContext& step, int64_t position,
                                                    SegmentMemory* memory) {
  RF_CHECK(sequence.batch == 1 && position >= 0 && position < sequence.seq_len);
  const StepContext staged = stage(sequence, step);
  float *x1, *x2;
  embed(staged, 0, &x1, &x2);
  Kit kit{ex_, ws_};
  stack_.forward(kit, params_, staged, x1, x2, false, memory);
  return head_.logits(kit, params_, x1, x2, position);
}

}  // namespace rf
