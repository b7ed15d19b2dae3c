#include "trainer/job.h"

#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <vector>

#include "base/error.h"
#include "base/stop_signals.h"
#include "comms/mpi_communicator.h"
#include "comms/nccl_communicator.h"
#include "kernels/executor.h"
#include "kernels/launch_recorder.h"
#include "trainer/selftest.h"

namespace rf {
namespace {

// Records the signal (base/stop_signals.h): read at step boundaries and by the MPI watchdog.
extern "C" void request_stop(int signal_number) {
  g_stop_signals.last.store(signal_number);
  g_stop_signals.count.fetch_add(1);
}

std::atomic<int> g_interrupts{0};

// Ctrl-C (SIGINT): the first asks for a stop at the next step boundary with a checkpoint, as
// SIGTERM does (it used to end the run at once, losing the steps since the last checkpoint); a
// second ends the process at once, as Ctrl-C does elsewhere.
extern "C" void request_stop_interactively(int signal_number) {
  if (g_interrupts.fetch_add(1) > 0) {
    std::signal(SIGINT, SIG_DFL);
    std::raise(SIGINT);
    return;
  }
  static const char kNote[] =
      "\nreformer: stopping with a checkpoint after the step in progress (Ctrl-C again: quit now, "
      "losing the steps since the last checkpoint)\n";
  const ssize_t written = write(STDERR_FILENO, kNote, sizeof(kNote) - 1);
  (void)written;
  request_stop(signal_number);
}

}  // namespace

int gpu_for_local_rank(int local_rank) {
  return cuda_device_count() == 1 ? 0 : local_rank;
}

void check_rank_executor(Executor& ex, const RuntimeConfig& runtime, int local_rank,
                         std::ostream& notes) {
  if (!runtime.tensor_core_attention) ex.set_tensor_core_attention(false);  // (before the check)
  // Every command that runs on a GPU (training, evaluation, generation, the benchmarks) checks
  // its kernels first, so none runs one that differs from the CPU reference unannounced.
  if (ex.device() != Device::kCuda || !runtime.verify_kernels) return;
  const std::string note = verify_kernels_or_fail(ex, runtime.precision);
  if (!note.empty() && local_rank == 0) notes << note << std::endl;
}

std::unique_ptr<Executor> make_rank_executor(const RuntimeConfig& runtime, int local_rank,
                                             int ranks_on_host) {
  ExecutorOptions options;
  options.ranks_on_host = ranks_on_host;
  options.device = runtime.device;
  options.threads = static_cast<int>(runtime.threads);
  options.precision = runtime.precision;
  if (runtime.device == Device::kCuda) options.gpu = gpu_for_local_rank(local_rank);
  try {
    std::unique_ptr<Executor> ex = make_executor(options);
    check_rank_executor(*ex, runtime, local_rank, std::cerr);
    // Executors without graphs of their own (the CPU's) replay recorded launches.
    if (runtime.step_graphs && !ex->supports_graphs())
      ex = std::make_unique<LaunchRecorder>(std::move(ex));
    return ex;
  } catch (const Error& e) {
    if (runtime.device != Device::kCuda) throw;
    fail("local rank ", local_rank, ": ", e.what(),
         " (start at most as many ranks per host as it has GPUs)");
  }
}

JobComms make_host_comms(const RuntimeConfig& runtime) {
  JobComms c;
  c.host = launched_as_multi_rank_job() ? make_mpi_communicator(runtime.collective_timeout_s)
                                        : make_single_process_communicator();
  return c;
}

void add_device_comms(JobComms& c, const RuntimeConfig& runtime) {
  // NCCL's set-up is a collective of the ranks on GPUs: a rank started with another
  // runtime.device would leave them waiting in it (the whole config is compared later,
  // trainer/rank_agreement.h).
  int32_t on_gpus = runtime.device == Device::kCuda ? 1 : 0;
  c.host->all_reduce_sum(&on_gpus, 1, DType::kInt32);
  run_on_every_rank(*c.host, [&] {
    if (on_gpus != 0 && on_gpus != c.host->size())
      fail("runtime.device is ", device_name(runtime.device), " on this rank, but ", on_gpus,
           " of the ", c.host->size(), " ranks have cuda; every rank must be started with the ",
           "same config file and --set options");
  });
  if (runtime.device == Device::kCuda && c.host->size() > 1)
    c.device_owned = make_nccl_communicator(*c.host, gpu_for_local_rank(c.host->local_rank()),
                                            runtime.collective_timeout_s);
}

JobComms make_job_comms(const RuntimeConfig& runtime) {
  JobComms c = make_host_comms(runtime);
  add_device_comms(c, runtime);
  return c;
}

std::string broadcast_string(Communicator& comm, const std::string& value, int root) {
  int64_t length = static_cast<int64_t>(value.size());
  comm.broadcast(&length, 1, DType::kInt64, root);
  std::string out = comm.rank() == root ? value : std::string(static_cast<size_t>(length), '\0');
  if (length > 0) comm.broadcast(out.data(), static_cast<size_t>(length), DType::kUint8, root);
  return out;
}

void run_on_every_rank(Communicator& comm, const std::function<void()>& work) {
  std::string error;
  try {
    work();
  } catch (const Error& e) {
    error = e.what();
    if (error.empty()) error = "unknown error";
  }
  // (One process: the collectives below do nothing and the same AgreedError results.)
  std::vector<int32_t> failed(static_cast<size_t>(comm.size()), 0);
  failed[static_cast<size_t>(comm.rank())] = error.empty() ? 0 : 1;
  comm.all_reduce_sum(failed.data(), failed.size(), DType::kInt32);
  int first = -1, count = 0;
  for (int r = 0; r < comm.size(); ++r)
    if (failed[static_cast<size_t>(r)]) {
      if (first < 0) first = r;
      ++count;
    }
  if (first < 0) return;
  std::string message = broadcast_string(comm, error, first);
  if (first != 0) message = "rank " + std::to_string(first) + ": " + message;
  if (count > 1) message += " (" + std::to_string(count) + " ranks failed)";
  throw AgreedError(message);
}

void run_on_root(Communicator& comm, const std::function<void()>& work) {
  std::string error;
  if (comm.is_root()) {
    try {
      work();
    } catch (const Error& e) {
      error = e.what();
      if (error.empty()) error = "unknown error on rank 0";
    }
  }
  error = broadcast_string(comm, error);
  if (!error.empty()) throw AgreedError(error);
}

void install_stop_signal_handlers() {
  struct sigaction action;
  std::memset(&action, 0, sizeof(action));
  action.sa_handler = request_stop;
  sigemptyset(&action.sa_mask);
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGUSR1, &action, nullptr);
  // A SIGINT ignored from the start (a job a script ran in the background) stays ignored: the
  // Ctrl-C meant for the script is not meant for the job.
  struct sigaction current;
  if (sigaction(SIGINT, nullptr, &current) == 0 && current.sa_handler == SIG_IGN) return;
  action.sa_handler = request_stop_interactively;
  sigaction(SIGINT, &action, nullptr);
}

void restore_default_interrupt() {
  struct sigaction current;
  if (sigaction(SIGINT, nullptr, &current) == 0 && current.sa_handler == request_stop_interactively)
    std::signal(SIGINT, SIG_DFL);
}

bool interrupted() {
  return g_stop_signals.last.load() == SIGINT;
}

bool stop_requested(Communicator& comm) {
  int32_t flag = g_stop_signals.last.load() != 0 ? 1 : 0;
  comm.all_reduce_sum(&flag, 1, DType::kInt32);
  return flag > 0;
}

std::string stop_signal_name() {
  return signal_name(g_stop_signals.last.load());
}

}  // namespace rf
