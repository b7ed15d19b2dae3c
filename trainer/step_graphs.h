// Parts of a training step replayed from graphs (runtime.step_graphs). A part is device work only
// (ReformerModel::compute_forward_backward, AdamW::compute): its uploads come before it and its
// downloads after. The first call of a part runs it as usual, so its workspace is allocated
// then; the second captures it (Executor::begin_capture) and replays the capture; every later
// call replays. Per-step values reach the captured launches through executor memory (the step's
// number, the learning rate, the bias corrections), never through their arguments. When memory
// is released after a capture (a workspace grew for an evaluation batch, say), a graph may hold
// a freed address, so each part starts over: one call as usual, then a new capture.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <utility>

#include "kernels/executor.h"

namespace rf {

class StepGraphs {
 public:
  explicit StepGraphs(Executor& ex) : ex_(ex) {}

  // Runs `work` as part `part` of a step over `rows` rows (a new shape is a new part).
  void run(int part, int64_t rows, const std::function<void()>& work);
  // Graphs captured so far.
  int graphs() const { return graphs_; }

 private:
  struct Part {
    int calls = 0;
    int graph = -1;
    int64_t memory_generation = 0;  // the executor's at the capture
  };
  Executor& ex_;
  std::map<std::pair<int, int64_t>, Part> parts_;
  int graphs_ = 0;
};

}  // namespace rf
