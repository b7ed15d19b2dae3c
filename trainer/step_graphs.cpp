#include "trainer/step_graphs.h"

namespace rf {

void StepGraphs::run(int part, int64_t rows, const std::function<void()>& work) {
  Part& p = parts_[{part, rows}];
  if (p.graph >= 0 && p.memory_generation != ex_.memory_generation()) p = Part{};
  if (p.graph >= 0) {
    ex_.replay_graph(p.graph);
    return;
  }
  if (p.calls++ == 0) {  // the warm-up: allocations happen here, outside any graph
    work();
    return;
  }
  ex_.begin_capture();
  try {
    work();
  } catch (...) {
    try {
      ex_.end_capture();  // leave the executor usable for the error's report
    } catch (...) {
    }
    throw;
  }
  p.graph = ex_.end_capture();
  p.memory_generation = ex_.memory_generation();
  ++graphs_;
  ex_.replay_graph(p.graph);
}

}  // namespace rf
