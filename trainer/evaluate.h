// Evaluation: loss, bits per token and next-token accuracy of a model over validation windows,
// optionally only for target positions [begin, end) (e.g. the second copy of the duplication
// task). Dropout is off; LSH rotations are keyed by the window index, so results are repeatable.
#pragma once

#include <functional>

#include "comms/communicator.h"
#include "data/window_source.h"
#include "trainer/model.h"

namespace rf {

struct PositionRange {
  int64_t begin = 0;
  int64_t end = -1;  // -1 = seq_len
};

struct EvalResult {
  double loss = 0.0;            // mean nats per scored token
  double bits_per_token = 0.0;  // loss / ln 2
  double accuracy = 0.0;        // fraction of scored tokens whose argmax is the target
  int64_t tokens = 0;
  // With a table of the bytes of text each token stands for: the scored targets' bytes and the
  // loss per byte (comparable between byte-level and subword models on the same text).
  int64_t text_bytes = 0;
  double bits_per_byte = 0.0;
};

// Scores `windows` validation windows in batches of `batch`. With a communicator of several
// ranks, rank r scores batches r, r + ranks, ... and every rank returns the job's totals (so no
// rank idles in a collective while another evaluates). `on_batch(done, total)` reports this
// rank's progress when given. `token_bytes` (Tokenizer::token_bytes) adds bits per byte.
EvalResult evaluate(ReformerModel& model, const WindowSource& source, int64_t windows,
                    int64_t batch, PositionRange positions,
                    const std::function<void(int64_t, int64_t)>& on_batch = {},
                    Communicator* comm = nullptr, const std::vector<int32_t>& token_bytes = {});

// What evaluation with a memory runs segment `segment` of a stream with (one sequence of seq_len
// positions): train.seed, the evaluation step, no dropout, and the LSH rotations of example
// `segment`. Generation with a memory and no cache runs its segments with it too.
StepContext memory_segment_step(const Config& cfg, int64_t segment, int64_t seq_len);

// Transformer-XL's evaluation: windows [0, windows) of `source` as consecutive segments of one
// stream, each scored with the memory of the positions before it (up to memory_len; 0: none), in
// order, through the key/value cache (ReformerModel::forward_cached), or with LSH layers (which
// have no exact cache) through ReformerModel::forward_with_memory. `token_bytes` as for
// evaluate(); `on_window(done, total)` reports progress.
EvalResult evaluate_with_memory(ReformerModel& model, const WindowSource& source, int64_t windows,
                                int64_t memory_len, const std::vector<int32_t>& token_bytes = {},
                                const std::function<void(int64_t, int64_t)>& on_window = {});

// Validation as training does it: windows in batches of train.batch_size (split across the ranks
// of comm), or, for a model trained with memory (model.memory_len > 0), segment by segment with
// that memory on every rank (positions then unused: memory excludes the duplication task).
EvalResult evaluate_as_trained(ReformerModel& model, const WindowSource& source, int64_t windows,
                               const PositionRange& positions, Communicator* comm = nullptr);

// The baseline Transformer-XL's evaluation is compared with: the same segments, each scored by a
// forward pass over the up to context_len tokens before it and the segment, recomputed for every
// segment (a sliding window with the same attention length, no state kept).
EvalResult evaluate_sliding(ReformerModel& model, const WindowSource& source, int64_t windows,
                            int64_t context_len, const std::vector<int32_t>& token_bytes = {},
                            const std::function<void(int64_t, int64_t)>& on_window = {});

}  // namespace rf
