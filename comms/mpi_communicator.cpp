// The MPI Communicator: the collectives of a data-parallel job on CPU buffers, over Open MPI (any
// MPI-3 library that provides MPI_THREAD_MULTIPLE works), and the detection of a multi-rank launch.
//
// Design. Every collective of a communicator, blocking or not, is queued to one communication
// thread that owns its MPI traffic and runs the queue in start order, one collective at a time.
// Each collective runs in two phases on a private duplicate of MPI_COMM_WORLD:
//   1. arrival: an MPI_Ibarrier, polled with MPI_Test and short sleeps, until every rank has
//      reached this collective;
//   2. transfer: the library's blocking collective (MPI_Allreduce, MPI_Bcast, MPI_Allgather),
//      which, with every rank present, runs at the library's full speed.
// - Why a thread: Open MPI progresses communication only inside MPI calls, and the backward pass
//   spends hundreds of milliseconds in OpenMP loops and BLAS between calls into the communicator;
//   without a thread of its own the reduction would not overlap anything.
// - Why two phases: a blocking MPI call spins a core at 100% while it waits for a slower rank
//   (the cores are needed for compute); polling the barrier with sleeps waits for stragglers at a
//   few percent of a core instead (see pause_before_next_poll). And Open MPI's non-blocking
//   all-reduce (libnbc) is no substitute for phase 2: in place it always uses a binomial tree, and
//   it advances one round per MPI_Test; polled that way it measured 2-5x slower than MPI_Allreduce
//   for 0.5-32 MB on two ranks, where the two phases come within about 10-20% of it (the
//   bench/allreduce_bench table shows both ours and MPI_Allreduce).
// - Order and reproducibility: collectives complete in start order, and a blocking collective
//   completes after every average started before it. Open MPI's tuned component picks the
//   all-reduce algorithm from fixed rules on the rank count and message size (recursive doubling,
//   ring, ...), each with a fixed order of additions whose result every rank shares, so the same
//   inputs on the same number of ranks give bit-identical results on every rank and every run.
//   No MCA parameter is set.
// - Deadline: a watchdog thread checks the collective in progress, phase 1 and 2 alike; one that
//   has not completed timeout_seconds after it started prints one line naming the rank, the
//   operation and the step, and calls MPI_Abort, which makes mpirun end every rank. A rank that
//   dies outright is noticed by mpirun itself, which ends the job at once.
//
// Global state: MPI can be initialised and finalised only once per process, so a process-wide
// count of live MPI communicators decides when to call MPI_Init_thread and MPI_Finalize; and
// ending the job is process-wide, so a process-wide flag makes sure its message is printed once.
#include "comms/mpi_communicator.h"

// The C API only: the project links MPI::MPI_C, and mpi.h would otherwise pull in the deprecated
// C++ bindings (which need libmpi_cxx).
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <sstream>
#include <thread>

#include "base/error.h"
#include "base/stop_signals.h"
#include "comms/collective_text.h"
#include "comms/mpi_completion_log.h"

namespace rf {
namespace {

using Clock = std::chrono::steady_clock;
using Microseconds = std::chrono::microseconds;

constexpr int kHostNameBytes = 256;                   // fixed size of each name in all_hosts()
constexpr size_t kMaxBytesPerCall = size_t{1} << 30;  // MPI counts are int: split larger spans
constexpr Microseconds kSpinBeforeSleeping{50};
constexpr Microseconds kMinPollPause{20};
constexpr Microseconds kMaxPollPauseWhileWaited{500};
constexpr Microseconds kMaxPollPause{2000};
constexpr size_t kCompletionLogLength = 1024;
constexpr std::chrono::milliseconds kLineForwardingPause{500};
// A stop signal that finds a collective waiting this long gets a note (watch_deadlines); the
// watchdog looks at least this often, well inside the second mpirun leaves between its SIGTERM
// and SIGKILL.
constexpr std::chrono::seconds kWaitWorthANote{1};
constexpr std::chrono::milliseconds kMaxWatchPeriod{100};

// ---- errors ------------------------------------------------------------------------------------

// This process's rank in MPI_COMM_WORLD, or -1 while MPI is not running.
int world_rank() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (!initialized || finalized) return -1;
  int rank = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

// Prints `error: rank R (host H): <why>` as one line and ends every rank of the job through
// MPI_Abort (mpirun kills the others). When several threads get here, only the first prints.
[[noreturn]] void end_job(const std::string& why) {
  static std::atomic<bool> job_ending{false};
  if (job_ending.exchange(true)) {
    for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));  // the first caller ends it
  }
  const std::string line =
      "error: " + rank_text(world_rank(), this_host_name()) + ": " + one_line(why) + "\n";
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
  // mpirun's daemon forwards the line only while this process lives; when the abort reaches it
  // first (seen with ranks on other hosts), the line is lost. A moment lets it through.
  std::this_thread::sleep_for(kLineForwardingPause);
  MPI_Abort(MPI_COMM_WORLD, 1);
  std::_Exit(1);  // MPI_Abort does not return
}

std::string mpi_error_text(int code) {
  char text[MPI_MAX_ERROR_STRING] = {0};
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS)
    return "MPI error " + std::to_string(code);
  return std::string(text, static_cast<size_t>(length));
}

// A failed MPI call after MPI_Init ends the job (the other ranks would otherwise wait for this
// one); before MPI runs there is nothing to abort, so it throws rf::Error.
void check_mpi(int code, const char* call, const char* file, int line) {
  if (code == MPI_SUCCESS) return;
  std::ostringstream message;
  message << "MPI call " << call << " failed at " << file << ":" << line << ": "
          << mpi_error_text(code);
  if (world_rank() < 0) fail(message.str());
  end_job(message.str() + "; ending the job");
}

#define RF_MPI_CHECK(call) check_mpi((call), #call, __FILE__, __LINE__)

// ---- MPI's lifetime (process-wide, as MPI requires) ---------------------------------------------

struct MpiLifetime {
  std::mutex mutex;
  int live_communicators = 0;
  bool initialized_here = false;  // false when someone else initialised MPI: they finalise it
};

MpiLifetime& mpi_lifetime() {
  static MpiLifetime lifetime;
  return lifetime;
}

void start_mpi_if_needed() {
  MpiLifetime& lifetime = mpi_lifetime();
  std::lock_guard<std::mutex> lock(lifetime.mutex);
  if (lifetime.live_communicators > 0) {
    ++lifetime.live_communicators;
    return;
  }
  int finalized = 0, initialized = 0, provided = MPI_THREAD_SINGLE;
  MPI_Finalized(&finalized);
  if (finalized) {
    fail(
        "MPI was already finalised in this process and cannot be started again; create the MPI "
        "communicator once and keep it for the whole run");
  }
  MPI_Initialized(&initialized);
  if (initialized) {
    RF_MPI_CHECK(MPI_Query_thread(&provided));
  } else {
    RF_MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided));
    lifetime.initialized_here = true;
  }
  if (provided < MPI_THREAD_MULTIPLE) {
    fail("the MPI library provides thread level ", provided,
         " but the communicator needs "
         "MPI_THREAD_MULTIPLE (its communication thread runs beside the caller); use an MPI "
         "built with thread support");
  }
  RF_MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  lifetime.live_communicators = 1;
}

// MPI_Finalize waits for every rank, so it is skipped when the communicator is destroyed by an
// exception: this rank then exits on its error and mpirun ends the others.
void stop_mpi_if_last(bool finalize) {
  MpiLifetime& lifetime = mpi_lifetime();
  std::lock_guard<std::mutex> lock(lifetime.mutex);
  if (--lifetime.live_communicators > 0 || !lifetime.initialized_here || !finalize) return;
  RF_MPI_CHECK(MPI_Finalize());
}

// Keeps MPI initialised while the communicator that holds it lives.
class MpiSession {
 public:
  MpiSession() { start_mpi_if_needed(); }
  // (A destructor must not throw: an exception leaving one ends the process in std::terminate,
  // with no line of ours.)
  ~MpiSession() {
    try {
      stop_mpi_if_last(std::uncaught_exceptions() == 0);
    } catch (const std::exception& e) {
      end_job(std::string("finalising MPI: ") + e.what());
    }
  }
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
};

// ---- small helpers -----------------------------------------------------------------------------

MPI_Datatype mpi_type(DType type) {
  switch (type) {
    case DType::kFloat32:
      return MPI_FLOAT;
    case DType::kFloat64:
      return MPI_DOUBLE;
    case DType::kInt32:
      return MPI_INT32_T;
    case DType::kInt64:
      return MPI_INT64_T;
    case DType::kUint8:
      return MPI_UINT8_T;
  }
  fail("unknown DType ", static_cast<int>(type));
}

// Sleeps of the communication thread should last what they ask for: the default timer slack of
// 50 us would more than triple the 20 us pause. Per thread; failure only costs precision.
void request_precise_sleeps() {
#ifdef __linux__
  (void)prctl(PR_SET_TIMERSLACK, 1000UL, 0UL, 0UL, 0UL);  // 1 us
#endif
}

// uint8 sums wrap modulo 256, as unsigned arithmetic does in C. MPI leaves overflow undefined,
// and Open MPI 4.1 shows why that matters: its AVX reduction (used above a few dozen bytes)
// saturates at 255 while its scalar one wraps, so MPI_SUM would give answers that depend on the
// count.
void wrapping_uint8_sum(void* in, void* inout, int* count, MPI_Datatype*) {
  const auto* a = static_cast<const uint8_t*>(in);
  auto* b = static_cast<uint8_t*>(inout);
  for (int i = 0; i < *count; ++i) b[i] = static_cast<uint8_t>(a[i] + b[i]);
}

// ---- the communicator --------------------------------------------------------------------------

// One collective, as the communication thread runs it: the arrival barrier on `comm`, then `call`.
struct PendingCollective {
  uint64_t ticket = 0;
  std::string what;                    // names it in messages and the log
  MPI_Comm comm = MPI_COMM_NULL;       // where it runs
  std::function<void(MPI_Comm)> call;  // the blocking transfer; empty for a barrier
  std::function<void()> on_complete;   // e.g. divides the sum by the rank count
};

// The blocking MPI call for one part (at most kMaxBytesPerCall) of a typed span.
using PartCall = std::function<void(void* part, int count, MPI_Datatype, MPI_Comm)>;
using FinishPart = std::function<void(void* part, size_t count)>;

class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(double timeout_seconds);
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_rank() const override { return local_rank_; }
  int local_size() const override { return local_size_; }
  std::string host() const override { return host_; }
  std::vector<std::string> all_hosts() override;

  void all_reduce_sum(void* data, size_t count, DType type) override;
  void broadcast(void* data, size_t count, DType type, int root) override;
  void barrier() override;
  void start_average(float* data, size_t count, const std::string& label) override;
  void wait_all() override;
  void set_step(int64_t step) override { step_.store(step); }
  [[noreturn]] void abort(const std::string& why) override { end_job(why); }

  std::vector<std::string> completed_collectives() const;

 private:
  void join_the_job();
  void check_launcher_agrees() const;
  void find_local_ranks();
  void stop_threads(bool abandon);

  uint64_t enqueue(std::string what, MPI_Comm comm, std::function<void(MPI_Comm)> call,
                   std::function<void()> on_complete);
  uint64_t enqueue_in_parts(const std::string& what, void* data, size_t count, DType type,
                            const PartCall& call, const FinishPart& finish);
  void wait_for(uint64_t ticket);

  void communication_loop();
  bool run(PendingCollective& op);
  bool await_arrival(MPI_Comm comm);
  void pause_before_next_poll(Microseconds waited);
  void watch_deadlines();

  MpiSession session_;  // first member: MPI runs before and after everything below
  const double timeout_seconds_;
  MPI_Comm comm_ = MPI_COMM_NULL;   // private duplicate of MPI_COMM_WORLD
  MPI_Op uint8_sum_ = MPI_OP_NULL;  // wrapping_uint8_sum
  int rank_ = 0;
  int size_ = 1;
  int local_rank_ = 0;
  int local_size_ = 1;
  std::string host_;
  std::atomic<int64_t> step_{-1};  // -1: no step set

  mutable std::mutex mutex_;               // guards everything below except the threads
  std::condition_variable work_ready_;     // an item was queued, a waiter arrived, or stopping
  std::condition_variable work_done_;      // a collective completed, or stopping
  std::condition_variable stop_watching_;  // the watchdog's only wake-up besides its period
  std::deque<PendingCollective> queue_;    // in start order
  uint64_t last_ticket_ = 0;               // the most recently queued collective
  uint64_t completed_ticket_ = 0;          // the most recently completed one
  uint64_t running_ticket_ = 0;            // the one in progress (0: none), for the watchdog
  std::string running_what_;
  Clock::time_point running_since_;
  int waiters_ = 0;        // callers blocked until a ticket completes
  bool stopping_ = false;  // finish the queue, then end the worker
  bool abandon_ = false;   // end them now (destroyed by an exception)
  bool watching_ = true;   // the watchdog runs until the worker has ended
  std::deque<std::string> completion_log_;
  std::thread worker_;
  std::thread watchdog_;
};

MpiCommunicator::MpiCommunicator(double timeout_seconds)
    : timeout_seconds_(timeout_seconds), host_(this_host_name()) {
  worker_ = std::thread([this] { communication_loop(); });
  watchdog_ = std::thread([this] { watch_deadlines(); });
  try {
    join_the_job();
  } catch (...) {
    stop_threads(/*abandon=*/true);
    throw;
  }
}

MpiCommunicator::~MpiCommunicator() {
  const bool unwinding = std::uncaught_exceptions() > 0;
  // (An error here ends the job with its line: a destructor must not throw, see ~MpiSession.)
  try {
    if (!unwinding) {
      wait_all();
      wait_for(enqueue("barrier before MPI_Finalize", comm_, nullptr, nullptr));
    }
    stop_threads(unwinding);
    if (unwinding) return;  // leave MPI as it is: this rank exits on its error
    RF_MPI_CHECK(MPI_Op_free(&uint8_sum_));
    RF_MPI_CHECK(MPI_Comm_free(&comm_));
  } catch (const std::exception& e) {
    end_job(std::string("closing the MPI communicator: ") + e.what());
  }
}

// A start-up barrier with the deadline comes first, so that the blocking MPI_Comm_dup and
// MPI_Comm_split_type after it cannot wait forever for a rank that never gets here.
void MpiCommunicator::join_the_job() {
  wait_for(enqueue("start-up barrier (every rank creating its MPI communicator)", MPI_COMM_WORLD,
                   nullptr, nullptr));
  RF_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &comm_));
  RF_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
  RF_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
  RF_MPI_CHECK(MPI_Comm_size(comm_, &size_));
  check_launcher_agrees();
  find_local_ranks();
  RF_MPI_CHECK(MPI_Op_create(wrapping_uint8_sum, /*commute=*/1, &uint8_sum_));
}

void MpiCommunicator::check_launcher_agrees() const {
  const LauncherSize launcher = launcher_size();
  if (launcher.variable == nullptr || launcher.ranks == size_) return;
  fail("the launcher started ", launcher.ranks, " ranks (", launcher.variable, "=", launcher.ranks,
       ") but MPI sees ", size_,
       "; with srun pass --mpi=pmix, with mpirun use the one of the MPI library this program was "
       "built with");
}

void MpiCommunicator::find_local_ranks() {
  MPI_Comm node = MPI_COMM_NULL;
  RF_MPI_CHECK(MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node));
  RF_MPI_CHECK(MPI_Comm_rank(node, &local_rank_));
  RF_MPI_CHECK(MPI_Comm_size(node, &local_size_));
  RF_MPI_CHECK(MPI_Comm_free(&node));
}

// Normally the worker finishes the queue first (under the watchdog's eye); when abandoning (an
// exception is on its way) it stops polling at once and leaves the collective unfinished.
void MpiCommunicator::stop_threads(bool abandon) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
    abandon_ = abandon;
  }
  work_ready_.notify_all();
  work_done_.notify_all();
  worker_.join();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    watching_ = false;
  }
  stop_watching_.notify_all();
  watchdog_.join();
}

// ---- the public collectives --------------------------------------------------------------------

void check_span(const void* data, size_t count) {
  if (data == nullptr && count > 0) {
    fail("a collective was given a null buffer of ", count, " values");
  }
}

PartCall all_reduce_with(MPI_Op op) {
  return [op](void* part, int count, MPI_Datatype type, MPI_Comm comm) {
    RF_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, part, count, type, op, comm));
  };
}

void MpiCommunicator::all_reduce_sum(void* data, size_t count, DType type) {
  check_span(data, count);
  const MPI_Op sum = type == DType::kUint8 ? uint8_sum_ : MPI_SUM;
  wait_for(enqueue_in_parts("all-reduce (sum) of " + values_text(count, type), data, count, type,
                            all_reduce_with(sum), nullptr));
}

void MpiCommunicator::broadcast(void* data, size_t count, DType type, int root) {
  check_span(data, count);
  if (root < 0 || root >= size_) {
    fail("broadcast from rank ", root, " in a job of ", size_, " ranks");
  }
  const PartCall bcast = [root](void* part, int n, MPI_Datatype t, MPI_Comm comm) {
    RF_MPI_CHECK(MPI_Bcast(part, n, t, root, comm));
  };
  const std::string what =
      "broadcast of " + values_text(count, type) + " from rank " + std::to_string(root);
  wait_for(enqueue_in_parts(what, data, count, type, bcast, nullptr));
}

void MpiCommunicator::barrier() {
  wait_for(enqueue("barrier", comm_, nullptr, nullptr));
}

std::vector<std::string> MpiCommunicator::all_hosts() {
  std::vector<char> mine(kHostNameBytes, '\0');
  std::copy_n(host_.begin(), std::min(host_.size(), size_t{kHostNameBytes - 1}), mine.begin());
  std::vector<char> all(static_cast<size_t>(kHostNameBytes) * static_cast<size_t>(size_), '\0');
  wait_for(enqueue(
      "all-gather of host names", comm_,
      [&](MPI_Comm comm) {
        RF_MPI_CHECK(MPI_Allgather(mine.data(), kHostNameBytes, MPI_CHAR, all.data(),
                                   kHostNameBytes, MPI_CHAR, comm));
      },
      nullptr));
  std::vector<std::string> hosts;
  hosts.reserve(static_cast<size_t>(size_));
  for (int r = 0; r < size_; ++r) {
    hosts.emplace_back(all.data() + static_cast<size_t>(r) * kHostNameBytes);
  }
  return hosts;
}

void MpiCommunicator::start_average(float* data, size_t count, const std::string& label) {
  check_span(data, count);
  const float ranks = static_cast<float>(size_);
  const FinishPart divide = [ranks](void* part, size_t n) {
    float* values = static_cast<float*>(part);
    for (size_t i = 0; i < n; ++i) values[i] /= ranks;
  };
  enqueue_in_parts(bucket_text(label, count), data, count, DType::kFloat32,
                   all_reduce_with(MPI_SUM), divide);
}

void MpiCommunicator::wait_all() {
  uint64_t last = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    last = last_ticket_;
  }
  wait_for(last);
}

std::vector<std::string> MpiCommunicator::completed_collectives() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return {completion_log_.begin(), completion_log_.end()};
}

// ---- the queue ---------------------------------------------------------------------------------

uint64_t MpiCommunicator::enqueue(std::string what, MPI_Comm comm,
                                  std::function<void(MPI_Comm)> call,
                                  std::function<void()> on_complete) {
  uint64_t ticket = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ticket = ++last_ticket_;
    queue_.push_back({ticket, std::move(what), comm, std::move(call), std::move(on_complete)});
  }
  work_ready_.notify_all();
  return ticket;
}

// Queues a collective over a typed span as parts of at most kMaxBytesPerCall (one part for an
// empty span, which then only meets the other ranks); returns the ticket of the last part.
uint64_t MpiCommunicator::enqueue_in_parts(const std::string& what, void* data, size_t count,
                                           DType type, const PartCall& call,
                                           const FinishPart& finish) {
  const size_t value_bytes = dtype_size(type);
  const size_t per_part = kMaxBytesPerCall / value_bytes;
  const size_t parts = count == 0 ? 1 : (count + per_part - 1) / per_part;
  const MPI_Datatype mpi = mpi_type(type);
  uint64_t ticket = 0;
  for (size_t p = 0; p < parts; ++p) {
    void* part = static_cast<char*>(data) + p * per_part * value_bytes;
    const size_t n = std::min(per_part, count - p * per_part);
    std::string part_what = what;
    if (parts > 1) {
      part_what += " (part " + std::to_string(p + 1) + " of " + std::to_string(parts) + ")";
    }
    std::function<void()> on_complete;
    if (finish) on_complete = [finish, part, n] { finish(part, n); };
    ticket = enqueue(
        std::move(part_what), comm_,
        [call, part, n, mpi](MPI_Comm comm) {
          if (n > 0) call(part, static_cast<int>(n), mpi, comm);
        },
        std::move(on_complete));
  }
  return ticket;
}

// Blocks until collective `ticket` has completed (the watchdog ends the job if it never does).
void MpiCommunicator::wait_for(uint64_t ticket) {
  std::unique_lock<std::mutex> lock(mutex_);
  if (completed_ticket_ >= ticket) return;
  ++waiters_;
  work_ready_.notify_all();  // cuts a long pause between polls short
  work_done_.wait(lock, [&] { return completed_ticket_ >= ticket || abandon_; });
  --waiters_;
}

// ---- the communication thread ------------------------------------------------------------------

void MpiCommunicator::communication_loop() {
  request_precise_sleeps();
  for (;;) {
    PendingCollective op;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      work_ready_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (abandon_ || queue_.empty()) return;
      op = std::move(queue_.front());
      queue_.pop_front();
      running_ticket_ = op.ticket;
      running_what_ = op.what;
      running_since_ = Clock::now();
    }
    if (!run(op)) return;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      running_ticket_ = 0;
      completed_ticket_ = op.ticket;
      completion_log_.push_back(std::move(op.what));
      if (completion_log_.size() > kCompletionLogLength) completion_log_.pop_front();
    }
    work_done_.notify_all();
  }
}

// Phase 1, then phase 2 (see the top of the file); false when the communicator is abandoned.
bool MpiCommunicator::run(PendingCollective& op) {
  if (!await_arrival(op.comm)) return false;
  if (op.call) op.call(op.comm);
  if (op.on_complete) op.on_complete();
  return true;
}

// Polls a barrier until every rank has arrived (true) or the communicator is abandoned (false).
bool MpiCommunicator::await_arrival(MPI_Comm comm) {
  MPI_Request request = MPI_REQUEST_NULL;
  RF_MPI_CHECK(MPI_Ibarrier(comm, &request));
  const Clock::time_point start = Clock::now();
  for (;;) {
    int done = 0;
    RF_MPI_CHECK(MPI_Test(&request, &done, MPI_STATUS_IGNORE));
    if (done) return true;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (abandon_) return false;
    }
    pause_before_next_poll(std::chrono::duration_cast<Microseconds>(Clock::now() - start));
  }
}

// How long to wait before the next MPI_Test, given how long the ranks have been awaited.
// - The first 50 us are polled without pause: when every rank is there the barrier completes
//   within microseconds, and one sleep would cost more than the whole collective.
// - Then the pause is an eighth of the time waited so far, so it delays the collective by about
//   12% at most, and is capped, because one poll costs about 25 us of CPU on these virtual
//   machines (a timed futex wake-up, MPI_Test, Open MPI's progress engine): at 0.5 ms while a
//   caller is blocked on the result (about 5% of a core), at 2 ms while nobody waits (the cores
//   compute; about 1%).
// A caller that starts waiting cuts a long pause short.
void MpiCommunicator::pause_before_next_poll(Microseconds waited) {
  if (waited < kSpinBeforeSleeping) return;
  std::unique_lock<std::mutex> lock(mutex_);
  const Microseconds cap = waiters_ > 0 ? kMaxPollPauseWhileWaited : kMaxPollPause;
  const Microseconds pause = std::clamp(waited / 8, kMinPollPause, cap);
  const int waiters_before = waiters_;
  work_ready_.wait_for(lock, pause, [&] { return waiters_ > waiters_before || abandon_; });
}

// ---- the watchdog ------------------------------------------------------------------------------

// Wakes a few times per deadline (at least every 100 ms) and ends the job when the collective in
// progress has run longer than timeout_seconds, in either phase. A stop signal that finds the
// collective waiting for a second or more gets a note naming it: the rank cannot reach its step
// boundary, and when mpirun is what sent it (a host is gone), the job ends before the deadline.
void MpiCommunicator::watch_deadlines() {
  const Clock::duration timeout = as_steady_duration(timeout_seconds_);
  const Clock::duration period =
      std::clamp<Clock::duration>(timeout / 10, std::chrono::milliseconds(10), kMaxWatchPeriod);
  unsigned signals_seen = g_stop_signals.count.load();
  std::unique_lock<std::mutex> lock(mutex_);
  while (watching_) {
    stop_watching_.wait_for(lock, period, [&] { return !watching_; });
    const unsigned signals = g_stop_signals.count.load();
    if (signals != signals_seen) {
      signals_seen = signals;
      const Clock::duration waited = Clock::now() - running_since_;
      if (running_ticket_ != 0 && waited >= kWaitWorthANote) {
        const std::string line = "note: " + rank_text(world_rank(), this_host_name()) + ": " +
                                 stop_signal_while_waiting_text(
                                     signal_name(g_stop_signals.last.load()), running_what_,
                                     step_.load(), std::chrono::duration<double>(waited).count()) +
                                 "\n";
        std::fputs(line.c_str(), stderr);
        std::fflush(stderr);
      }
    }
    if (running_ticket_ == 0 || Clock::now() - running_since_ < timeout) continue;
    const std::string what = running_what_;
    lock.unlock();
    end_job(timeout_text(what, step_.load(), timeout_seconds_));
  }
}

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator(double timeout_seconds) {
  if (!valid_collective_timeout(timeout_seconds)) {
    fail("the collective timeout must be in (0, ", kMaxCollectiveTimeoutSeconds, "] seconds, not ",
         timeout_seconds);
  }
  return std::make_unique<MpiCommunicator>(timeout_seconds);
}

std::string mpi_library_version() {
  char text[MPI_MAX_LIBRARY_VERSION_STRING] = {};
  int length = 0;
  if (MPI_Get_library_version(text, &length) != MPI_SUCCESS) return "unknown";
  const std::string s(text, static_cast<size_t>(std::max(length, 0)));
  return s.substr(0, s.find_first_of(",\n"));
}

std::vector<std::string> mpi_completed_collectives(Communicator& comm) {
  const auto* mpi = dynamic_cast<const MpiCommunicator*>(&comm);
  if (mpi == nullptr)
    fail("mpi_completed_collectives needs a communicator from make_mpi_communicator");
  return mpi->completed_collectives();
}

}  // namespace rf
