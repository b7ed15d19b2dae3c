// `reformer eval --memory-len M[,M2...] --segment S`: Transformer-XL's evaluation of a checkpoint
// over the validation stream, segment by segment, each segment's attention seeing the memory of
// up to M positions before it (trainer/segment_memory.h), and a table of bits per token (and per
// byte, for text) against the memory length, which shows what a longer memory gains.
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "trainer/config.h"

namespace rf {

struct MemoryEvalOptions {
  std::vector<int64_t> memory_lens;  // one row of the table each (0: no memory)
  int64_t segment = 0;               // tokens per segment (train.seq_len for the evaluation)
  int64_t windows = 0;               // segments scored; 0: train.eval_batches x train.batch_size
  bool json = false;                 // one JSON object per memory length instead of the table
  // Score each segment by recomputing the window of the M tokens before it and the segment (the
  // sliding-window baseline, same attention length) instead of keeping the memory.
  bool sliding = false;
};

// Why cfg cannot be evaluated with these options ("" when it can): memory needs positions that
// do not restart at each segment (relative or none), a layer that sees the memory
// (Config::layer_sees_memory), a memory of whole local and LSH chunks (Config::memory_unit), and
// for --sliding no LSH layer.
std::string memory_eval_problem(const Config& cfg, const MemoryEvalOptions& options);

// cfg: the checkpoint's config with train.seq_len = options.segment.
void evaluate_memory_table(const std::string& checkpoint, const Config& cfg,
                           const MemoryEvalOptions& options, std::ostream& out);

}  // namespace rf
