#include "trainer/step_graphs.h"

namespace rf {

void StepGraphs::run(int part, int64_t rows, const std::function<void()>& work) {
  Part& p = parts_[{part, rows}];
  bool start_over = p.calls > 0 && p.memory_generation != ex_.memory_generation();
  if (p.holds_collectives && any_rank_) start_over = any_rank_(start_over);
  if (start_over) {
    const bool holds_collectives = p.holds_collectives;
    p = Part{};
    p.holds_collectives = holds_collectives;  // (agreeing still, until the warm-up says again)
  }
  if (p.graph >= 0) {
    ex_.replay_graph(p.graph);
    return;
  }
  if (p.calls++ == 0) {  // the warm-up: allocations happen here, outside any graph
    const int64_t collectives = ex_.collectives();
    work();
    p.holds_collectives = ex_.collectives() > collectives;
    p.memory_generation = ex_.memory_generation();
    return;
  }
  ex_.begin_capture();
  try {
    work();
  } catch (...) {
    // Leave the executor usable for the error's report; the work's error is the one to report,
    // and one from ending the capture (a consequence of it) would hide it.
    try {
      ex_.end_capture();
    } catch (...) {  // NOLINT(bugprone-empty-catch): rethrowing the first error below
    }
    throw;
  }
  p.graph = ex_.end_capture();
  p.memory_generation = ex_.memory_generation();
  ++graphs_;
  ex_.replay_graph(p.graph);
}

std::function<bool(bool)> any_rank_of(Communicator& comm) {
  if (comm.size() == 1) return {};
  return [&comm](bool flag) {
    int32_t ranks = flag ? 1 : 0;
    comm.all_reduce_sum(&ranks, 1, DType::kInt32);
    return ranks > 0;
  };
}

}  // namespace rf
