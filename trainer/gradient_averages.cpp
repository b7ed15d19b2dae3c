#include "trainer/gradient_averages.h"

namespace rf {

void start_gradient_average(Executor& ex, Communicator& comm, ParamStore& params, int group) {
  ex.start_collective([&comm, &params, group] {
    const ParamGroup& g = params.groups()[static_cast<size_t>(group)];
    // (NCCL orders the reduction after the compute stream's work with an event.)
    comm.start_average(params.grads() + g.offset, g.count, g.name);
  });
}

void order_after_gradient_averages(Executor& ex, Communicator& comm) {
  ex.start_collective([&comm] { comm.order_compute_after_averages(); });
}

}  // namespace rf
