// The NCCL Communicator: the collectives of a data-parallel job on GPU buffers, bootstrapped over
// the MPI communicator.
//
// STATUS: this file has compiled (nvcc 13, NCCL 2.28, warnings as errors) but has NEVER RUN ON A
// GPU: no machine this project is developed on has one. tests/comms_test checks only the MPI
// communicator. Before trusting it, run bench/allreduce_bench --communicator nccl on a GPU machine
// with two or more GPUs; it checks its results.
//
// Design (llm.c's zero.cuh, plus deadlines):
// - Start-up: every rank checks that its GPU exists and the ranks agree on the outcome (so a
//   missing GPU is the same clear rf::Error on every rank, not a hang); rank 0 makes the NCCL
//   unique id and broadcasts it over the bootstrap communicator; every rank selects its device and
//   joins with ncclCommInitRankConfig in non-blocking mode, so that joining, and every later call,
//   can be given a deadline.
// - Order: collectives run on a dedicated NCCL stream. Before each one the NCCL stream waits on an
//   event recorded on the compute stream (cudaStreamPerThread, where the CUDA executor issues its
//   work), so NCCL reads gradients only after the kernels that wrote them; the host never blocks in
//   start_average. Averages use ncclAvg, in place. One stream means completion in start order.
// - Deadline: waiting polls cudaEventQuery and ncclCommGetAsyncError with short sleeps. When the
//   deadline passes (or NCCL reports an asynchronous error) the communicator prints one line
//   naming rank, operation and step, aborts the NCCL communicator (which frees kernels stuck
//   waiting for a peer) and ends the job through the bootstrap communicator's abort.
// - Step graphs: an average started while the compute stream is being captured into a CUDA graph
//   goes into the graph. The event wait joins the NCCL stream to the capture, so the graph holds
//   the NCCL kernels on a branch of their own that overlaps the rest of the backward pass, and
//   order_compute_after_averages() joins that branch back before the capture ends (NCCL 2.9+
//   supports collectives in graphs; a graph's collectives and eager ones share the communicator).
//   Nothing in a capture can be awaited from the host, so wait_all() awaits the compute stream,
//   which a replayed graph leaves only once its averages are done, with the same deadline.
// - Host buffers given to all_reduce_sum or broadcast (the trainer's loss sums, say) go over the
//   bootstrap MPI communicator, since NCCL reads device memory only.
// - Errors: every CUDA and NCCL call is checked; a failure after start-up ends the job the same
//   way, since the other ranks would otherwise wait for this one until their deadline.
// Threads: use it from one thread (the one that issues the compute work); it has no thread of
// its own.
#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <thread>
#include <vector>

#include "base/cuda_check.h"
#include "comms/collective_text.h"
#include "comms/nccl_communicator.h"

#if NCCL_VERSION_CODE < NCCL_VERSION(2, 14, 0)
#error "the NCCL communicator needs NCCL 2.14 or newer (ncclAvg, non-blocking communicators)"
#endif

namespace rf {
namespace {

using Clock = std::chrono::steady_clock;
constexpr std::chrono::microseconds kPollPause{50};

ncclDataType_t nccl_type(DType type) {
  switch (type) {
    case DType::kFloat32:
      return ncclFloat32;
    case DType::kFloat64:
      return ncclFloat64;
    case DType::kInt32:
      return ncclInt32;
    case DType::kInt64:
      return ncclInt64;
    case DType::kUint8:
      return ncclUint8;
  }
  fail("unknown DType ", static_cast<int>(type));
}

// Why `device` cannot be used on this rank, or "" when it can.
std::string device_problem(int device) {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    (void)cudaGetLastError();  // clear it: the caller reports the problem instead
    return std::string("CUDA finds no device (") + cudaGetErrorString(status) + ")";
  }
  if (device < 0 || device >= count) {
    return "this host has " + std::to_string(count) + " GPU(s)";
  }
  return "";
}

// NCCL reads device (or managed) memory only; host buffers, such as the trainer's loss sums, go
// over the bootstrap MPI communicator instead. Every rank runs the same code, so every rank makes
// the same choice.
bool is_device_memory(const void* data) {
  cudaPointerAttributes attributes{};
  RF_CUDA_CHECK(cudaPointerGetAttributes(&attributes, data));
  return attributes.type == cudaMemoryTypeDevice || attributes.type == cudaMemoryTypeManaged;
}

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(Communicator& bootstrap, int device, double timeout_seconds);
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return bootstrap_.rank(); }
  int size() const override { return bootstrap_.size(); }
  int local_rank() const override { return bootstrap_.local_rank(); }
  int local_size() const override { return bootstrap_.local_size(); }
  std::string host() const override { return bootstrap_.host(); }
  std::vector<std::string> all_hosts() override { return bootstrap_.all_hosts(); }

  void all_reduce_sum(void* data, size_t count, DType type) override;
  void broadcast(void* data, size_t count, DType type, int root) override;
  void barrier() override;
  void start_average(float* data, size_t count, const std::string& label) override;
  void wait_all() override;
  void order_compute_after_averages() override;
  void set_step(int64_t step) override;
  [[noreturn]] void abort(const std::string& why) override;

 private:
  // A collective on the NCCL stream, and the event recorded after it.
  struct InFlight {
    std::string what;
    cudaEvent_t done;
  };

  void check_every_rank_has_its_device();
  void join();
  template <class Body>
  void guarded(const Body& body);
  bool compute_is_capturing();
  void order_after_compute();
  void track(const std::string& what);
  void drain();
  void await_event(cudaEvent_t event, const std::string& what);
  void settle(const std::string& what);
  void check_async_error(const std::string& what);
  [[noreturn]] void end_job(const std::string& why);
  void release_cuda_objects();

  Communicator& bootstrap_;
  const int device_;
  const double timeout_seconds_;
  int64_t step_ = -1;  // -1: no step set
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;        // the NCCL stream
  cudaEvent_t compute_ready_ = nullptr;  // recorded on the compute stream before each collective
  float* scratch_ = nullptr;             // one device float for barrier()
  std::vector<InFlight> in_flight_;      // in start order
  // Step graphs: averages started in the capture under way, what the captured graphs' averages
  // are (named in wait_all's deadline; "" when no graph holds any), the events that join the NCCL
  // stream back to the compute stream and mark the compute stream's work for wait_all.
  std::vector<std::string> captured_;
  std::string graph_averages_;
  cudaEvent_t averages_done_ = nullptr;
  cudaEvent_t compute_done_ = nullptr;
  std::vector<cudaEvent_t> spare_events_;
};

NcclCommunicator::NcclCommunicator(Communicator& bootstrap, int device, double timeout_seconds)
    : bootstrap_(bootstrap), device_(device), timeout_seconds_(timeout_seconds) {
  check_every_rank_has_its_device();
  guarded([&] { join(); });
}

NcclCommunicator::~NcclCommunicator() {
  if (comm_ == nullptr) return;
  if (std::uncaught_exceptions() > 0) {  // this rank is leaving on an error: do not wait for peers
    (void)ncclCommAbort(comm_);
    return;
  }
  guarded([&] {
    drain();
    RF_NCCL_CHECK(ncclCommFinalize(comm_));
    settle("finalisation of the NCCL communicator");
    RF_NCCL_CHECK(ncclCommDestroy(comm_));
    comm_ = nullptr;
    release_cuda_objects();
  });
}

// A collective over the bootstrap, so that every rank throws the same rf::Error when any rank
// lacks its GPU, instead of the others waiting for it at the NCCL id broadcast.
void NcclCommunicator::check_every_rank_has_its_device() {
  const std::string problem = device_problem(device_);
  int32_t ranks_without_device = problem.empty() ? 0 : 1;
  bootstrap_.all_reduce_sum(&ranks_without_device, 1, DType::kInt32);
  if (!problem.empty()) {
    fail("rank ", bootstrap_.rank(), " (local rank ", bootstrap_.local_rank(), " on ",
         bootstrap_.host(), ") cannot use GPU ", device_, ": ", problem,
         "; runtime.device cuda needs one GPU per rank on each host");
  }
  if (ranks_without_device > 0) {
    fail(ranks_without_device, " rank(s) of ", bootstrap_.size(),
         " have no usable GPU (see "
         "their messages); runtime.device cuda needs one GPU per rank on each host");
  }
}

void NcclCommunicator::join() {
  RF_CUDA_CHECK(cudaSetDevice(device_));
  ncclUniqueId id{};
  if (bootstrap_.rank() == 0) RF_NCCL_CHECK(ncclGetUniqueId(&id));
  bootstrap_.broadcast(&id, sizeof(id), DType::kUint8, 0);
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;  // calls return at once; settle() waits with the deadline
  RF_NCCL_CHECK(ncclCommInitRankConfig(&comm_, bootstrap_.size(), id, bootstrap_.rank(), &config));
  settle("initialisation of the NCCL communicator");
  RF_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  RF_CUDA_CHECK(cudaEventCreateWithFlags(&compute_ready_, cudaEventDisableTiming));
  RF_CUDA_CHECK(cudaEventCreateWithFlags(&averages_done_, cudaEventDisableTiming));
  RF_CUDA_CHECK(cudaEventCreateWithFlags(&compute_done_, cudaEventDisableTiming));
  RF_CUDA_CHECK(cudaMalloc(&scratch_, sizeof(float)));
}

// Runs `body` on this communicator's device; a failure in it ends the job.
template <class Body>
void NcclCommunicator::guarded(const Body& body) {
  try {
    RF_CUDA_CHECK(cudaSetDevice(device_));
    body();
  } catch (const Error& e) {
    end_job(e.what());
  }
}

// ---- the collectives ---------------------------------------------------------------------------

void NcclCommunicator::all_reduce_sum(void* data, size_t count, DType type) {
  if (!is_device_memory(data)) return bootstrap_.all_reduce_sum(data, count, type);
  guarded([&] {
    const std::string what = "all-reduce (sum) of " + values_text(count, type);
    order_after_compute();
    RF_NCCL_CHECK(ncclAllReduce(data, data, count, nccl_type(type), ncclSum, comm_, stream_));
    settle(what);
    track(what);
    drain();
  });
}

void NcclCommunicator::broadcast(void* data, size_t count, DType type, int root) {
  if (root < 0 || root >= size())
    fail("broadcast from rank ", root, " in a job of ", size(), " ranks");
  if (!is_device_memory(data)) return bootstrap_.broadcast(data, count, type, root);
  guarded([&] {
    const std::string what =
        "broadcast of " + values_text(count, type) + " from rank " + std::to_string(root);
    order_after_compute();
    RF_NCCL_CHECK(ncclBroadcast(data, data, count, nccl_type(type), root, comm_, stream_));
    settle(what);
    track(what);
    drain();
  });
}

// NCCL has no barrier: a one-float all-reduce that every rank must join, awaited on the host.
void NcclCommunicator::barrier() {
  guarded([&] {
    order_after_compute();
    RF_NCCL_CHECK(ncclAllReduce(scratch_, scratch_, 1, ncclFloat32, ncclSum, comm_, stream_));
    settle("barrier");
    track("barrier");
    drain();
  });
}

void NcclCommunicator::start_average(float* data, size_t count, const std::string& label) {
  bool captured = false;
  guarded([&] { captured = compute_is_capturing(); });
  // (A step graph's part runs once uncaptured first, which checks the buffer; a capture is no
  // place for pointer queries.)
  if (!captured && count > 0 && !is_device_memory(data)) {
    fail("start_average of bucket '", label,
         "' was given host memory; the NCCL communicator "
         "averages device buffers");
  }
  guarded([&] {
    const std::string what = bucket_text(label, count);
    order_after_compute();  // in a capture, this joins the NCCL stream to it
    RF_NCCL_CHECK(ncclAllReduce(data, data, count, ncclFloat32, ncclAvg, comm_, stream_));
    settle(what);
    if (captured)
      captured_.push_back(what);  // the graph holds it: awaited through the compute stream
    else
      track(what);
  });
}

void NcclCommunicator::order_compute_after_averages() {
  guarded([&] {
    const bool captured = compute_is_capturing();
    // In a capture the NCCL stream belongs to it only once an average has joined it there.
    if (captured && captured_.empty()) return;
    RF_CUDA_CHECK(cudaEventRecord(averages_done_, stream_));
    RF_CUDA_CHECK(cudaStreamWaitEvent(cudaStreamPerThread, averages_done_, 0));
    if (!captured) return;
    graph_averages_ = "the " + std::to_string(captured_.size()) +
                      " gradient averages a step graph holds (the last: " + captured_.back() + ")";
    captured_.clear();
  });
}

void NcclCommunicator::wait_all() {
  guarded([&] {
    drain();
    if (graph_averages_.empty() || compute_is_capturing()) return;
    // A replayed graph's averages are done when the compute stream's work up to here is.
    RF_CUDA_CHECK(cudaEventRecord(compute_done_, cudaStreamPerThread));
    await_event(compute_done_, graph_averages_);
  });
}

void NcclCommunicator::set_step(int64_t step) {
  step_ = step;
  bootstrap_.set_step(step);
}

void NcclCommunicator::abort(const std::string& why) {
  if (comm_ != nullptr) (void)ncclCommAbort(comm_);
  comm_ = nullptr;
  bootstrap_.abort(why);
  std::_Exit(1);  // not reached; nvcc's host pass loses [[noreturn]] on the virtual call
}

// ---- ordering and waiting ----------------------------------------------------------------------

// Whether the compute stream (cudaStreamPerThread) is being captured into a step graph.
bool NcclCommunicator::compute_is_capturing() {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  RF_CUDA_CHECK(cudaStreamIsCapturing(cudaStreamPerThread, &status));
  return status == cudaStreamCaptureStatusActive;
}

// The NCCL stream waits (on the device, not the host) for the work issued so far on the compute
// stream.
void NcclCommunicator::order_after_compute() {
  RF_CUDA_CHECK(cudaEventRecord(compute_ready_, cudaStreamPerThread));
  RF_CUDA_CHECK(cudaStreamWaitEvent(stream_, compute_ready_, 0));
}

// Records an event after the collective just issued, to await it by name later.
void NcclCommunicator::track(const std::string& what) {
  cudaEvent_t done = nullptr;
  if (spare_events_.empty()) {
    RF_CUDA_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
  } else {
    done = spare_events_.back();
    spare_events_.pop_back();
  }
  RF_CUDA_CHECK(cudaEventRecord(done, stream_));
  in_flight_.push_back({what, done});
}

// Awaits every collective in flight, oldest first; each gets the full deadline from the moment
// the previous one completed.
void NcclCommunicator::drain() {
  for (const InFlight& op : in_flight_) {
    await_event(op.done, op.what);
    spare_events_.push_back(op.done);
  }
  in_flight_.clear();
}

void NcclCommunicator::await_event(cudaEvent_t event, const std::string& what) {
  const Clock::time_point deadline = Clock::now() + as_steady_duration(timeout_seconds_);
  for (;;) {
    const cudaError_t status = cudaEventQuery(event);
    if (status == cudaSuccess) return;
    if (status != cudaErrorNotReady) check_cuda(status, "cudaEventQuery", __FILE__, __LINE__);
    check_async_error(what);
    if (Clock::now() >= deadline) end_job(timeout_text(what, step_, timeout_seconds_));
    std::this_thread::sleep_for(kPollPause);
  }
}

// Waits until the non-blocking communicator has finished the call it is working on.
void NcclCommunicator::settle(const std::string& what) {
  const Clock::time_point deadline = Clock::now() + as_steady_duration(timeout_seconds_);
  for (;;) {
    ncclResult_t state = ncclSuccess;
    RF_NCCL_CHECK(ncclCommGetAsyncError(comm_, &state));
    if (state == ncclSuccess) return;
    if (state != ncclInProgress) check_nccl(state, what.c_str(), __FILE__, __LINE__);
    if (Clock::now() >= deadline) end_job(timeout_text(what, step_, timeout_seconds_));
    std::this_thread::sleep_for(kPollPause);
  }
}

void NcclCommunicator::check_async_error(const std::string& what) {
  ncclResult_t state = ncclSuccess;
  RF_NCCL_CHECK(ncclCommGetAsyncError(comm_, &state));
  if (state != ncclSuccess && state != ncclInProgress) {
    fail("NCCL reported an asynchronous error during ", what, ": ", ncclGetErrorString(state));
  }
}

// Prints the reason first (ncclCommAbort may take a moment), frees any kernel stuck waiting for a
// peer, then ends every rank through the bootstrap.
void NcclCommunicator::end_job(const std::string& why) {
  const std::string line = "error: " + rank_text(rank(), host()) + ": " + why + "\n";
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
  if (comm_ != nullptr) (void)ncclCommAbort(comm_);
  comm_ = nullptr;
  bootstrap_.abort("the NCCL communicator was aborted (see above); ending the job");
  std::_Exit(1);  // not reached; nvcc's host pass loses [[noreturn]] on the virtual call
}

void NcclCommunicator::release_cuda_objects() {
  for (cudaEvent_t event : spare_events_) RF_CUDA_CHECK(cudaEventDestroy(event));
  spare_events_.clear();
  RF_CUDA_CHECK(cudaEventDestroy(compute_ready_));
  RF_CUDA_CHECK(cudaEventDestroy(averages_done_));
  RF_CUDA_CHECK(cudaEventDestroy(compute_done_));
  RF_CUDA_CHECK(cudaStreamDestroy(stream_));
  RF_CUDA_CHECK(cudaFree(scratch_));
}

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(Communicator& bootstrap, int device,
                                                     double timeout_seconds) {
  if (!valid_collective_timeout(timeout_seconds)) {
    fail("the collective timeout must be in (0, ", kMaxCollectiveTimeoutSeconds, "] seconds, not ",
         timeout_seconds);
  }
  return std::make_unique<NcclCommunicator>(bootstrap, device, timeout_seconds);
}

std::string nccl_library_version() {
  int v = 0;
  if (ncclGetVersion(&v) != ncclSuccess) return "unknown";
  // (NCCL_VERSION_CODE: major * 10000 + minor * 100 + patch since 2.9)
  return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." +
         std::to_string(v % 100);
}

}  // namespace rf
