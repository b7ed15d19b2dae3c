// The training loop of `reformer train`: micro-batches with gradient accumulation, gradient
// averaging across ranks, global-norm clipping, AdamW with the schedule, a progress line and JSON
// metrics, periodic evaluation and checkpoints, and at the end the final checkpoint and a report
// of what the model learned.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <ostream>
#include <string>

#include "trainer/job.h"

namespace rf {

struct TrainOptions {
  std::string resume;         // "" = fresh run, "auto", "auto-or-new" or a path (trainer/resume.h)
  bool report = true;         // print what the model learned at the end (if train.report too)
  int64_t stop_at_step = -1;  // end (with a checkpoint) once this many steps are done; -1 = never
  bool verify_replicas = false;  // after every step, check all ranks hold identical parameters
};

struct TrainSummary {
  int64_t steps_done = 0;
  double final_loss = 0.0;  // mean training loss of the last step
  std::string final_checkpoint;
  bool stopped_by_signal = false;  // SIGTERM or SIGUSR1 on some rank
  int step_graphs = 0;             // graphs captured (runtime.step_graphs)
  // Collectives among the device work (trainer/gradient_averages.h: each bucket's average, and
  // the wait for them that ends the backward pass), over the run, replayed ones included; and
  // those the graphs captured hold.
  int64_t collectives = 0;
  int64_t collectives_in_graphs = 0;
  // Rank 0 of a completed run with TrainOptions::report and train.report: prints what the model
  // learned. Call it after the job's communicators are gone (it holds the model).
  std::function<void(std::ostream&)> report;
};

// Exit status of `reformer train` when a signal stopped it before the end (sysexits EX_TEMPFAIL:
// "try again later"); batch scripts requeue the job on it.
constexpr int kExitStoppedBySignal = 75;
// The same after Ctrl-C (128 + SIGINT, as a shell reports a program Ctrl-C ended): the user
// stopped it, so launch/slurm/reformer.sbatch does not requeue it.
constexpr int kExitInterrupted = 130;
// Exit status of every command given a command line it cannot parse (as argparse and getopt
// programs exit); other errors exit 1.
constexpr int kExitUsage = 2;

TrainSummary run_training(const Config& cfg, const TrainOptions& options, JobComms& comms);

// Communicators of a single-process job (for tests and tools).
JobComms single_process_comms();

}  // namespace rf
