// The Communicator: how ranks of a data-parallel job talk. Rank, size and local rank; blocking
// all-reduce, broadcast and barrier on typed spans (pointer + element count + type, never bytes);
// and a non-blocking average of a float range (a gradient bucket) that the backward pass starts
// as soon as a layer's gradients are final, so the reduction overlaps the rest of the backward.
// Reductions complete in the order they were started and use a fixed algorithm, so runs are
// reproducible. Every collective has a deadline: a rank that does not arrive (it died or hangs)
// ends the whole job with a message naming the rank, the step and the operation, never a hang.
// One process is a Communicator of size 1 whose collectives do nothing; MPI (CPU buffers) and
// NCCL (GPU buffers) implement the same contract.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace rf {

enum class DType { kFloat32, kFloat64, kInt32, kInt64, kUint8 };
size_t dtype_size(DType t);

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual int local_rank() const = 0;  // index among the ranks on this host
  virtual int local_size() const = 0;  // ranks on this host
  virtual std::string host() const = 0;
  // Every rank's host name, indexed by rank (a collective).
  virtual std::vector<std::string> all_hosts() = 0;

  // In-place sum over all ranks (blocking).
  virtual void all_reduce_sum(void* data, size_t count, DType type) = 0;
  virtual void broadcast(void* data, size_t count, DType type, int root) = 0;
  virtual void barrier() = 0;

  // Starts averaging `count` floats in place across ranks; `label` names the bucket in error
  // messages. Returns at once; the data must stay untouched until wait_all().
  virtual void start_average(float* data, size_t count, const std::string& label) = 0;
  // Blocks until every started average has completed.
  virtual void wait_all() = 0;
  // Makes the device work issued after it wait, on the device (the host does not block), for
  // the averages started so far. A CUDA graph that starts averages must end with it, so that
  // the stream the collectives run on rejoins the capture, and wait_all() then awaits that
  // graph's averages too. Where averages complete on the host (MPI) there is nothing to order.
  virtual void order_compute_after_averages() {}

  // The optimizer step now running, for timeout messages.
  virtual void set_step(int64_t step) = 0;
  // Ends the whole job (every rank) with a non-zero exit after printing `why` once.
  [[noreturn]] virtual void abort(const std::string& why) = 0;

  bool is_root() const { return rank() == 0; }
};

// This machine's host name ("unknown-host" if it cannot be read), as rank maps print it.
std::string this_host_name();

// The communicator of a single process: rank 0 of 1.
std::unique_ptr<Communicator> make_single_process_communicator();

}  // namespace rf
