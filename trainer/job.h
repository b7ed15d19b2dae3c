// What a process of a training job needs to know about the job: its communicators (one for host
// values such as losses and flags; one for gradients, which is NCCL on GPUs and the same MPI
// communicator on CPUs), and helpers that keep every rank in agreement: work done on rank 0 whose
// failure becomes the same clear error on every rank, and a stop request (SIGTERM or SIGUSR1, as
// SLURM sends before preemption) that all ranks honour at the same step boundary.
#pragma once

#include <functional>
#include <iosfwd>
#include <memory>
#include <string>

#include "base/error.h"
#include "base/launcher_env.h"
#include "comms/communicator.h"
#include "kernels/executor.h"
#include "trainer/config.h"

namespace rf {

struct JobComms {
  std::unique_ptr<Communicator> host;          // MPI (or single process): host buffers
  std::unique_ptr<Communicator> device_owned;  // NCCL when gradients live on GPUs

  // The communicator for gradients: NCCL when there is one, otherwise the host communicator.
  Communicator& device() { return device_owned ? *device_owned : *host; }
  bool is_root() const { return host->is_root(); }
  // Closes the communicators (NCCL before the MPI communicator it was bootstrapped from).
  void close() {
    device_owned.reset();
    host.reset();
  }
  ~JobComms() { close(); }
  JobComms() = default;
  JobComms(JobComms&&) = default;
  JobComms& operator=(JobComms&&) = delete;
};

// The GPU a rank uses: the only visible one (SLURM --gpus-per-task, CUDA_VISIBLE_DEVICES), or
// the one at its local rank among several.
int gpu_for_local_rank(int local_rank);

// The executor runtime.device asks for; on GPUs the device is the rank's local index, and a
// rank without a GPU of its own is a clear error. On CPUs the ranks_on_host ranks of this host
// share its memory. On a GPU with runtime.verify_kernels its kernels are checked first
// (verify_kernels_or_fail, trainer/selftest.h): local rank 0 prints the note of a fallback to
// stderr, and kernels that differ from the CPU reference in every fallback are an rf::Error.
std::unique_ptr<Executor> make_rank_executor(const RuntimeConfig& runtime, int local_rank = 0,
                                             int ranks_on_host = 1);
// The start-up check make_rank_executor runs: runtime.tensor_core_attention applied, then on a GPU
// executor with runtime.verify_kernels, verify_kernels_or_fail, with the note of a fallback
// written to `notes` by local rank 0.
void check_rank_executor(Executor& ex, const RuntimeConfig& runtime, int local_rank,
                         std::ostream& notes);

// Single-process communicators, or MPI (+ NCCL for runtime.device cuda) when launched by
// mpirun/srun with more than one rank: make_host_comms, then add_device_comms.
JobComms make_job_comms(const RuntimeConfig& runtime);
// The host communicator alone (MPI when launched as a job of several ranks).
JobComms make_host_comms(const RuntimeConfig& runtime);
// NCCL beside it for runtime.device cuda with several ranks; every rank throws the same
// AgreedError if the ranks disagree on runtime.device (NCCL's set-up would wait forever).
void add_device_comms(JobComms& comms, const RuntimeConfig& runtime);

// An error every rank of the job raised together (so the job can end cleanly, rank 0 reporting).
class AgreedError : public Error {
 public:
  explicit AgreedError(const std::string& message) : Error(message) {}
};

// Runs `work` on rank 0 only. If it throws rf::Error there, every rank throws the same
// AgreedError; otherwise every rank returns normally. (Without this a failure on rank 0 would
// leave the other ranks waiting in their next collective.)
void run_on_root(Communicator& comm, const std::function<void()>& work);

// Runs `work` on every rank. If it fails on any rank, every rank throws the same AgreedError,
// carrying the message of the lowest failing rank — one clear line instead of one per rank.
void run_on_every_rank(Communicator& comm, const std::function<void()>& work);

// Sends a string from `root` to all ranks.
std::string broadcast_string(Communicator& comm, const std::string& value, int root = 0);

// Installs handlers for SIGTERM, SIGUSR1 and Ctrl-C (SIGINT, unless ignored from the start) that
// request a stop at the next step boundary; a second Ctrl-C ends the process at once.
void install_stop_signal_handlers();
// Whether any rank has received a stop signal (a collective: every rank gets the same answer).
bool stop_requested(Communicator& comm);
// The name of the signal that requested the stop, or "" when none arrived on this rank.
std::string stop_signal_name();
// Whether this process's stop came from Ctrl-C (SIGINT): it then exits 130 after its
// checkpoint, not 75, so that a batch script does not requeue a run its user stopped.
bool interrupted();
// Ctrl-C ends the process at once again (after training: nothing is left to checkpoint).
void restore_default_interrupt();

}  // namespace rf
