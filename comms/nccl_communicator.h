// The NCCL Communicator (GPU buffers), bootstrapped over an MPI communicator.
#pragma once

#include <memory>
#include <string>

#include "comms/communicator.h"

namespace rf {

// Creates the NCCL communicator for the GPU `device` (chosen from the local rank): rank 0 makes
// the NCCL unique id and broadcasts it over `bootstrap`. Buffers passed to it are device memory.
// Throws rf::Error when this build has no CUDA/NCCL.
std::unique_ptr<Communicator> make_nccl_communicator(Communicator& bootstrap, int device,
                                                     double timeout_seconds);

// "<major>.<minor>.<patch>" of the NCCL library this process runs; empty in a build without it.
std::string nccl_library_version();

}  // namespace rf
