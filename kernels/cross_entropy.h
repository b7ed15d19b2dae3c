// Launcher of the loss head's last step: the output bias, softmax cross-entropy of each row of
// logits, its argmax, and (for training) the gradient written over the logits. The head runs it
// per chunk of rows, so the [rows, vocab] logits never exist for a whole sequence.
#pragma once

#include <cstdint>

#include "kernels/executor.h"

namespace rf {

struct CrossEntropyArgs {
  float* logits = nullptr;           // [rows, vocab]: in x W; out grad_scale * (softmax - onehot)
  const float* bias = nullptr;       // [vocab], added to the logits first (null: none)
  const int32_t* targets = nullptr;  // [rows]
  float* loss = nullptr;             // [rows] out: -log p(target)
  int32_t* prediction = nullptr;     // [rows] out: argmax of the logits
  int64_t rows = 0, vocab = 0;
  float grad_scale = 1.0f;  // d(total loss)/d(row loss)
  bool want_grad = false;
};
void cross_entropy(Executor& ex, const CrossEntropyArgs& args);

}  // namespace rf
