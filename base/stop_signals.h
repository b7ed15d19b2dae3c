// The signals that ask a job to stop: SIGTERM (from SLURM before a preemption or time limit, or
// from mpirun when it ends the job), SIGUSR1 and a first SIGINT (Ctrl-C). The handler (trainer/job.cpp) records each one
// here; the training loop reads them at step boundaries, and the MPI communicator's watchdog
// (comms/) says so when one finds its rank waiting in a collective, which a step boundary would
// never reach if a host is gone.
#pragma once

#include <atomic>
#include <string>

namespace rf {

struct StopSignals {
  std::atomic<int> last{0};        // the latest signal's number (0: none yet)
  std::atomic<unsigned> count{0};  // signals received so far
};
// Process-wide and constant-initialised, so a signal handler may write it at any time.
extern StopSignals g_stop_signals;

// "SIGTERM", "SIGUSR1", "SIGINT", "signal N", or "" for 0.
std::string signal_name(int signal_number);

}  // namespace rf
