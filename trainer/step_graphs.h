// Parts of a training step replayed from graphs (runtime.step_graphs). A part is device work only
// (ReformerModel::compute_forward_backward, AdamW::compute): its uploads come before it and its
// downloads after. The first call of a part runs it as usual, so its workspace is allocated
// then; the second captures it (Executor::begin_capture) and replays the capture; every later
// call replays. Per-step values reach the captured launches through executor memory (the step's
// number, the learning rate, the bias corrections), never through their arguments. When memory
// is released after a capture (a workspace grew for an evaluation batch, say), a graph may hold
// a freed address, so each part starts over: one call as usual, then a new capture. So does a part
// warmed up before a release (a Transformer-XL memory cleared between the warm-up and the
// capture, say), whose capture would otherwise have to allocate again.
//
// With several ranks, a part whose graph holds collectives (the gradient averages) must be
// captured, replayed or run eagerly on every rank alike: NCCL requires a collective to be
// graph-captured on all ranks or on none. Memory can be released on one rank only (its share of
// an evaluation ends with a smaller batch, say), so for such parts the ranks agree before each
// call whether to start over (`any_rank`: true on every rank when it is true on any).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <utility>

#include "comms/communicator.h"
#include "kernels/executor.h"

namespace rf {

class StepGraphs {
 public:
  // `any_rank` (a collective; empty for a single process): the logical or of a flag over ranks.
  explicit StepGraphs(Executor& ex, std::function<bool(bool)> any_rank = {})
      : ex_(ex), any_rank_(std::move(any_rank)) {}

  // Runs `work` as part `part` of a step over `rows` rows (a new shape is a new part).
  void run(int part, int64_t rows, const std::function<void()>& work);
  // Graphs captured so far.
  int graphs() const { return graphs_; }

 private:
  struct Part {
    int calls = 0;
    int graph = -1;
    int64_t memory_generation = 0;   // the executor's after the warm-up, then at the capture
    bool holds_collectives = false;  // its first call started collectives
  };
  Executor& ex_;
  std::function<bool(bool)> any_rank_;
  std::map<std::pair<int, int64_t>, Part> parts_;
  int graphs_ = 0;
};

// StepGraphs' agreement over the ranks of `comm` (a host collective), or none for one rank.
std::function<bool(bool)> any_rank_of(Communicator& comm);

}  // namespace rf
