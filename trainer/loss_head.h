// The output head (as trax): concatenate the two streams [x1, x2] (2 * d_model), layer norm,
// project to the vocabulary, softmax cross-entropy. With model.residual = single the one stream
// x1 (d_model) takes the concatenation's place, and x2 is not read (Transformer-XL's head). Done
// head_chunk rows at a time, forward and backward together, so no [rows, vocab] buffer ever exists.
#pragma once

#include <vector>

#include "trainer/config.h"
#include "trainer/layer_norm.h"

namespace rf {

struct HeadOutput {
  std::vector<float> row_loss;          // [rows] -log p(target)
  std::vector<int32_t> row_prediction;  // [rows] argmax of the logits
};

class LossHead {
 public:
  LossHead(ParamStore& store, const Config& cfg);

  // Scores targets (device [rows]) from the final streams x1, x2 [rows, d_model]. When dx1 and
  // dx2 are not null, also back-propagates grad_scale * d(sum of row losses) into them (+=) and
  // into the head's parameter gradients (single stream: into dx1 only; dx2 is not touched). Nothing
  // waits for the device: the per-row results stay there until results() fetches them, so a
  // training step hands its whole backward pass to the device before the host waits for anything.
  void run(Kit& kit, ParamStore& p, int64_t rows, const float* x1, const float* x2,
           const int32_t* targets, float grad_scale, float* dx1, float* dx2) const;
  // The per-row results of the last run() of `rows` rows (waits for the device).
  HeadOutput results(Kit& kit, int64_t rows) const;
  // Logits [vocab] of row `row` of the final streams (for sampling).
  std::vector<float> logits(Kit& kit, ParamStore& p, const float* x1, const float* x2,
                            int64_t row) const;

 private:
  // The head's input rows [row0, row0 + n): x1's own rows with one stream, else their
  // concatenation with x2's in `cat`.
  const float* input_rows(Kit& kit, const float* x1, const float* x2, int64_t row0, int64_t n,
                          float* cat) const;

  LayerNormLayer norm_;
  bool single_stream_;
  int64_t d_model_, width_, vocab_;
  ChunkSetting chunking_;
  int w_out_ = -1, b_out_ = -1;
};

}  // namespace rf
