// The training loop of `reformer train`: micro-batches with gradient accumulation, gradient
// averaging across ranks, global-norm clipping, AdamW with the schedule, a progress line and JSON
// metrics, periodic evaluation and checkpoints, and at the end the final checkpoint and a report
// of what the model learned.
#pragma once

#include <memory>
#include <string>

#include "comms/communicator.h"
#include "trainer/config.h"

namespace rf {

struct TrainOptions {
  std::string resume;  // "" = fresh run, "auto" = newest intact checkpoint if any, else a path
  bool report = true;  // print what the model learned at the end
  int64_t stop_at_step = -1;  // end (with a checkpoint) once this many steps are done; -1 = never
};

// The executor runtime.device asks for (a clear error when it cannot be had).
std::unique_ptr<class Executor> make_executor(const RuntimeConfig& runtime);

struct TrainSummary {
  int64_t steps_done = 0;
  double final_loss = 0.0;  // mean training loss of the last step
  std::string final_checkpoint;
};

TrainSummary run_training(const Config& cfg, const TrainOptions& options, Communicator& comm);

}  // namespace rf
