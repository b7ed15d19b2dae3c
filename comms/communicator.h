// The Communicator: how ranks of a data-parallel job talk. Rank, size and local rank; blocking
// all-reduce, broadcast and barrier on typed spans; and a non-blocking average of a float range
// (a gradient bucket) that the backward pass starts as soon as a layer's gradients are final.
// One process is a Communicator of size 1 whose collectives do nothing; MPI (CPU buffers) and
// NCCL (GPU buffers) implement the same contract.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace rf {

enum class DType { kFloat32, kFloat64, kInt32, kInt64, kUint8 };
size_t dtype_size(DType t);

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual int local_rank() const = 0;  // index among the ranks on this host
  virtual std::string host() const = 0;

  // In-place sum over all ranks.
  virtual void all_reduce_sum(void* data, size_t count, DType type) = 0;
  virtual void broadcast(void* data, size_t count, DType type, int root) = 0;
  virtual void barrier() = 0;

  // Starts averaging `count` floats in place across ranks; returns a handle for wait(). Requests
  // complete in the order they were started, so reductions are reproducible.
  virtual int start_average(float* data, size_t count) = 0;
  // Blocks until every started average has completed.
  virtual void wait_all() = 0;

  bool is_root() const { return rank() == 0; }
};

// The communicator of a single process: rank 0 of 1.
std::unique_ptr<Communicator> make_single_process_communicator();

}  // namespace rf
