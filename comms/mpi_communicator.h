// The MPI Communicator (CPU buffers) and the start-up of a multi-rank job.
#pragma once

#include <memory>

#include "base/launcher_env.h"
#include "comms/communicator.h"

namespace rf {

// Initialises MPI (once) and returns the communicator over MPI_COMM_WORLD. Collectives that do
// not complete within timeout_seconds abort the job with a message naming rank, step and
// operation. MPI is finalised when the last MPI communicator is destroyed.
std::unique_ptr<Communicator> make_mpi_communicator(double timeout_seconds);

}  // namespace rf
