#include "trainer/model.h"

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
      head_(params_, cfg) {
  params_.allocate(ex);
  params_.initialize(ex, static_cast<uint64_t>(cfg.train.seed));
}

void ReformerModel::embed(const TokenBatch& batch, const StepContext& step, float** x1, float** x2,
                          int32_t** targets) {
  const int64_t rows = step.rows(), D = cfg_.model.d_model;
  RF_CHECK(static_cast<int64_t>(batch.inputs.size()) == rows &&
           static_cast<int64_t>(batch.targets.size()) == rows);
  int32_t* inputs = ws_.ints("model.inputs", rows);
  *targets = ws_.ints("model.targets", rows);
  ex_.upload(inputs, batch.inputs.data(), rows * sizeof(int32_t));
  ex_.upload(*targets, batch.targets.data(), rows * sizeof(int32_t));
  *x1 = ws_.floats("model.x1", rows * D);
  *x2 = ws_.floats("model.x2", rows * D);
  Kit kit{ex_, ws_};
  embedding_.forward(kit, params_, step, inputs, *x1);
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
                                           const std::function<void(int)>& group_done) {
  const int64_t rows = step.rows(), D = cfg_.model.d_model;
  float *x1, *x2;
  int32_t* targets;
  embed(batch, step, &x1, &x2, &targets);
  Kit kit{ex_, ws_};
  stack_.forward(kit, params_, step, x1, x2, true);

  float* dx1 = ws_.floats("model.dx1", rows * D);
  float* dx2 = ws_.floats("model.dx2", rows * D);
  ex_.zero(dx1, rows * D * sizeof(float));
  ex_.zero(dx2, rows * D * sizeof(float));
  head_.run(kit, params_, rows, x1, x2, targets, grad_scale, dx1, dx2);
  if (group_done) group_done(head_group_);

  stack_.backward(kit, params_, step, x1, x2, dx1, dx2, [&](int64_t layer) {
    if (group_done) group_done(stack_.group_of_layer(layer));
  });
  // Both streams started as copies of the embedding: its gradient is the sum.
  add_scaled(ex_, dx1, dx2, 1.0f, rows * D);
  embedding_.backward(kit, params_, step, batch.inputs, dx1);
  if (group_done) group_done(embedding_group_);
  // The first wait for the device in the step: the losses are fetched after the whole backward
  // pass has been handed to it.
  return summarize(head_.results(kit, rows), batch.targets);
}

BatchStats ReformerModel::forward(const TokenBatch& batch, const StepContext& step) {
  float *x1, *x2;
  int32_t* targets;
  embed(batch, step, &x1, &x2, &targets);
  Kit kit{ex_, ws_};
  stack_.forward(kit, params_, step, x1, x2, false);
  head_.run(kit, params_, step.rows(), x1, x2, targets, 0.0f, nullptr, nullptr);
  return summarize(head_.results(kit, step.rows()), batch.targets);
}

std::vector<float> ReformerModel::next_token_logits(const TokenBatch& sequence,
                                                    const StepContext& step, int64_t position) {
  RF_CHECK(sequence.batch == 1 && position >= 0 && position < sequence.seq_len);
  float *x1, *x2;
  int32_t* targets;
  embed(sequence, step, &x1, &x2, &targets);
  Kit kit{ex_, ws_};
  stack_.forward(kit, params_, step, x1, x2, false);
  return head_.logits(kit, params_, x1, x2, position);
}

}  // namespace rf
